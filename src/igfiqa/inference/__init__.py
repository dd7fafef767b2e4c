"""Inference: load a trained model (checkpoint, export or CR-FIQA backbone) and score face images.

``load_model(path)`` returns a :class:`QualityModel` whose ``score``/``embed`` take paths, PIL images
or uint8 RGB arrays. Names are resolved lazily so that the ONNX path never imports torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "load_model": "igfiqa.inference.model",
    "QualityModel": "igfiqa.inference.model",
    "ScoreCalibration": "igfiqa.inference.calibration",
    "export_model": "igfiqa.inference.export",
    "score_inputs": "igfiqa.inference.scorer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'igfiqa.inference' has no attribute {name!r}")
    return getattr(import_module(module), name)
