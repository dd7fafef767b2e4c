"""MobileFaceNet as used by eDifFIQA(T).

MobileFaceNet ("MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile
Devices", Chen et al., CCBR 2018) in the widely used PyTorch layout that eDifFIQA ("eDifFIQA:
Towards Efficient Face Image Quality Assessment based on Denoising Diffusion Probabilistic Models",
Babnik et al., IEEE T-BIOM 2024) takes as its tiny backbone:

* ``conv1``: conv3x3 stride 2 (3 -> 64) -> BN -> PReLU; ``conv2_dw``: depthwise 3x3 (64) -> BN -> PReLU.
* ``conv_23`` / ``conv_34`` / ``conv_45``: stride-2 inverted bottlenecks (:class:`DepthWise`) with
  expansion widths 128 / 256 / 512 and outputs 64 / 128 / 128; ``conv_3`` / ``conv_4`` /
  ``conv_5``: 4 / 6 / 2 residual stride-1 bottlenecks (64 ch, expansion 128; 128 ch, expansion 256;
  128 ch, expansion 256). A bottleneck is ``conv`` (1x1, BN, PReLU) -> ``conv_dw`` (depthwise 3x3,
  BN, PReLU) -> ``project`` (1x1, BN, no activation), plus the identity in residual units.
* ``conv_6_sep``: 1x1 (128 -> 512) -> BN -> PReLU; ``conv_6_dw``: global depthwise 7x7 (512) -> BN
  (no activation); flatten; ``linear``: Linear(512 -> 512, no bias); ``bn``: BatchNorm1d(512).
* The network output is L2-normalised (eDifFIQA's ``forward`` returns ``l2_norm(bn(...))``).

eDifFIQA's released files hold the whole quality model: keys ``base_model.<MobileFaceNet keys>``
and ``mlp.l1`` (Linear 512 -> 1024), ``mlp.l2`` (Linear 1024 -> 1); the quality is
``l2(GELU(l1(normalised embedding)))``, composed by :class:`igfiqa.models.scoring.ScoringNetwork`
with :class:`igfiqa.models.scoring.MLPRegressor` (the ``ediffiqa`` model kind).
Official preprocessing: PIL RGB, resize to 112x112, ``(x / 255 - 0.5) / 0.5``. All BatchNorms use
eps 1e-5. ``width`` and ``input_size`` shrink the network for CPU tests.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from igfiqa.models.iresnet import stage_output_size

BN_EPS = 1e-5


class ConvBlock(nn.Module):
    """Convolution (no bias) -> BatchNorm2d -> PReLU (keys ``conv``, ``bn``, ``prelu``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int] = (1, 1),
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        groups: int = 1,
        *,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.prelu = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """Convolution (no bias) -> BatchNorm2d, no activation (keys ``conv``, ``bn``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int] = (1, 1),
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        groups: int = 1,
        *,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``expansion`` -> depthwise 3x3 (``stride``) -> 1x1 project.

    With ``residual`` the input is added to the projection (only used with stride 1 and equal
    channel counts). Keys: ``conv``, ``conv_dw``, ``project``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: int,
        *,
        residual: bool = False,
        stride: int = 2,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        if residual and (stride != 1 or in_channels != out_channels):
            raise ValueError("a residual bottleneck needs stride 1 and equal channel counts")
        self.conv = ConvBlock(in_channels, expansion, bn_eps=bn_eps)
        self.conv_dw = ConvBlock(
            expansion,
            expansion,
            kernel=(3, 3),
            stride=(stride, stride),
            padding=(1, 1),
            groups=expansion,
            bn_eps=bn_eps,
        )
        self.project = LinearBlock(expansion, out_channels, bn_eps=bn_eps)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_blocks`` residual stride-1 :class:`DepthWise` units (key prefix ``model.{i}``)."""

    def __init__(
        self, channels: int, num_blocks: int, expansion: int, *, bn_eps: float = BN_EPS
    ) -> None:
        super().__init__()
        self.model = nn.Sequential(
            *(
                DepthWise(channels, channels, expansion, residual=True, stride=1, bn_eps=bn_eps)
                for _ in range(num_blocks)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet with eDifFIQA's parameter names (its ``model/mobilenet.py`` layout).

    ``embed(x)`` / ``forward(x)`` return the official output: the BatchNorm1d output,
    L2-normalised when ``normalize`` is True (the official behaviour). ``embed_unnormalized``
    gives the BatchNorm1d output itself.

    Args:
        num_features: embedding size (512 in eDifFIQA(T)).
        input_size: side of the square input (112 officially); the global depthwise kernel is the
            side of the final map (7 for 112).
        normalize: L2-normalise the output (True in the official code).
        bn_eps: epsilon of every BatchNorm (official: 1e-5).
        width: multiplier of all internal widths 64/128/256/512 (1.0 = released model).
    """

    has_quality_head = False

    def __init__(
        self,
        num_features: int = 512,
        *,
        input_size: int = 112,
        normalize: bool = True,
        bn_eps: float = BN_EPS,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {input_size}")
        if not 0.0 < bn_eps < 1.0:
            raise ValueError(f"bn_eps must be in (0, 1), got {bn_eps}")
        self.num_features = int(num_features)
        self.input_size = int(input_size)
        self.normalize = bool(normalize)
        self.width = float(width)
        self.bn_eps = float(bn_eps)

        def ch(n: int) -> int:
            return max(4, round(n * width))

        c64, c128, c256, c512 = ch(64), ch(128), ch(256), ch(512)
        side = stage_output_size(input_size)
        self.feature_map_size = side
        eps = bn_eps

        self.conv1 = ConvBlock(3, c64, (3, 3), (2, 2), (1, 1), bn_eps=eps)
        self.conv2_dw = ConvBlock(c64, c64, (3, 3), (1, 1), (1, 1), groups=c64, bn_eps=eps)
        self.conv_23 = DepthWise(c64, c64, c128, stride=2, bn_eps=eps)
        self.conv_3 = Residual(c64, 4, c128, bn_eps=eps)
        self.conv_34 = DepthWise(c64, c128, c256, stride=2, bn_eps=eps)
        self.conv_4 = Residual(c128, 6, c256, bn_eps=eps)
        self.conv_45 = DepthWise(c128, c128, c512, stride=2, bn_eps=eps)
        self.conv_5 = Residual(c128, 2, c256, bn_eps=eps)
        self.conv_6_sep = ConvBlock(c128, c512, bn_eps=eps)
        self.conv_6_dw = LinearBlock(c512, c512, (side, side), groups=c512, bn_eps=eps)
        self.conv_6_flatten = nn.Flatten()
        self.linear = nn.Linear(c512, num_features, bias=False)
        self.bn = nn.BatchNorm1d(num_features, eps=bn_eps)

    def feature_map(self, x: Tensor) -> Tensor:
        """Output of ``conv_6_sep`` (B, 512*width, s, s), s = 7 for 112 inputs."""
        x = self.conv_23(self.conv2_dw(self.conv1(x)))
        x = self.conv_34(self.conv_3(x))
        x = self.conv_45(self.conv_4(x))
        return self.conv_6_sep(self.conv_5(x))

    def embed_unnormalized(self, x: Tensor) -> Tensor:
        """The BatchNorm1d output (B, num_features), before L2 normalisation."""
        x = self.conv_6_flatten(self.conv_6_dw(self.feature_map(x)))
        return self.bn(self.linear(x))

    def embed(self, x: Tensor) -> Tensor:
        """The embedding (B, num_features); L2-normalised when ``normalize`` (official)."""
        out = self.embed_unnormalized(x)
        return F.normalize(out, p=2.0, dim=1, eps=1e-12) if self.normalize else out

    def embed_and_quality(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(embedding (B, F), None)``: the bare backbone has no quality output."""
        return self.embed(x), None

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)
