"""Evaluation of quality scores: EDC/ERC/pAUC maths, verification metrics, benchmark runner, reports."""
