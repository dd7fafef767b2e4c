"""The IG-FIQA training method on top of CR-FIQA.

Modules, named in the papers' words:

- :mod:`igfiqa.method.pseudo_labels`: CCS, NNCCS and the certainty ratio (CR-FIQA's pseudo-label).
- :mod:`igfiqa.method.guidance`: the intra-class variance guidance (per-class EMA and loss weights).
- :mod:`igfiqa.method.augment`: the quality branch's on-the-fly degradations.
- :mod:`igfiqa.method.objective`: one training step's losses (CR-FIQA and IG-FIQA modes).
"""
