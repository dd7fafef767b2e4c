"""Face detection with five landmarks, for photographs that are not aligned crops.

:func:`load_detector` builds a detector by name; :func:`find_faces` applies the policy every command
shares (largest face first, optional downscaling of large photos) and :func:`align_faces` cuts the
ArcFace crops. The detector needs the optional extra (``pip install "igfiqa[detect]"``); without it
:class:`DetectorUnavailable` says so. docs/detection.md has the choice of detector and its measured
accuracy and speed. Names are imported on first use, so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT_MAX_SIDE = 1600
"""Longest image side the detector searches; larger photographs are shrunk for the search only."""

_LAZY = {
    "Detector": "igfiqa.detection.base",
    "DetectorUnavailable": "igfiqa.detection.base",
    "Face": "igfiqa.detection.base",
    "DetectedFace": "igfiqa.detection.faces",
    "align_faces": "igfiqa.detection.faces",
    "detect_faces": "igfiqa.detection.faces",
    "find_faces": "igfiqa.detection.faces",
    "load_detector": "igfiqa.detection.faces",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'igfiqa.detection' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["DEFAULT_MAX_SIDE", *sorted(_LAZY)]
