"""MTCNN (Zhang et al. 2016, "Joint face detection and alignment using multitask cascaded
convolutional networks"): a proposal net over an image pyramid, a refinement net and an output net
that also regresses the five ArcFace landmarks.

The networks (:mod:`igfiqa.detection.mtcnn_nets`) run in PyTorch on the weights that the ``mtcnn``
package ships (:mod:`igfiqa.detection.mtcnn_weights`); docs/detection.md has the measurements.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import torch

from igfiqa.detection.base import Face
from igfiqa.detection.mtcnn_nets import OutputNet, ProposalNet, RefineNet, load_arrays
from igfiqa.detection.mtcnn_weights import read_weight_file, weights_folder

CELL = 12
"""Side of the proposal net's window in pixels of a pyramid level."""

STRIDE = 2
"""Step of the proposal net's window in pixels of a pyramid level."""

NET_THREADS = 1
"""Torch intra-op threads the three nets run with, whatever the caller's ``torch.get_num_threads()``
(with torch's OpenMP backend, that of the pip wheels; other backends keep the caller's number).

Their convolutions are small (a pyramid level, a batch of 24 or 48 pixel crops): a second thread
gains little on idle cores, and where the cores are busy (other processes; the decoding, detection
and network threads of a video) its OpenMP barriers spin while the other thread waits for a core:
a caller with two threads on two busy cores used 11x the CPU time per 640x480 frame. One thread
also makes the detections independent of the caller's setting (two threads sum the convolutions
in another order, which moves boxes by about 1e-5 pixels)."""

NMS_BLOCK = 512
"""Boxes whose overlaps :func:`nms` compares in one matrix (bounds each temporary to 2 MB)."""


@functools.cache
def _openmp() -> bool:
    """Whether torch runs its parallel work on OpenMP (its thread count is per OS thread)."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


@contextmanager
def _intra_op_threads(threads: int) -> Iterator[None]:
    """Run the body with ``threads`` torch intra-op threads and set the caller's number back.

    With torch's OpenMP backend the number belongs to the OS thread (once it has run a parallel
    operation; OpenMP and MKL both), so detections and networks in other threads keep theirs; what
    changes for the body's duration is the process-wide number that a thread takes at its first
    parallel operation. Other backends have one process-wide number: it is left alone."""
    before = torch.get_num_threads()
    if before == threads or not _openmp():
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W) scaled to ``(x - 127.5) / 128``, kept in
    channels-last memory (1.5x faster for these narrow convolutions on CPU)."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).float().sub_(127.5).mul_(1.0 / 128.0)
    return x.permute(0, 3, 1, 2)


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales at which the 12-pixel window sees faces from ``min_face`` pixels up to the image."""
    scale = CELL / min_face
    side = min(height, width) * scale
    scales = []
    while side >= CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Shift box corners ``(x1, y1, x2, y2)`` by ``offsets`` in units of the box's width and height."""
    size = (boxes[:, 2:4] - boxes[:, 0:2])[:, [0, 1, 0, 1]]
    return boxes[:, :4] + offsets * size


def square(boxes: np.ndarray) -> np.ndarray:
    """The squares with the same centres and the longer side of each box."""
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2.0
    half = (boxes[:, 2:4] - boxes[:, 0:2]).max(axis=1, keepdims=True) / 2.0
    return np.concatenate([centre - half, centre + half], axis=1)


