"""The three MTCNN networks in PyTorch (Zhang et al. 2016), laid out to take the weights that
:mod:`igfiqa.detection.mtcnn_weights` reads.

Each network works in the frame the original models were trained in: the image **transposed**
(width first). A tensor here is ``(N, 3, W, H)`` of RGB scaled to ``(x - 127.5) / 128``.
"Same" max pooling of the Keras layout pads only at the far end, which for these sizes equals
``ceil_mode=True``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from igfiqa.errors import DataError


def _conv(out_channels: int, in_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel), nn.PReLU(out_channels))


class ProposalNet(nn.Module):
    """P-Net: fully convolutional; per 12x12 window (stride 2) box offsets and face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(10, 3, 3), nn.MaxPool2d(2, 2, ceil_mode=True), _conv(16, 10, 3), _conv(32, 16, 3)
        )
        self.offsets = nn.Conv2d(32, 4, 1)
        self.logits = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.offsets(features), torch.softmax(self.logits(features), dim=1)


class RefineNet(nn.Module):
    """R-Net: 24x24 crops -> box offsets and face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(28, 3, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(48, 28, 3), nn.MaxPool2d(3, 2), _conv(64, 48, 2),
        )  # fmt: skip
        self.fc = nn.Sequential(nn.Linear(576, 128), nn.PReLU(128))
        self.offsets = nn.Linear(128, 4)
        self.logits = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.fc(_flatten(self.body(x)))
        return self.offsets(features), torch.softmax(self.logits(features), dim=1)


class OutputNet(nn.Module):
    """O-Net: 48x48 crops -> box offsets, five landmarks (x1..x5, y1..y5) and face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(32, 3, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(64, 32, 3), nn.MaxPool2d(3, 2),
            _conv(64, 64, 3), nn.MaxPool2d(2, 2, ceil_mode=True), _conv(128, 64, 2),
        )  # fmt: skip
        self.fc = nn.Sequential(nn.Linear(1152, 256), nn.PReLU(256))
        self.offsets = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)
        self.logits = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.fc(_flatten(self.body(x)))
        probability = torch.softmax(self.logits(features), dim=1)
        return self.offsets(features), self.landmarks(features), probability


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten as the Keras layout did: (N, C, A, B) -> (N, B, A, C) -> (N, B*A*C)."""
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


def load_arrays(net: nn.Module, arrays: list[np.ndarray], name: str) -> nn.Module:
    """Copy Keras-ordered arrays (conv HWIO, dense (in, out), PReLU alphas) into ``net``."""
    params = list(net.parameters())
    if len(params) != len(arrays):
        raise DataError(f"{name}: {len(arrays)} weight arrays, the network has {len(params)}")
    with torch.no_grad():
        for param, array in zip(params, arrays, strict=True):
            if array.ndim == 4:
                array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            elif array.ndim == 2:
                array = array.T  # (in, out) -> (out, in)
            array = array.reshape(param.shape) if array.size == param.numel() else array
            if tuple(array.shape) != tuple(param.shape):
                raise DataError(
                    f"{name}: weight of shape {tuple(array.shape)} where the network needs "
                    f"{tuple(param.shape)}"
                )
            param.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
    return net.eval()
