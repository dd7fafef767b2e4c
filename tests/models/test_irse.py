"""IR / IR-SE (face.evoLVe, CurricularFace) and SDD-FIQA: official key layout, shapes, function."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from igfiqa.inference.loading import clean_state_dict
from igfiqa.models.irse import BottleneckIR, IRNet, SDDFIQANet

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
STATS_ONLY = ("running_mean", "running_var", "num_batches_tracked")
UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
STAGES = (64, 128, 256, 512)


def expected_shapes(depth: int, *, se: bool, head: str, affine_bn1d: bool = True):
    """Key -> shape of the authors' state dicts, built from the face.evoLVe naming rule.

    ``head``: ``"output"`` (recognition ``output_layer``) or ``"quality"`` (SDD-FIQA ``quality``).
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int, entries=BN_ENTRIES) -> None:
        for entry in entries:
            shapes[f"{prefix}.{entry}"] = () if entry == "num_batches_tracked" else (channels,)

    shapes["input_layer.0.weight"] = (64, 3, 3, 3)
    bn("input_layer.1", 64)
    shapes["input_layer.2.weight"] = (64,)
    index, cin = 0, 64
    for units, cout in zip(UNITS[depth], STAGES, strict=True):
        for _ in range(units):
            p = f"body.{index}"
            if cin != cout:  # projection shortcut; otherwise MaxPool2d(1, stride): no entries
                shapes[f"{p}.shortcut_layer.0.weight"] = (cout, cin, 1, 1)
                bn(f"{p}.shortcut_layer.1", cout)
            bn(f"{p}.res_layer.0", cin)
            shapes[f"{p}.res_layer.1.weight"] = (cout, cin, 3, 3)
            shapes[f"{p}.res_layer.2.weight"] = (cout,)
            shapes[f"{p}.res_layer.3.weight"] = (cout, cout, 3, 3)
            bn(f"{p}.res_layer.4", cout)
            if se:
                shapes[f"{p}.res_layer.5.fc1.weight"] = (cout // 16, cout, 1, 1)
                shapes[f"{p}.res_layer.5.fc2.weight"] = (cout, cout // 16, 1, 1)
            index, cin = index + 1, cout
    if head == "output":
        bn("output_layer.0", 512)
        shapes["output_layer.3.weight"] = (512, 512 * 7 * 7)
        shapes["output_layer.3.bias"] = (512,)
        bn("output_layer.4", 512, BN_ENTRIES if affine_bn1d else STATS_ONLY)
    else:
        shapes["quality.1.weight"] = (512 * 7 * 7,)
        shapes["quality.3.weight"] = (1, 512 * 7 * 7)
        shapes["quality.3.bias"] = (1,)
    return shapes


def shapes_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def random_state(shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    model.load_state_dict(random_state(shapes_of(model), seed), strict=True)
    return model


def test_curricularface_ir101_layout_equals_official() -> None:
    model = IRNet(100, "ir", dropout=0.4, embedding_bn_affine=False)
    shapes = shapes_of(model)
    assert shapes == expected_shapes(100, se=False, head="output", affine_bn1d=False)
    assert len(shapes) == 672
    assert next(iter(shapes)) == "input_layer.0.weight"
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3)
    assert shapes["body.0.res_layer.1.weight"] == (64, 64, 3, 3)
    assert shapes["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)
    assert shapes["body.16.shortcut_layer.0.weight"] == (256, 128, 1, 1)
    assert shapes["body.46.shortcut_layer.0.weight"] == (512, 256, 1, 1)
    assert shapes["body.48.res_layer.4.running_var"] == (512,)
    assert "body.49.res_layer.0.weight" not in shapes
    assert not any(k.startswith("body.0.shortcut_layer") for k in shapes)
    assert shapes["output_layer.3.weight"] == (512, 25088)
    assert shapes["output_layer.4.running_mean"] == (512,)
    assert "output_layer.4.weight" not in shapes  # BatchNorm1d(512, affine=False)
    assert list(shapes)[-1] == "output_layer.4.num_batches_tracked"
    assert sum(p.numel() for p in model.parameters()) == 65_128_768
    assert model.input_size == 112 and model.num_features == 512


def test_evolve_ir50_and_ir_se50_layouts() -> None:
    ir = shapes_of(IRNet(50, "ir"))
    assert ir == expected_shapes(50, se=False, head="output")
    assert len(ir) == 349
    assert ir["output_layer.4.weight"] == (512,)  # face.evoLVe: affine BatchNorm1d
    se = shapes_of(IRNet(50, "ir_se"))
    assert se == expected_shapes(50, se=True, head="output")
    assert len(se) == 397
    assert se["body.0.res_layer.5.fc1.weight"] == (4, 64, 1, 1)
    assert se["body.23.res_layer.5.fc2.weight"] == (512, 32, 1, 1)


def test_sddfiqa_layout_equals_official_and_loads_strictly() -> None:
    model = SDDFIQANet(50)
    shapes = shapes_of(model)
    assert shapes == expected_shapes(50, se=False, head="quality")
    assert len(shapes) == 340
    assert list(shapes)[-3:] == ["quality.1.weight", "quality.3.weight", "quality.3.bias"]
    assert shapes["quality.3.weight"] == (1, 25088)
    assert not any(k.startswith("output_layer") for k in shapes)
    assert model.num_features == 25088 and model.input_size == 112
    # a DataParallel-saved file (keys "module.*") loads after stripping the prefix
    state = {f"module.{k}": v for k, v in random_state(shapes).items()}
    model.load_state_dict(clean_state_dict(state, where="sdd"), strict=True)


def tiny_ir(mode: str = "ir", **kw) -> IRNet:
    return IRNet(50, mode, width=0.125, input_size=32, num_features=16, **kw)


@pytest.mark.parametrize("mode", ["ir", "ir_se"])
def test_irnet_output_shapes_and_determinism(mode: str) -> None:
    model = randomize_(tiny_ir(mode)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        emb, quality = model.embed_and_quality(x)
        again = model.embed(x)
        fmap = model.feature_map(x)
    assert emb.shape == (3, 16) and quality is None
    assert fmap.shape == (3, 64, 2, 2)
    assert torch.equal(emb, again)
    assert torch.equal(model(x), emb)


def test_sddfiqa_output_shapes_determinism_and_head_function() -> None:
    model = randomize_(SDDFIQANet(width=0.125, input_size=32)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats, quality = model.embed_and_quality(x)
        out = model(x)
        again = model.embed_and_quality(x)
    assert feats.shape == (2, 64 * 2 * 2) and model.num_features == 256
    assert quality is not None and quality.shape == (2,) and out.shape == (2, 1)
    assert torch.equal(quality, out[:, 0]) and torch.equal(quality, again[1])
    assert torch.equal(model(x)[:, 0], quality)
    # head: Linear(PReLU(flatten(body map))), written out with functional ops
    head = model.quality
    ref = F.linear(F.prelu(feats, head[1].weight), head[3].weight, head[3].bias)[:, 0]
    torch.testing.assert_close(quality, ref)


def _bn(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


@pytest.mark.parametrize(
    ("cin", "cout", "stride", "se"),
    [(8, 16, 2, False), (8, 8, 2, False), (8, 8, 1, False), (16, 16, 2, True)],
)
def test_bottleneck_matches_functional_reference(
    cin: int, cout: int, stride: int, se: bool
) -> None:
    block = BottleneckIR(cin, cout, stride, se=se, bn_eps=1e-3)
    randomize_(block, seed=3).eval()
    x = torch.randn(2, cin, 9, 9)
    r = block.res_layer
    h = _bn(x, r[0])
    h = F.conv2d(h, r[1].weight, stride=1, padding=1)
    h = torch.where(h >= 0, h, r[2].weight.view(1, -1, 1, 1) * h)
    h = F.conv2d(h, r[3].weight, stride=stride, padding=1)
    h = _bn(h, r[4])
    if se:
        g = h.mean(dim=(2, 3), keepdim=True)
        g = torch.sigmoid(F.conv2d(torch.relu(F.conv2d(g, r[5].fc1.weight)), r[5].fc2.weight))
        h = h * g
    if cin == cout:
        short = x[:, :, ::stride, ::stride]  # MaxPool2d(1, stride) is plain subsampling
    else:
        s = block.shortcut_layer
        short = _bn(F.conv2d(x, s[0].weight, stride=stride), s[1])
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, cout, 5 if stride == 2 else 9, 5 if stride == 2 else 9)
    torch.testing.assert_close(out, h + short, rtol=1e-5, atol=1e-5)


def test_maxpool_shortcut_is_parameter_free() -> None:
    block = BottleneckIR(16, 16, 2)
    assert isinstance(block.shortcut_layer, torch.nn.MaxPool2d)
    assert block.shortcut_layer.kernel_size == 1 and block.shortcut_layer.stride == 2
    assert list(block.shortcut_layer.state_dict()) == []
    assert not any(k.startswith("shortcut_layer") for k in block.state_dict())
    projection = BottleneckIR(16, 32, 2)
    assert sorted(projection.shortcut_layer.state_dict()) == [
        "0.weight",
        "1.bias",
        "1.num_batches_tracked",
        "1.running_mean",
        "1.running_var",
        "1.weight",
    ]


def test_embedding_head_matches_functional_reference() -> None:
    model = randomize_(tiny_ir(embedding_bn_affine=False), seed=5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap = model.feature_map(x)
        emb = model.embed(x)
    out = model.output_layer
    h = torch.flatten(_bn(fmap, out[0]), 1)
    h = F.linear(h, out[3].weight, out[3].bias)
    bn1d = out[4]
    ref = (h - bn1d.running_mean) / torch.sqrt(bn1d.running_var + bn1d.eps)
    torch.testing.assert_close(emb, ref, rtol=1e-5, atol=1e-5)


def test_bn_eps_width_and_validation() -> None:
    model = tiny_ir(bn_eps=2e-5)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.eps == 2e-5 for m in norms)
    assert all(
        m.eps == 1e-5
        for m in SDDFIQANet(50, width=0.125).modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert IRNet(101, width=0.125, input_size=32).depth == 100
    assert len(IRNet(152, width=0.125, input_size=32).body) == 50
    with pytest.raises(ValueError):
        IRNet(34)
    with pytest.raises(ValueError):
        IRNet(50, "se")
    with pytest.raises(ValueError):
        IRNet(50, width=0.0)