def overlaps(first: np.ndarray, second: np.ndarray, mode: str = "union") -> np.ndarray:
    """``(len(first), len(second))`` overlaps of boxes (x1, y1, x2, y2): row ``i`` is, bit for bit,
    :func:`igfiqa.detection.base.box_overlap` of ``first[i]`` with ``second``."""
    x1 = np.maximum(first[:, None, 0], second[None, :, 0])
    y1 = np.maximum(first[:, None, 1], second[None, :, 1])
    x2 = np.minimum(first[:, None, 2], second[None, :, 2])
    y2 = np.minimum(first[:, None, 3], second[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = ((first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1]))[:, None]
    areas = ((second[:, 2] - second[:, 0]) * (second[:, 3] - second[:, 1]))[None, :]
    denominator = np.minimum(area, areas) if mode == "min" else area + areas - inter
    return inter / np.maximum(denominator, 1e-12)


def _greedy(suppress: np.ndarray) -> np.ndarray:
    """Rows kept by greedy suppression in row order: row ``i`` is kept unless a kept row before it
    suppresses it (``suppress[j, i]``, ``j < i``); ``suppress`` is square and boolean. The rows are
    packed into Python integers, so each step is a bit test and, for a kept row, an or."""
    packed = np.packbits(np.triu(suppress, 1), axis=1, bitorder="little")
    width = packed.shape[1]
    data = packed.tobytes()
    removed = 0
    keep = []
    for i in range(len(suppress)):
        if not (removed >> i) & 1:
            keep.append(i)
            removed |= int.from_bytes(data[i * width : (i + 1) * width], "little")
    return np.asarray(keep, dtype=np.int64)


def nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression, vectorised: the same indices, in the same order, as
    :func:`igfiqa.detection.base.nms` (rows of ``boxes`` (x1, y1, x2, y2, score) kept, best first;
    a box is dropped when its overlap with a kept one is not at most ``threshold``).

    The boxes are ranked as there (stable sort by score); a block of :data:`NMS_BLOCK` ranked
    boxes at a time loses those that a box kept from earlier blocks suppresses, and the rest are
    decided among themselves from one overlap matrix."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    ranked = boxes[order]
    kept = np.empty(0, dtype=np.int64)
    for start in range(0, len(ranked), NMS_BLOCK):
        block = ranked[start : start + NMS_BLOCK]
        alive = np.ones(len(block), dtype=bool)
        for first in range(0, len(kept), NMS_BLOCK):
            earlier = ranked[kept[first : first + NMS_BLOCK]]
            alive &= (overlaps(earlier, block, mode) <= threshold).all(axis=0)
        candidates = block[alive]
        suppress = ~(overlaps(candidates, candidates, mode) <= threshold)
        kept = np.concatenate([kept, start + np.flatnonzero(alive)[_greedy(suppress)]])
    return order[kept]


def crops(image: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """``(N, side, side, 3)`` uint8 crops of integer-rounded boxes, zero outside the image."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), side, side, 3), np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(np.round(boxes[:, :4]).astype(np.int64)):
        w, h = max(x2 - x1, 1), max(y2 - y1, 1)
        patch = np.zeros((h, w, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[index] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
    return out


class MTCNN:
    """The three-stage cascade; ``detect(rgb)`` returns every face, best score first.

    ``thresholds``: face probability each stage keeps (the output stage's is ``min_confidence``
    when that is given: the least confidence of a returned face); ``min_face``: smallest face side
    in pixels; ``factor``: pyramid step.
    """

    name = "mtcnn"

    def __init__(
        self,
        *,
        min_face: float = 20.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
        factor: float = 0.709,
        min_confidence: float | None = None,
    ) -> None:
        if min_confidence is not None:
            thresholds = (thresholds[0], thresholds[1], float(min_confidence))
        folder = weights_folder()
        nets = {"pnet": ProposalNet(), "rnet": RefineNet(), "onet": OutputNet()}
        self.pnet, self.rnet, self.onet = (
            load_arrays(net, read_weight_file(folder / f"{name}.lz4"), name).to(
                memory_format=torch.channels_last
            )
            for name, net in nets.items()
        )
        self.min_face = float(min_face)
        self.thresholds = thresholds
        self.min_confidence = float(thresholds[2])
        self.factor = float(factor)

    def _run(self, net: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode(), _intra_op_threads(NET_THREADS):
            return [out.numpy() for out in net(_tensor(batch))]

    def _propose(self, image: np.ndarray) -> np.ndarray:
        """Stage 1: candidate boxes ``(x1, y1, x2, y2, score)`` over the pyramid."""
        height, width = image.shape[:2]
        found = []
        for scale in pyramid_scales(height, width, self.min_face, self.factor):
            h, w = int(np.ceil(height * scale)), int(np.ceil(width * scale))
            level = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            offsets, probability = self._run(self.pnet, level[None])
            score = probability[0, 1]
            offset = offsets[0].transpose(1, 2, 0)
            rows, cols = np.nonzero(score >= self.thresholds[0])
            if len(rows) == 0:
                continue
            corner = np.stack([cols, rows], axis=1) * STRIDE
            boxes = np.concatenate([(corner + 1) / scale, (corner + CELL) / scale], axis=1)
            boxes = np.concatenate(
                [regress(boxes, offset[rows, cols]), score[rows, cols, None]], axis=1
            )
            found.append(boxes[nms(boxes, 0.5)])
        if not found:
            return np.empty((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes, 0.7)]
        return np.concatenate([square(boxes), boxes[:, 4:5]], axis=1)

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: rescore and regress the candidates."""
        offsets, probability = self._run(self.rnet, crops(image, boxes, 24))
        keep = probability[:, 1] >= self.thresholds[1]
        refined = np.concatenate(
            [regress(boxes[keep], offsets[keep]), probability[keep, 1:2]], axis=1
        )
        refined = refined[nms(refined, 0.7)]
        return np.concatenate([square(refined), refined[:, 4:5]], axis=1)

    def _output(self, image: np.ndarray, boxes: np.ndarray) -> list[Face]:
        """Stage 3: final boxes, scores and landmarks."""
        offsets, points, probability = self._run(self.onet, crops(image, boxes, 48))
        keep = probability[:, 1] >= self.thresholds[2]
        boxes, offsets, points = boxes[keep], offsets[keep], points[keep]
        size = boxes[:, 2:4] - boxes[:, 0:2]
        landmarks = np.stack(
            [boxes[:, None, 0] + points[:, 0:5] * size[:, None, 0],
             boxes[:, None, 1] + points[:, 5:10] * size[:, None, 1]],
            axis=2,
        )  # fmt: skip
        final = np.concatenate([regress(boxes, offsets), probability[keep, 1:2]], axis=1)
        order = nms(final, 0.7, mode="min")
        return [
            Face(box=final[i, :4].copy(), score=float(final[i, 4]), landmarks=landmarks[i].copy())
            for i in order
        ]

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 ``(H, W, 3)`` image, highest score first."""
        boxes = self._propose(image)
        if len(boxes):
            boxes = self._refine(image, boxes)
        if not len(boxes):
            return []
        return self._output(image, boxes)  # NMS keeps the best first
