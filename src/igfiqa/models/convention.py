"""The input convention of a released network, and the layer that applies it inside the network.

Every igfiqa scoring path hands a network the same input: aligned face crops as float32
(B, 3, S, S), RGB, ``(pixel / 255 - 0.5) / 0.5`` (:mod:`igfiqa.data.pixels`). Released models were
trained on other conventions: MagFace feeds BGR scaled to [0, 1], CurricularFace RGB in [-1, 1],
OFIQ's quality network a 616x616 image resized to 192 and cropped to 112. An
:class:`InputConvention` records the authors' convention (docs/models.md); :class:`ConventionLayer`
turns igfiqa's input into it on the device, so ``score``, ``evaluate``, ``export`` and the Python
API all apply it the same way and a user never sets a colour order or a mean by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

STANDARD_MEAN = (0.5, 0.5, 0.5)
STANDARD_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class InputConvention:
    """What a network takes: ``((pixel / 255) - mean) / std`` per channel in ``colour_order``.

    ``mean`` and ``std`` are in units of pixel / 255 and listed in the network's own channel
    order. ``size`` is the side of the aligned image the model is given; when ``resize_to`` is
    set, that image is first resized to ``resize_to`` (bilinear, as OpenCV's ``INTER_LINEAR`` on
    uint8) and cropped to ``crop`` = (top, bottom, left, right) before it enters the network.
    """

    colour_order: str = "RGB"
    mean: tuple[float, float, float] = STANDARD_MEAN
    std: tuple[float, float, float] = STANDARD_STD
    size: int = 112
    resize_to: int | None = None
    crop: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.colour_order not in ("RGB", "BGR"):
            raise ValueError(f"colour_order must be RGB or BGR, got {self.colour_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need three values, std > 0: {self.mean}, {self.std}")
        if (self.resize_to is None) != (self.crop is None):
            raise ValueError("resize_to and crop go together")
        if self.crop is not None:
            top, bottom, left, right = self.crop
            if not (0 <= top < bottom <= self.resize_to and 0 <= left < right <= self.resize_to):
                raise ValueError(f"crop {self.crop} does not fit a {self.resize_to} side")

    @property
    def is_standard(self) -> bool:
        """Whether this is igfiqa's own convention (nothing to convert)."""
        return (
            self.colour_order == "RGB"
            and tuple(self.mean) == STANDARD_MEAN
            and tuple(self.std) == STANDARD_STD
            and self.resize_to is None
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "colour_order": self.colour_order,
            "scale": "pixel / 255",
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "formula": "((pixel / 255) - mean) / std, per channel in colour_order",
            "size": int(self.size),
            "resize_to": self.resize_to,
            "crop_rows_cols": list(self.crop) if self.crop is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputConvention:
        crop = data.get("crop_rows_cols")
        return cls(
            colour_order=str(data.get("colour_order", "RGB")),
            mean=tuple(float(v) for v in data.get("mean", STANDARD_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data.get("std", STANDARD_STD)),  # type: ignore[arg-type]
            size=int(data.get("size", 112)),
            resize_to=None if data.get("resize_to") is None else int(data["resize_to"]),
            crop=None if crop is None else tuple(int(v) for v in crop),  # type: ignore[arg-type]
        )

    def affine(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """``(a, b, order)`` with network input channel c = ``a[c] * x[order[c]] + b[c]`` for
        igfiqa's standard input x = (pixel / 255 - 0.5) / 0.5, i.e. pixel / 255 = 0.5 x + 0.5."""
        order = [0, 1, 2] if self.colour_order == "RGB" else [2, 1, 0]
        mean = np.asarray(self.mean, np.float64)
        std = np.asarray(self.std, np.float64)
        return 0.5 / std, (0.5 - mean) / std, order

    def from_standard_numpy(self, batch: np.ndarray) -> np.ndarray:
        """igfiqa's standard float32 batch (B, 3, size, size) -> this convention's network input.

        With a resize the pixels are first recovered as uint8 (the standard input is an exact
        function of them) and resized with OpenCV as the authors' code does.
        """
        if self.resize_to is not None:
            import cv2

            pixels = np.clip(np.rint((batch * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)
            top, bottom, left, right = self.crop  # type: ignore[misc]
            resized = [
                cv2.resize(
                    np.ascontiguousarray(image.transpose(1, 2, 0)),
                    (self.resize_to, self.resize_to),
                    interpolation=cv2.INTER_LINEAR,
                )[top:bottom, left:right]
                for image in pixels
            ]
            stacked = np.stack(resized).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
            batch = (stacked - 0.5) / 0.5
        a, b, order = self.affine()
        out = batch[:, order] * a.astype(np.float32)[None, :, None, None]
        out += b.astype(np.float32)[None, :, None, None]
        return np.ascontiguousarray(out, dtype=np.float32)


ARCFACE_INPUT = InputConvention()
"""112x112 ArcFace-aligned RGB in [-1, 1]: igfiqa's own input, and that of most released models."""


class ConventionLayer(nn.Module):
    """igfiqa's standard input -> the network's convention (channel order, scale, mean, std).

    A per-channel affine map after a channel permutation; the identity (and free) for the standard
    convention. Holds no state dict entries: the convention is part of the model spec.
    """

    def __init__(self, convention: InputConvention) -> None:
        super().__init__()
        if convention.resize_to is not None:
            raise ValueError("a resize/crop convention runs in numpy before the network")
        self.convention = convention
        self.identity = convention.is_standard
        a, b, order = convention.affine()
        self.register_buffer("a", torch.tensor(a, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("b", torch.tensor(b, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.flip = order != [0, 1, 2]

    def forward(self, x: Tensor) -> Tensor:
        if self.identity:
            return x
        if self.flip:
            x = x.flip(1)
        return x * self.a.to(x.dtype) + self.b.to(x.dtype)


__all__ = ["ARCFACE_INPUT", "ConventionLayer", "InputConvention"]
