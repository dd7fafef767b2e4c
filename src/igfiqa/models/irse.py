"""The "IR" / "IR-SE" ResNet family of face.evoLVe, as used by CurricularFace and SDD-FIQA.

Architecture (improved residual units of "ArcFace: Additive Angular Margin Loss for Deep Face
Recognition", Deng et al., CVPR 2019; optional squeeze-and-excitation of "Squeeze-and-Excitation
Networks", Hu et al., CVPR 2018):

* ``input_layer``: conv3x3 (3 -> 64, stride 1, no bias) -> BN2d -> PReLU.
* ``body``: one flat ``nn.Sequential`` of bottleneck units over four stages of widths
  64/128/256/512. The first unit of *every* stage (the first one included) has stride 2, so a
  112x112 input leaves the body at 7x7. A unit is ``res_layer`` + ``shortcut_layer`` where
  ``res_layer`` = BN2d -> conv3x3 -> PReLU -> conv3x3(stride) -> BN2d (-> SE in ``ir_se`` mode) and
  ``shortcut_layer`` is a parameter-free ``MaxPool2d(1, stride)`` (plain subsampling) when the
  channel count is unchanged, else conv1x1(stride) -> BN2d.
* Recognition head ``output_layer`` (:class:`IRNet`): BN2d -> Dropout -> Flatten ->
  Linear(512*7*7 -> 512) -> BatchNorm1d. face.evoLVe uses dropout 0.5 and an affine BatchNorm1d;
  CurricularFace ("CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition",
  Huang et al., CVPR 2020) uses dropout 0.4 and ``BatchNorm1d(512, affine=False)``.
* Quality head ``quality`` (:class:`SDDFIQANet`, "SDD-FIQA: Unsupervised Face Image Quality
  Assessment with Similarity Distribution Distance", Ou et al., CVPR 2021): Flatten ->
  PReLU(512*7*7) -> Dropout(0.5) -> Linear(512*7*7 -> 1) directly on the body output (no BN2d).

Module and parameter names equal those of the authors' released state dicts, so they load with
``load_state_dict(strict=True)`` (once ``nn.DataParallel``'s ``module.`` prefixes are removed). Every BatchNorm uses eps 1e-5 in the
official code. The official inference preprocessing is RGB, 112x112, ``(x / 255 - 0.5) / 0.5``
(i.e. values in [-1, 1]); the embedding is *not* L2-normalised by the network.

``width`` scales the stage widths and ``input_size`` the spatial size so that tests can build tiny
versions; ``width=1.0, input_size=112`` gives the published models.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from igfiqa.models.iresnet import stage_channels, stage_output_size

BN_EPS = 1e-5
STEM_CHANNELS = 64
SE_REDUCTION = 16

#: units per stage; face.evoLVe calls the 100-unit variant "IR_101" (num_layers=100).
IR_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
DEPTH_ALIASES = {101: 100}
MODES = ("ir", "ir_se")


def canonical_depth(depth: int) -> int:
    """50 / 100 / 152 (101 is accepted as the face.evoLVe name of the 100-unit model)."""
    key = DEPTH_ALIASES.get(int(depth), int(depth))
    if key not in IR_BLOCKS:
        raise ValueError(f"depth must be one of 50, 100 (or 101), 152; got {depth}")
    return key


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: global average -> conv1x1 -> ReLU -> conv1x1 -> sigmoid -> scale.

    The hidden width is ``channels // reduction`` (officially reduction 16, no biases); it is kept
    at least 1 so that tiny test widths still build.
    """

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIR(nn.Module):
    """One improved residual unit (``bottleneck_IR`` / ``bottleneck_IR_SE`` in face.evoLVe).

    ``res_layer``: BN -> conv3x3 (stride 1) -> PReLU -> conv3x3 (``stride``) -> BN [-> SE];
    ``shortcut_layer``: ``MaxPool2d(1, stride)`` if ``in_channels == out_channels`` (no
    parameters), else conv1x1 (``stride``) -> BN. Output = residual + shortcut (no activation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        se: bool = False,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, (1, 1), stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=bn_eps),
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels, eps=bn_eps),
            nn.Conv2d(in_channels, out_channels, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=bn_eps),
        ]
        if se:
            layers.append(SEModule(out_channels))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def _make_input_layer(channels: int, bn_eps: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, channels, (3, 3), 1, 1, bias=False),
        nn.BatchNorm2d(channels, eps=bn_eps),
        nn.PReLU(channels),
    )


def _make_body(
    blocks: tuple[int, int, int, int],
    channels: tuple[int, int, int, int],
    stem_channels: int,
    *,
    se: bool,
    bn_eps: float,
) -> nn.Sequential:
    units: list[nn.Module] = []
    in_channels = stem_channels
    for num_units, out_channels in zip(blocks, channels, strict=True):
        for index in range(num_units):
            stride = 2 if index == 0 else 1
            units.append(BottleneckIR(in_channels, out_channels, stride, se=se, bn_eps=bn_eps))
            in_channels = out_channels
    return nn.Sequential(*units)


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform conv/linear weights, zero biases, unit/zero affine BN (as face.evoLVe)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class IRNet(nn.Module):
    """face.evoLVe ``Backbone`` (IR / IR-SE) with its recognition head ``output_layer``.

    ``embed(x)`` (and ``forward``) return the raw embedding, the BatchNorm1d output (not
    L2-normalised). State-dict keys: ``input_layer.{0,1,2}``, ``body.{i}.shortcut_layer.{0,1}``
    (projection units only), ``body.{i}.res_layer.{0..4}`` (``.5.fc1`` / ``.5.fc2`` in ``ir_se``
    mode), ``output_layer.0`` (BN2d), ``output_layer.3`` (Linear), ``output_layer.4`` (BN1d).

    Args:
        depth: 50, 100 (alias 101) or 152 -- unit counts (3,4,14,3), (3,13,30,3), (3,8,36,3).
        mode: ``"ir"`` or ``"ir_se"`` (squeeze-and-excitation, reduction 16, in every unit).
        input_size: side of the square input; the official code allows 112 (7x7 map) and 224.
        num_features: embedding size (512 in every released model).
        dropout: dropout before the Linear layer (0.5 face.evoLVe, 0.4 CurricularFace; no effect
            in eval mode).
        embedding_bn_affine: whether the final BatchNorm1d has weight/bias (face.evoLVe: True;
            CurricularFace: False, its checkpoints then hold only running statistics).
        bn_eps: epsilon of every BatchNorm (official: 1e-5).
        width: multiplier of the stage widths 64/128/256/512 (1.0 = released models).
    """

    has_quality_head = False

    def __init__(
        self,
        depth: int = 50,
        mode: str = "ir",
        *,
        input_size: int = 112,
        num_features: int = 512,
        dropout: float = 0.5,
        embedding_bn_affine: bool = True,
        bn_eps: float = BN_EPS,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {input_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 < bn_eps < 1.0:
            raise ValueError(f"bn_eps must be in (0, 1), got {bn_eps}")
        self.depth = canonical_depth(depth)
        self.mode = mode
        self.input_size = int(input_size)
        self.num_features = int(num_features)
        self.width = float(width)
        self.bn_eps = float(bn_eps)
        channels = stage_channels(width)
        stem = channels[0]
        side = stage_output_size(input_size)
        self.feature_map_size = side

        self.input_layer = _make_input_layer(stem, bn_eps)
        self.body = _make_body(
            IR_BLOCKS[self.depth], channels, stem, se=mode == "ir_se", bn_eps=bn_eps
        )
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(channels[3], eps=bn_eps),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(channels[3] * side * side, num_features),
            nn.BatchNorm1d(num_features, eps=bn_eps, affine=embedding_bn_affine),
        )
        _init_weights(self)

    def feature_map(self, x: Tensor) -> Tensor:
        """Body output (B, C, s, s), s = 7 for 112 inputs (CurricularFace's ``conv_out``, unflattened)."""
        return self.body(self.input_layer(x))

    def embed(self, x: Tensor) -> Tensor:
        """The embedding (B, num_features): output of the final BatchNorm1d, not L2-normalised."""
        return self.output_layer(self.feature_map(x))

    def embed_and_quality(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(embedding (B, F), None)``: a recognition network has no quality output."""
        return self.embed(x), None

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)


class SDDFIQANet(nn.Module):
    """SDD-FIQA's quality regression network: IR-50 body + ``quality`` head (TFace ``R50(use_type="Qua")``).

    The head is ``quality`` = Flatten -> PReLU(C*s*s) -> Dropout(0.5) -> Linear(C*s*s -> 1)
    (``quality.1.weight`` (25088,), ``quality.3.weight`` (1, 25088), ``quality.3.bias`` (1,) at full
    size), applied directly to the body output; there is no BN2d and no embedding layer.

    ``embed(x)`` returns the flattened body output (B, C*s*s) -- 25088-d for the released model --
    i.e. the input of the quality head, which is the only feature vector this network has; it is a
    feature map, not a trained identity embedding. ``num_features`` is that size (25088).
    ``quality(x)`` / the second element of ``embed_and_quality`` is the predicted score, shape (B,).

    Args:
        depth: body depth (the released model and the official code: 50).
        input_size: side of the square input (112 in the official code).
        dropout: dropout of the head (0.5; no effect in eval mode).
        bn_eps: epsilon of every BatchNorm (official: 1e-5).
        width: multiplier of the stage widths (1.0 = released model).
    """

    has_quality_head = True

    def __init__(
        self,
        depth: int = 50,
        *,
        input_size: int = 112,
        dropout: float = 0.5,
        bn_eps: float = BN_EPS,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {input_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 < bn_eps < 1.0:
            raise ValueError(f"bn_eps must be in (0, 1), got {bn_eps}")
        self.depth = canonical_depth(depth)
        self.input_size = int(input_size)
        self.width = float(width)
        self.bn_eps = float(bn_eps)
        channels = stage_channels(width)
        stem = channels[0]
        side = stage_output_size(input_size)
        self.feature_map_size = side
        flat = channels[3] * side * side
        self.num_features = flat

        self.input_layer = _make_input_layer(stem, bn_eps)
        self.body = _make_body(IR_BLOCKS[self.depth], channels, stem, se=False, bn_eps=bn_eps)
        self.quality = nn.Sequential(
            nn.Flatten(),
            nn.PReLU(flat),
            nn.Dropout(dropout, inplace=False),
            nn.Linear(flat, 1),
        )
        _init_weights(self)

    def feature_map(self, x: Tensor) -> Tensor:
        """Body output (B, C, s, s), s = 7 for 112 inputs."""
        return self.body(self.input_layer(x))

    def embed(self, x: Tensor) -> Tensor:
        """Flattened body output (B, num_features): the input of the quality head."""
        return torch.flatten(self.feature_map(x), 1)

    def embed_and_quality(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(flattened feature map (B, C*s*s), quality (B,))`` from one pass through the body."""
        features = self.embed(x)
        return features, self.quality(features)[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        """The official output: quality of shape (B, 1)."""
        return self.quality(self.feature_map(x))
