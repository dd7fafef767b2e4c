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
from igfiqa.data.decode import memory_gate
from igfiqa.detection import (
    DEFAULT_MAX_SIDE,
    DEFAULT_MIN_CONFIDENCE,
    DETECTORS,
    MAX_SIDE_LIMIT,
    SEARCH_SIDE_LIMIT,
)
from igfiqa.detection.base import Detector, Face, outside_fraction
from igfiqa.errors import ConfigError, DataError
from igfiqa.machine import machine_memory

_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], Detector] = {}


def load_detector(name: str = "mtcnn", **options: Any) -> Detector:
    """The detector ``name`` with ``options`` (``min_face``, ``min_confidence``, ``thresholds``),
    built once per process. ``min_confidence`` (default :data:`DEFAULT_MIN_CONFIDENCE`) is the least
    detector confidence of a face it returns."""
    name = DETECTORS.canonical(name)
    min_face = options.get("min_face", 20.0)
    if not 8.0 <= float(min_face) <= 10000.0:
        raise ConfigError(f"min_face must be in [8, 10000] pixels, got {min_face}")
    options["min_face"] = float(min_face)
    options["min_confidence"] = check_min_confidence(
        options.get("min_confidence", DEFAULT_MIN_CONFIDENCE)
    )
    key = (name, tuple(sorted(options.items())))
    detector = _CACHE.get(key)
    if detector is None:
        detector = _CACHE[key] = DETECTORS[name](**options)
    return detector


def check_min_confidence(value: Any) -> float:
    """``value`` as a float in [0, 1] (ConfigError naming ``--min-confidence`` otherwise)."""
    try:
        confidence = float(value)
    except (TypeError, ValueError):
        confidence = float("nan")
    if not 0.0 <= confidence <= 1.0:
        raise ConfigError(
            f"--min-confidence must be a detector confidence in [0, 1], got {value!r} (default "
            f"{DEFAULT_MIN_CONFIDENCE})"
        )
    return confidence


_CELL = 12  # the proposal net's window, as in igfiqa.detection.mtcnn (not imported: needs torch)
_BYTES_PER_LEVEL_PIXEL = 230  # MTCNN peak per pixel of its first pyramid level (measured: <= 205)
_SEARCH_OVERHEAD = 64 << 20


def search_bytes(height: int, width: int, min_face: float) -> int:
    """Estimated peak memory of searching an ``height`` x ``width`` image for faces of ``min_face``
    pixels and up (the pyramid's first level is the image scaled by ``12 / min_face``)."""
    scale = _CELL / float(min_face)
    level = int(np.ceil(height * scale)) * int(np.ceil(width * scale))
    return level * _BYTES_PER_LEVEL_PIXEL + 3 * height * width + _SEARCH_OVERHEAD


def check_max_side(max_side: int) -> None:
    """Refuse a ``max_side`` outside [64, :data:`MAX_SIDE_LIMIT`] (ConfigError naming ``--max-side``)."""
    if not 64 <= int(max_side) <= MAX_SIDE_LIMIT:
        raise ConfigError(
            f"--max-side {max_side} is out of range: use 64 to {MAX_SIDE_LIMIT} pixels (larger "
            "photographs are searched shrunk to it; the search's memory grows with its square)"
        )


def check_search(max_side: int, min_face: float) -> None:
    """Refuse (ConfigError naming ``--max-side`` and ``--min-face``) a search whose memory has no
    bound that fits: ``max_side`` above :data:`MAX_SIDE_LIMIT`, a first pyramid level longer than
    :data:`SEARCH_SIDE_LIMIT` or a search of a ``max_side`` square over half the machine's memory."""
    max_side, min_face = int(max_side), float(min_face)
    check_max_side(max_side)
    if not 8.0 <= min_face <= 10000.0:
        raise ConfigError(f"--min-face must be in [8, 10000] pixels, got {min_face:g}")
    level = max_side * _CELL / min_face
    if level > SEARCH_SIDE_LIMIT:
        raise ConfigError(
            f"--max-side {max_side} with --min-face {min_face:g} searches a {level:.0f}-pixel "
            f"image pyramid, more than the limit of {SEARCH_SIDE_LIMIT} (about "
            f"{search_bytes(max_side, max_side, min_face) / 1e9:.1f} GB per photo): use "
            f"--max-side {int(SEARCH_SIDE_LIMIT * min_face / _CELL)} or less, or a larger --min-face"
        )
    needed, budget = search_bytes(max_side, max_side, min_face), machine_memory() // 2
    if needed > budget:
        raise ConfigError(
            f"--max-side {max_side} with --min-face {min_face:g} needs about {needed / 1e9:.1f} GB "
            f"per photo, more than half of this machine's memory ({budget / 1e9:.1f} GB): use a "
            "smaller --max-side or a larger --min-face"
        )


@dataclass(frozen=True)
class DetectedFace:
    """A face of one photograph: ``index`` in the largest-first order, the detector's ``face``
    (box, confidence, landmarks in pixels of the photograph), the aligned ``crop`` and the share of
    its box ``outside`` the photograph (0 = wholly inside; a face cut by the frame has black where
    the photograph ends in its crop)."""

    index: int
    face: Face
    crop: np.ndarray | None = None
    outside: float = 0.0


def detect_faces(
    image: np.ndarray, detector: Detector, *, max_side: int = DEFAULT_MAX_SIDE
) -> list[Face]:
    """Every face in an RGB uint8 image, largest box first, in pixels of ``image``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"face detection needs an RGB uint8 (H, W, 3) image, got {image.shape}")
    min_face = float(getattr(detector, "min_face", 20.0))
    check_search(max_side, min_face)
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    search_size = (max(round(width * scale), 1), max(round(height * scale), 1))
    # Searches in several threads take their peak from the process's memory budget.
    with memory_gate().hold(search_bytes(search_size[1], search_size[0], min_face)):
        search = image
        if scale < 1.0:
            search = cv2.resize(image, search_size, interpolation=cv2.INTER_AREA)
        faces = detector.detect(search)
        del search
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
        confidence = getattr(detector, "min_confidence", None)
        sure = (
            "" if confidence is None else f" with a detector confidence of {confidence:g} or more"
        )
        raise DataError(
            f"{name}: no face found ({image.shape[1]}x{image.shape[0]} px; searched: faces of "
            f"{getattr(detector, 'min_face', 20):g} px and up{sure}; a smaller --min-face finds "
            "smaller faces, a smaller --min-confidence less certain ones)"
        )
    if not all_faces:
        faces = faces[:1]
    crops = align_faces(image, faces, size, template)
    height, width = image.shape[:2]
    return [
        DetectedFace(i, face, crop, outside_fraction(face.box, width, height))
        for i, (face, crop) in enumerate(zip(faces, crops, strict=True))
    ]
