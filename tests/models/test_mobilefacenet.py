"""MobileFaceNet (eDifFIQA(T)) and eDifFIQA's MLP on it: official key layout, shapes, function."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from igfiqa.models.convention import InputConvention
from igfiqa.models.mobilefacenet import DepthWise, MobileFaceNet
from igfiqa.models.scoring import MLPRegressor, ScoringNetwork

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of eDifFIQA's MobileFaceNet (``model/mobilenet.py`` naming rule)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def block(prefix: str, cin: int, cout: int, k: int, groups: int, prelu: bool) -> None:
        shapes[f"{prefix}.conv.weight"] = (cout, cin // groups, k, k)
        for entry in BN_ENTRIES:
            shapes[f"{prefix}.bn.{entry}"] = () if entry == "num_batches_tracked" else (cout,)
        if prelu:
            shapes[f"{prefix}.prelu.weight"] = (cout,)

    def depthwise(prefix: str, cin: int, cout: int, expansion: int) -> None:
        block(f"{prefix}.conv", cin, expansion, 1, 1, True)
        block(f"{prefix}.conv_dw", expansion, expansion, 3, expansion, True)
        block(f"{prefix}.project", expansion, cout, 1, 1, False)

    block("conv1", 3, 64, 3, 1, True)
    block("conv2_dw", 64, 64, 3, 64, True)
    depthwise("conv_23", 64, 64, 128)
    for i in range(4):
        depthwise(f"conv_3.model.{i}", 64, 64, 128)
    depthwise("conv_34", 64, 128, 256)
    for i in range(6):
        depthwise(f"conv_4.model.{i}", 128, 128, 256)
    depthwise("conv_45", 128, 128, 512)
    for i in range(2):
        depthwise(f"conv_5.model.{i}", 128, 128, 256)
    block("conv_6_sep", 128, 512, 1, 1, True)
    block("conv_6_dw", 512, 512, 7, 512, False)
    shapes["linear.weight"] = (512, 512)
    for entry in BN_ENTRIES:
        shapes[f"bn.{entry}"] = () if entry == "num_batches_tracked" else (512,)
    return shapes


def shapes_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.2
    model.load_state_dict(state, strict=True)
    return model


def test_layout_equals_official() -> None:
    model = MobileFaceNet()
    shapes = shapes_of(model)
    assert shapes == expected_shapes()
    assert len(shapes) == 333
    assert next(iter(shapes)) == "conv1.conv.weight"
    assert shapes["conv1.conv.weight"] == (64, 3, 3, 3)
    assert shapes["conv2_dw.conv.weight"] == (64, 1, 3, 3)
    assert shapes["conv_23.conv_dw.conv.weight"] == (128, 1, 3, 3)
    assert shapes["conv_45.project.conv.weight"] == (128, 512, 1, 1)
    assert shapes["conv_5.model.1.project.bn.running_var"] == (128,)
    assert shapes["conv_6_dw.conv.weight"] == (512, 1, 7, 7)
    assert "conv_6_dw.prelu.weight" not in shapes
    assert shapes["linear.weight"] == (512, 512) and "linear.bias" not in shapes
    assert list(shapes)[-1] == "bn.num_batches_tracked"
    assert sum(p.numel() for p in model.parameters()) == 1_200_512
    assert model.input_size == 112 and model.num_features == 512


def tiny(**kw) -> MobileFaceNet:
    return MobileFaceNet(16, width=0.125, input_size=32, **kw)


def test_output_shapes_normalisation_and_determinism() -> None:
    model = randomize_(tiny()).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        emb, quality = model.embed_and_quality(x)
        raw = model.embed_unnormalized(x)
        again = model(x)
    assert emb.shape == (3, 16) and quality is None
    assert model.conv_6_dw.conv.kernel_size == (2, 2)
    assert torch.equal(emb, again)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb, raw / raw.norm(dim=1, keepdim=True))
    plain = randomize_(tiny(normalize=False)).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain.embed(x), raw)


def test_ediffiqa_quality_matches_functional_head() -> None:
    model = ScoringNetwork(
        tiny(), convention=InputConvention(size=32), quality="head", head=MLPRegressor(16, 8)
    )
    model = randomize_(model).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        emb, quality = model.embed_and_quality(x)
        out = model(x)
        again = model.embed_and_quality(x)
    assert emb.shape == (2, 16) and quality is not None and quality.shape == (2,)
    assert out[1].shape == (2, 1) and torch.equal(quality, out[1][:, 0])
    assert torch.equal(quality, again[1])
    mlp = model.head
    hidden = F.gelu(F.linear(emb, mlp.l1.weight, mlp.l1.bias))  # exact (erf) GELU
    torch.testing.assert_close(quality, F.linear(hidden, mlp.l2.weight, mlp.l2.bias)[:, 0])


def _bn(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


def _prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, weight.view(1, -1, 1, 1) * x)


@pytest.mark.parametrize(
    ("cin", "cout", "residual", "stride"), [(8, 8, True, 1), (8, 16, False, 2)]
)
def test_depthwise_unit_matches_functional_reference(
    cin: int, cout: int, residual: bool, stride: int
) -> None:
    unit = randomize_(
        DepthWise(cin, cout, 12, residual=residual, stride=stride, bn_eps=1e-3)
    ).eval()
    x = torch.randn(2, cin, 9, 9)
    h = _prelu(_bn(F.conv2d(x, unit.conv.conv.weight), unit.conv.bn), unit.conv.prelu.weight)
    h = F.conv2d(h, unit.conv_dw.conv.weight, stride=stride, padding=1, groups=12)
    h = _prelu(_bn(h, unit.conv_dw.bn), unit.conv_dw.prelu.weight)
    h = _bn(F.conv2d(h, unit.project.conv.weight), unit.project.bn)
    ref = x + h if residual else h
    with torch.no_grad():
        out = unit(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_bn_eps_and_validation() -> None:
    model = tiny(bn_eps=1e-3)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 1 + 1 + 3 * 15 + 1 + 1 + 1
    assert all(m.eps == 1e-3 for m in norms)
    with pytest.raises(ValueError):
        MobileFaceNet(width=0)
    with pytest.raises(ValueError):
        DepthWise(8, 16, 12, residual=True, stride=1)
