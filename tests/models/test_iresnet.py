"""iResNet: CR-FIQA / insightface parameter names, strict loading, parameter counts, tiny shapes."""

from __future__ import annotations

import pytest
import torch

from igfiqa.errors import ConfigError
from igfiqa.models import create_model

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
STAGES = (64, 128, 256, 512)


def expected_shapes(layers, *, quality_head: bool, features: int = 512, side: int = 7):
    """Key -> shape of a published iResNet, built from the insightface / CR-FIQA naming rule (docs/method.md, module map)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for entry in BN_ENTRIES:
            shapes[f"{prefix}.{entry}"] = () if entry == "num_batches_tracked" else (channels,)

    shapes["conv1.weight"] = (64, 3, 3, 3)
    bn("bn1", 64)
    shapes["prelu.weight"] = (64,)
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip(layers, STAGES, strict=True), start=1):
        for index in range(blocks):
            p = f"layer{stage}.{index}"
            cin = inplanes if index == 0 else planes
            bn(f"{p}.bn1", cin)
            shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.prelu.weight"] = (planes,)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn3", planes)
            if index == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                bn(f"{p}.downsample.1", planes)
        inplanes = planes
    bn("bn2", 512)
    shapes["fc.weight"] = (features, 512 * side * side)
    shapes["fc.bias"] = (features,)
    bn("features", features)
    if quality_head:
        shapes["qs.weight"] = (1, features)
        shapes["qs.bias"] = (1,)
    return shapes


def random_state(shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif key.endswith("weight") and len(shape) == 1:  # BN gamma / PReLU slopes
            state[key] = torch.rand(shape, generator=g) * 0.5 + 0.5
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


def test_crfiqa_named_state_dict_loads_strictly_and_round_trips(tmp_path):
    shapes = expected_shapes((2, 2, 2, 2), quality_head=True)
    model = create_model("r18")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes

    # A CR-FIQA "*backbone.pth" is a plain torch.save of such a dict.
    path = tmp_path / "181952backbone.pth"
    torch.save(random_state(shapes), path)
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    model.eval()
    images = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        embedding, quality = model(images)
    assert embedding.shape == (2, 512) and quality.shape == (2, 1)

    saved = tmp_path / "again.pth"
    torch.save(model.state_dict(), saved)
    other = create_model("iresnet18")
    other.load_state_dict(torch.load(saved, weights_only=True), strict=True)
    other.eval()
    with torch.no_grad():
        embedding2, quality2 = other(images)
    torch.testing.assert_close(embedding2, embedding, rtol=0, atol=0)
    torch.testing.assert_close(quality2, quality, rtol=0, atol=0)
    # The loaded values really are the file's values (e.g. the embedding BN's running stats).
    torch.testing.assert_close(other.features.running_var, torch.load(path)["features.running_var"])


def test_insightface_state_dict_without_qs_loads_into_model_without_quality_head():
    shapes = expected_shapes((2, 2, 2, 2), quality_head=False)
    state = random_state(shapes, seed=1)
    plain = create_model("r18", quality_head=False)
    plain.load_state_dict(state, strict=True)
    plain.eval()
    with torch.no_grad():
        out = plain(torch.zeros(1, 3, 112, 112))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 512)
    with pytest.raises(RuntimeError, match="qs"):
        create_model("r18").load_state_dict(state, strict=True)


def count_parameters_by_rule(layers, features: int = 512, side: int = 7) -> int:
    """Parameter count of a published iResNet from its layer list (BN: 2 per channel)."""
    total = 3 * 64 * 9 + 2 * 64 + 64  # stem conv, bn1, prelu
    inplanes = 64
    for blocks, planes in zip(layers, STAGES, strict=True):
        for index in range(blocks):
            cin = inplanes if index == 0 else planes
            total += 2 * cin + 9 * cin * planes + 2 * planes + planes + 9 * planes * planes
            total += 2 * planes
            if index == 0:
                total += cin * planes + 2 * planes
        inplanes = planes
    total += 2 * 512 + 512 * side * side * features + features + 2 * features
    return total


@pytest.mark.parametrize(
    ("name", "layers", "published_millions"),
    [("r50", (3, 4, 14, 3), 43.59), ("r100", (3, 13, 30, 3), 65.16)],
)
def test_parameter_counts_match_published_values(name, layers, published_millions):
    model = create_model(name, quality_head=False)
    count = sum(p.numel() for p in model.parameters())
    assert count == count_parameters_by_rule(layers)
    # insightface's model table: r50 43.59M, r100 65.16M (65.2M) parameters.
    assert round(count / 1e6, 2) == published_millions
    with_head = create_model(name)
    assert sum(p.numel() for p in with_head.parameters()) == count + 512 + 1


@pytest.mark.parametrize("size", [16, 32, 48, 57, 112])
def test_tiny_variants_give_the_right_shapes(size):
    model = create_model("r18", width=0.125, input_size=size, num_features=32)
    model.eval()
    with torch.no_grad():
        embedding, quality = model(torch.rand(3, 3, size, size) * 2 - 1)
    assert embedding.shape == (3, 32)
    assert quality.shape == (3, 1)
    assert model.layer4[0].conv2.out_channels == 64  # 512 * 0.125
    torch.testing.assert_close(model.quality(embedding), quality)


def test_wrong_input_size_fails_and_unknown_name_is_a_config_error():
    model = create_model("r18", width=0.125, input_size=32, num_features=16)
    with pytest.raises(RuntimeError):
        model(torch.zeros(2, 3, 48, 48))
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("resnet9000")
