"""The iResNet backbone family (r18/r34/r50/r100/r200) with the CR-FIQA quality head.

Layers follow the improved ResNet of insightface's ArcFace models as used by CR-FIQA: a 3x3 stride-1
stem (conv1, bn1, prelu), four stages of :class:`IBasicBlock` (BN -> conv3x3 -> BN -> PReLU ->
conv3x3(stride) -> BN, plus a 1x1-conv/BN shortcut where the shape changes), then
BN2d (``bn2``) -> dropout -> Linear (``fc``) -> BatchNorm1d (``features``) giving the embedding.
The quality head ``qs`` is Linear(num_features -> 1) on the (unnormalised) embedding.

Parameter names are those of insightface / CR-FIQA, so their released state dicts load with
``strict=True``. ``width`` and ``input_size`` shrink the network for CPU tests and the demo; ``bn_eps`` is 1e-5 in
insightface's arcface_torch, ElasticFace and CR-FIQA and 2e-5 in MagFace's iResNet.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MODEL_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}

BN_EPS = 1e-5
STAGE_CHANNELS = (64, 128, 256, 512)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def stage_channels(width: float) -> list[int]:
    """Stage widths 64/128/256/512 multiplied by ``width`` (at least 4 each)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return [max(4, round(c * width)) for c in STAGE_CHANNELS]


def stage_output_size(input_size: int, num_stages: int = 4) -> int:
    """Spatial side after ``num_stages`` stride-2 3x3 convolutions with padding 1 (112 -> 7)."""
    size = input_size
    for _ in range(num_stages):
        size = (size - 1) // 2 + 1
    return size


class IBasicBlock(nn.Module):
    """The improved residual block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN (+ shortcut)."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=bn_eps)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=bn_eps)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=bn_eps)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """iResNet backbone; with ``quality_head`` it returns ``(embedding, quality)``, else the embedding.

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 14, 3)`` for iResNet-50.
        num_features: embedding size (512 in all published models).
        dropout: dropout probability before ``fc`` (0.4 in the CR-FIQA recipes).
        width: multiplier of the stage widths 64/128/256/512 (1.0 = published models).
        input_size: side of the square input (112 = published models; must be >= 16).
        quality_head: add the CR-FIQA quality regression head ``qs``.
        zero_init_residual: start every block's last BN at zero gamma (off in published models).
        bn_eps: epsilon of every BatchNorm (1e-5; MagFace's released models use 2e-5).
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int],
        *,
        num_features: int = 512,
        dropout: float = 0.0,
        width: float = 1.0,
        input_size: int = 112,
        quality_head: bool = True,
        zero_init_residual: bool = False,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be four positive block counts, got {list(layers)}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {input_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 < bn_eps < 1.0:
            raise ValueError(f"bn_eps must be in (0, 1), got {bn_eps}")
        channels = stage_channels(width)
        self.layers = tuple(int(n) for n in layers)
        self.num_features = num_features
        self.input_size = input_size
        self.width = width
        self.dropout_p = dropout
        self.bn_eps = float(bn_eps)

        self.inplanes = channels[0]
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0], eps=bn_eps)
        self.prelu = nn.PReLU(channels[0])
        self.layer1 = self._make_stage(channels[0], self.layers[0])
        self.layer2 = self._make_stage(channels[1], self.layers[1])
        self.layer3 = self._make_stage(channels[2], self.layers[2])
        self.layer4 = self._make_stage(channels[3], self.layers[3])
        self.bn2 = nn.BatchNorm2d(channels[3], eps=bn_eps)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = stage_output_size(input_size)
        self.fc = nn.Linear(channels[3] * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=bn_eps)
        self.qs = nn.Linear(num_features, 1) if quality_head else None

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        # The embedding BN keeps a fixed unit scale, as in the published models.
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, IBasicBlock):
                    nn.init.constant_(module.bn3.weight, 0)

    def _make_stage(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(planes, eps=self.bn_eps),
        )
        stage = [IBasicBlock(self.inplanes, planes, 2, downsample, bn_eps=self.bn_eps)]
        self.inplanes = planes
        stage.extend(IBasicBlock(planes, planes, bn_eps=self.bn_eps) for _ in range(1, blocks))
        return nn.Sequential(*stage)

    @property
    def has_quality_head(self) -> bool:
        return self.qs is not None

    def hidden(self, x: Tensor) -> Tensor:
        """The flattened output of ``bn2``: what the dropout before ``fc`` acts on."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.bn2(x), 1)

    def project(self, hidden: Tensor) -> Tensor:
        """``features(fc(hidden))``: the embedding of :meth:`hidden` features (no dropout)."""
        return self.features(self.fc(hidden))

    def embed(self, x: Tensor) -> Tensor:
        """The embedding: output of the final BatchNorm1d, not L2-normalised."""
        return self.features(self.fc(self.dropout(self.hidden(x))))

    def stochastic_embeddings(
        self, x: Tensor, m: int, p: float, generator: torch.Generator
    ) -> Tensor:
        """SER-FIQ's stochastic embeddings (Terhorst et al., CVPR 2020): the backbone runs once, then
        ``m`` dropout masks of rate ``p`` (inverted scaling, drawn on the CPU from ``generator``) go
        through ``fc`` and ``features``; returns (B, m, F), L2-normalised, in float32."""
        hidden = self.hidden(x)
        embeddings = []
        for _ in range(m):
            keep = torch.rand(hidden.shape, generator=generator) >= p
            mask = keep.to(device=hidden.device, dtype=hidden.dtype) / (1.0 - p)
            out = self.features(self.fc(hidden * mask)).float()
            embeddings.append(torch.nn.functional.normalize(out, dim=1))
        return torch.stack(embeddings, dim=1)

    def quality(self, embedding: Tensor) -> Tensor:
        """The quality score R(e), shape (B, 1)."""
        if self.qs is None:
            raise RuntimeError("this model was built without a quality head (quality_head=False)")
        return self.qs(embedding)

    def embed_and_quality(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(embedding (B, F), quality (B,) or None)``: the interface every scoring network has."""
        embedding = self.embed(x)
        return embedding, (self.qs(embedding)[:, 0] if self.qs is not None else None)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor] | Tensor:
        embedding = self.embed(x)
        if self.qs is None:
            return embedding
        return embedding, self.qs(embedding)
