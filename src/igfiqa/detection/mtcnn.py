"""MTCNN (Zhang et al. 2016, "Joint face detection and alignment using multitask cascaded
convolutional networks"): a proposal net over an image pyramid, a refinement net and an output net
that also regresses the five ArcFace landmarks.

The networks (:mod:`igfiqa.detection.mtcnn_nets`) run in PyTorch on the weights that the ``mtcnn``
package ships (:mod:`igfiqa.detection.mtcnn_weights`); docs/detection.md has the measurements.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from igfiqa.detection.base import Face, nms
from igfiqa.detection.mtcnn_nets import OutputNet, ProposalNet, RefineNet, load_arrays
from igfiqa.detection.mtcnn_weights import read_weight_file, weights_folder

CELL = 12
"""Side of the proposal net's window in pixels of a pyramid level."""

STRIDE = 2
"""Step of the proposal net's window in pixels of a pyramid level."""


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

    ``thresholds``: face probability each stage keeps; ``min_face``: smallest face side in pixels;
    ``factor``: pyramid step.
    """

    name = "mtcnn"

    def __init__(
        self,
        *,
        min_face: float = 20.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
        factor: float = 0.709,
    ) -> None:
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
        self.factor = float(factor)

    @torch.no_grad()
    def _run(self, net: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
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
