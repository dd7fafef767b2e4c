"""What every face detector returns, and the maths they share.

A detector takes an RGB uint8 ``(H, W, 3)`` image and returns :class:`Face` records: a box, a
confidence and the five ArcFace landmarks (left eye centre, right eye centre, nose tip, left and
right mouth corner; "left" is the image's left), in pixels of that image, in the order of
:data:`igfiqa.data.align.ARCFACE_TEMPLATE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from igfiqa.errors import IgfiqaError


class DetectorUnavailable(IgfiqaError):
    """The detector's package or weights are not installed; the message says what to install."""


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face: ``box`` (x1, y1, x2, y2), ``score`` in the detector's own scale (higher is
    surer), ``landmarks`` (5, 2) as (x, y)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        return float(max(w, 0.0) * max(h, 0.0))

    @property
    def interocular(self) -> float:
        """Distance between the two eye centres in pixels."""
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


def outside_fraction(box: np.ndarray, width: int, height: int) -> float:
    """Share of the box ``(x1, y1, x2, y2)`` that lies outside a ``width`` x ``height`` image: 0 for
    a face wholly in the photograph, e.g. 0.25 for one whose box the frame cuts by a quarter."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0.0:
        return 0.0
    inside = max(min(x2, width) - max(x1, 0.0), 0.0) * max(min(y2, height) - max(y1, 0.0), 0.0)
    return float(min(max(1.0 - inside / area, 0.0), 1.0))


class Detector(Protocol):
    """A face detector: ``name`` and ``detect(rgb) -> faces`` (those of at least its
    ``min_confidence``, where it has one)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


def box_overlap(box: np.ndarray, others: np.ndarray, mode: str = "union") -> np.ndarray:
    """Intersection of ``box`` with each of ``others`` over their union (``union``) or over the
    smaller area (``min``). Boxes are (x1, y1, x2, y2)."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    denominator = np.minimum(area, areas) if mode == "min" else area + areas - inter
    return inter / np.maximum(denominator, 1e-12)


def nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept rows of ``boxes`` (x1, y1, x2, y2,
    score), best first; a box is dropped when its overlap with a kept one exceeds ``threshold``."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    keep = []
    while len(order):
        best = order[0]
        keep.append(best)
        rest = order[1:]
        order = rest[box_overlap(boxes[best], boxes[rest], mode) <= threshold]
    return np.asarray(keep, dtype=np.int64)
