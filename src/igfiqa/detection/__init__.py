"""Face detection with five landmarks, for photographs that are not aligned crops.

:func:`load_detector` builds a detector by name (:data:`DETECTORS`, :func:`list_detectors`);
:func:`find_faces` applies the policy every command shares (largest face first, optional
downscaling of large photos) and :func:`align_faces` cuts the ArcFace crops. The detector needs the optional extra (``pip install "igfiqa[detect]"``); without it
:class:`DetectorUnavailable` says so. docs/detection.md has the choice of detector and its measured
accuracy and speed. Names are imported on first use, so the command line starts fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from igfiqa.registry import Registry

if TYPE_CHECKING:
    from igfiqa.detection.base import Detector

DEFAULT_MAX_SIDE = 1600
"""Longest image side the detector searches; larger photographs are shrunk for the search only."""

DEFAULT_MIN_CONFIDENCE = 0.95
"""Least detector confidence of a face that is kept (MTCNN's output-stage threshold, which is 0.7 in
the paper's code and 0.8 in insightface's port). 0.95 because false detections reach 0.94 on the test
photographs (a hand 0.83, two dark patches 0.93 and 0.94) while their real faces, the partly visible
ones included, score 0.98 or more (docs/scoring.md, "Detection confidence")."""

MAX_SIDE_LIMIT = 8192
"""Largest ``max_side`` accepted at all (``--max-side``)."""

SEARCH_SIDE_LIMIT = 2400
"""Largest side of the detector's first pyramid level, ``max_side * 12 / min_face``: the search's
memory grows with its area (1.15 GB measured at 2400, e.g. the default 1600 with ``min_face=8``), so
``max_side`` may be at most ``200 * min_face`` (4000 for the default 20-pixel faces)."""

DETECTORS: Registry[Callable[..., Detector]] = Registry("face detector")
"""Detector name -> ``(**options) -> Detector`` (its code imported on first use);
:func:`load_detector` builds them."""


@DETECTORS.register("mtcnn")
def _mtcnn(**options: Any) -> Detector:
    from igfiqa.detection.mtcnn import MTCNN

    return MTCNN(**options)


def list_detectors() -> list[str]:
    """Names of the face detectors :func:`load_detector` builds (``["mtcnn"]``)."""
    return DETECTORS.names()


_LAZY = {
    "Detector": "igfiqa.detection.base",
    "DetectorUnavailable": "igfiqa.detection.base",
    "Face": "igfiqa.detection.base",
    "outside_fraction": "igfiqa.detection.base",
    "DetectedFace": "igfiqa.detection.faces",
    "align_faces": "igfiqa.detection.faces",
    "check_max_side": "igfiqa.detection.faces",
    "check_search": "igfiqa.detection.faces",
    "detect_faces": "igfiqa.detection.faces",
    "find_faces": "igfiqa.detection.faces",
    "load_detector": "igfiqa.detection.faces",
    "search_bytes": "igfiqa.detection.faces",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'igfiqa.detection' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_MAX_SIDE",
    "DEFAULT_MIN_CONFIDENCE",
    "DETECTORS",
    "MAX_SIDE_LIMIT",
    "SEARCH_SIDE_LIMIT",
    "list_detectors",
    *sorted(_LAZY),
]
