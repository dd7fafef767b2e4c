"""igfiqa: train, run and evaluate face image quality assessment models with IG-FIQA and CR-FIQA.

The public API is re-exported here lazily, so that ``import igfiqa`` stays cheap and has no side
effects.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first access.
_LAZY = {
    "create_model": "igfiqa.models",
    "IgfiqaError": "igfiqa.errors",
    "decode_image": "igfiqa.data.decode",
    "align_face": "igfiqa.data.align",
    "open_training_dataset": "igfiqa.data.datasets",
    "open_benchmark": "igfiqa.data.benchmarks",
    "SyntheticFaces": "igfiqa.data.synthetic",
    "train": "igfiqa.engine.trainer",
    "load_config": "igfiqa.config",
    "load_model": "igfiqa.inference.model",
    "QualityModel": "igfiqa.inference.model",
    "evaluate_scores": "igfiqa.evaluation.results",
    "write_report": "igfiqa.evaluation.report",
    "MarginHead": "igfiqa.models.heads",
    "IntraClassGuidance": "igfiqa.method.guidance",
    "QualityAugmentation": "igfiqa.method.augment",
    "compute_objective": "igfiqa.method.objective",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'igfiqa' has no attribute {name!r}")
    return getattr(import_module(module), name)
