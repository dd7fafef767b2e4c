"""The detection policy shared by ``igfiqa align``, ``igfiqa score --detect`` and the Python API.

Large photographs are searched at a reduced size (longest side ``max_side``) and the landmarks mapped
back, so the crop is cut from the full-resolution image. Faces are ordered by box area, largest
first: face 0 is the one a single-face policy keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from igfiqa.data.align import align_face
from igfiqa.detection import DEFAULT_MAX_SIDE
from igfiqa.detection.base import Detector, Face
from igfiqa.errors import ConfigError, DataError

DETECTORS = ("mtcnn",)
"""Detector names :func:`load_detector` knows."""

_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], Detector] = {}


def load_detector(name: str = "mtcnn", **options: Any) -> Detector:
    """The detector ``name`` with ``options`` (``min_face``, ``thresholds``), built once per process."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
    min_face = options.get("min_face", 20.0)
    if not 8.0 <= float(min_face) <= 10000.0:
        raise ConfigError(f"min_face must be in [8, 10000] pixels, got {min_face}")
    key = (name, tuple(sorted(options.items())))
    detector = _CACHE.get(key)
    if detector is None:
        from igfiqa.detection.mtcnn import MTCNN

        detector = _CACHE[key] = MTCNN(**options)
    return detector


@dataclass(frozen=True)
class DetectedFace:
    """A face of one photograph: ``index`` in the largest-first order, the detector's ``face``
    (box, confidence, landmarks in pixels of the photograph) and the aligned ``crop``."""

    index: int
    face: Face
    crop: np.ndarray | None = None


def detect_faces(
    image: np.ndarray, detector: Detector, *, max_side: int = DEFAULT_MAX_SIDE
) -> list[Face]:
    """Every face in an RGB uint8 image, largest box first, in pixels of ``image``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"face detection needs an RGB uint8 (H, W, 3) image, got {image.shape}")
    if max_side < 64:
        raise ConfigError(f"max_side must be >= 64 pixels, got {max_side}")
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    search = image
    if scale < 1.0:
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        search = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    faces = detector.detect(search)
    if scale < 1.0:
        faces = [
            Face(box=f.box / scale, score=f.score, landmarks=f.landmarks / scale) for f in faces
        ]
    return sorted(faces, key=lambda f: -f.area)


def align_faces(
    image: np.ndarray, faces: list[Face], size: int = 112, template: np.ndarray | None = None
) -> list[np.ndarray]:
    """The aligned crop of each face, ``(size, size, 3)`` uint8 (ArcFace template unless
    ``template`` is given)."""
    return [align_face(image, face.landmarks, size=size, template=template) for face in faces]


def find_faces(
    image: np.ndarray,
    detector: Detector,
    *,
    size: int = 112,
    all_faces: bool = False,
    max_side: int = DEFAULT_MAX_SIDE,
    name: str = "image",
    template: np.ndarray | None = None,
) -> list[DetectedFace]:
    """The largest face (or, with ``all_faces``, every face) of ``image``, aligned to ``size``.

    Raises :class:`~igfiqa.errors.DataError` naming ``name`` when no face is found.
    """
    faces = detect_faces(image, detector, max_side=max_side)
    if not faces:
        raise DataError(
            f"{name}: no face found ({image.shape[1]}x{image.shape[0]} px, faces smaller than "
            f"{getattr(detector, 'min_face', 20):g} px are not searched; a smaller --min-face finds "
            "smaller faces)"
        )
    if not all_faces:
        faces = faces[:1]
    crops = align_faces(image, faces, size, template)
    return [
        DetectedFace(i, face, crop) for i, (face, crop) in enumerate(zip(faces, crops, strict=True))
    ]
