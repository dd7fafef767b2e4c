"""Face detection with five landmarks, for photographs that are not aligned crops.

:func:`load_detector` builds a detector by name (:data:`DETECTORS`); :func:`find_faces` applies the
policy every command shares (largest face first, optional downscaling of large photos) and
:func:`align_faces` cuts the ArcFace crops. The detector needs the optional extra
(``pip install "igfiqa[detect]"``); without it :class:`DetectorUnavailable` says so.
docs/detection.md has the choice of detector and its measured accuracy and speed.
"""

from __future__ import annotations

from igfiqa.detection.base import Detector, DetectorUnavailable, Face
from igfiqa.detection.faces import (
    DEFAULT_MAX_SIDE,
    DetectedFace,
    align_faces,
    detect_faces,
    find_faces,
    load_detector,
)

__all__ = [
    "DEFAULT_MAX_SIDE",
    "DetectedFace",
    "Detector",
    "DetectorUnavailable",
    "Face",
    "align_faces",
    "detect_faces",
    "find_faces",
    "load_detector",
]
