"""Model kinds: files in the authors' layouts (built here by igfiqa's own networks, random weights
and BatchNorm statistics) load through ``load_model`` and give what the authors' inference computes:
their preprocessing, their quality rule, written out independently in each test."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.inference import load_model
from igfiqa.inference.fr_models import load_fr_model
from igfiqa.inference.kinds import KINDS, list_kinds
from igfiqa.inference.kinds.ofiq_uqs import ofiq_unified_quality
from igfiqa.models import create_model
from igfiqa.models.irse import IRNet, SDDFIQANet
from igfiqa.models.mobilefacenet import MobileFaceNet

SIZE = 32


def randomise(module: torch.nn.Module, seed: int = 0, var_scale: float = 1.0) -> torch.nn.Module:
    """Random weights and non-trivial BatchNorm statistics (running var ``var_scale`` x U(0.5, 1.5))."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = (torch.rand(value.shape, generator=g) + 0.5) * var_scale
        elif key.endswith("running_mean"):
            state[key] = torch.randn(value.shape, generator=g) * 0.1
        else:
            fan_in = value[0].numel() if value.ndim > 1 else 1
            state[key] = torch.randn(value.shape, generator=g) / math.sqrt(fan_in)
    module.load_state_dict(state)
    return module.eval()


def faces(n: int = 3, size: int = SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def official_input(images: np.ndarray, *, bgr: bool, mean: float, std: float) -> torch.Tensor:
    """The authors' preprocessing: optional RGB -> BGR, pixel / 255, (x - mean) / std, NCHW."""
    x = images[..., ::-1] if bgr else images
    x = (x.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def tiny_iresnet(quality_head: bool, bn_eps: float = 1e-5, seed: int = 0, var_scale: float = 1.0):
    net = create_model(
        "iresnet18", width=0.125, input_size=SIZE, num_features=16, quality_head=quality_head,
        bn_eps=bn_eps,
    )  # fmt: skip
    return randomise(net, seed, var_scale)


def kind_of(model) -> str:
    return model.card["kind"]["kind"]


def test_every_kind_is_listed_with_its_page_licence_and_files() -> None:
    names = [kind.name for kind in list_kinds()]
    for expected in (
        "igfiqa", "crfiqa", "arcface", "magface", "curricularface", "sddfiqa", "diffiqa-r",
        "ediffiqa", "ofiq-uqs", "serfiq", "onnx", "torchscript",
    ):  # fmt: skip
        assert expected in names
    for kind in list_kinds():
        row = kind.describe()
        assert all(row[key] for key in ("method", "input", "output", "page", "licence", "files"))
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    assert all(name in result.output for name in names)
    detail = CliRunner().invoke(app, ["models", "magface"])
    assert detail.exit_code == 0 and "BGR" in detail.output and "features.module" in detail.output


def test_crfiqa_and_arcface_layouts(tmp_path: Path) -> None:
    with_head, without = tiny_iresnet(True), tiny_iresnet(False, seed=1)
    torch.save(with_head.state_dict(), tmp_path / "181952backbone.pth")
    torch.save({f"module.{k}": v for k, v in without.state_dict().items()}, tmp_path / "a.pth")
    images = faces()
    x = official_input(images, bgr=False, mean=0.5, std=0.5)
    crfiqa = load_model(tmp_path / "181952backbone.pth", device="cpu")
    assert kind_of(crfiqa) == "crfiqa"
    with torch.no_grad():
        embedding, quality = with_head(x)
    np.testing.assert_allclose(crfiqa.score(images), quality[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(crfiqa.embed(images), embedding.numpy(), rtol=1e-4, atol=1e-4)
    arcface = load_model(tmp_path / "a.pth", device="cpu")
    assert kind_of(arcface) == "arcface" and not arcface.has_quality_head
    with torch.no_grad():
        np.testing.assert_allclose(arcface.embed(images), without(x).numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(CheckpointError, match="embedding-only"):
        arcface.score(images)


@pytest.mark.parametrize("prefix", ["features.module.", "module.features."])
def test_magface_checkpoint_bgr_unit_scale_eps_2e5_and_norm(tmp_path: Path, prefix: str) -> None:
    # small running variances make BatchNorm's eps visible: 2e-5 and 1e-5 give other embeddings
    reference = tiny_iresnet(False, bn_eps=2e-5, var_scale=1e-4)
    state = {prefix + k: v for k, v in reference.state_dict().items()}
    state["fc.weight"] = torch.randn(10, 16)  # MagLinear's class centres, not part of inference
    path = tmp_path / "magface_epoch_00025.pth"
    torch.save({"epoch": 25, "arch": "iresnet18", "state_dict": state}, path)
    model = load_model(path, device="cpu")
    assert kind_of(model) == "magface"
    assert model.card["input"]["convention"]["colour_order"] == "BGR"
    images = faces()
    with torch.no_grad():
        embedding = reference(official_input(images, bgr=True, mean=0.0, std=1.0))
    want = torch.linalg.vector_norm(embedding, dim=1).numpy()
    quality, got_embedding = model.score_and_embed(images)
    np.testing.assert_allclose(got_embedding, embedding.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(quality, want, rtol=1e-4)
    as_crfiqa_fed_it = load_model(path, options="colour=RGB", device="cpu")
    with torch.no_grad():
        rgb = reference(official_input(images, bgr=False, mean=0.0, std=1.0))
    np.testing.assert_allclose(
        as_crfiqa_fed_it.score(images), torch.linalg.vector_norm(rgb, dim=1).numpy(), rtol=1e-4
    )
    wrong_eps = tiny_iresnet(False, bn_eps=1e-5, var_scale=1e-4)
    with torch.no_grad():
        other = wrong_eps(official_input(images, bgr=True, mean=0.0, std=1.0))
    assert not np.allclose(torch.linalg.vector_norm(other, dim=1).numpy(), want, rtol=1e-3)


def test_diffiqa_r_linear_on_the_raw_embedding(tmp_path: Path) -> None:
    base = tiny_iresnet(False, seed=2)
    linear = randomise(torch.nn.Linear(16, 1), seed=3)
    state = {f"base.{k}": v for k, v in base.state_dict().items()}
    state.update({f"linear.{k}": v for k, v in linear.state_dict().items()})
    torch.save(state, tmp_path / "diffiqa(r).pth")
    model = load_model(tmp_path / "diffiqa(r).pth", device="cpu")
    assert kind_of(model) == "diffiqa-r"
    images = faces()
    with torch.no_grad():
        want = linear(base(official_input(images, bgr=False, mean=0.5, std=0.5)))[:, 0]
    np.testing.assert_allclose(model.score(images), want.numpy(), rtol=1e-4, atol=1e-5)


def _mlp_state(seed: int, features: int = 16, hidden: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "mlp.l1.weight": torch.randn(hidden, features, generator=g) / 4,
        "mlp.l1.bias": torch.randn(hidden, generator=g) / 4,
        "mlp.l2.weight": torch.randn(1, hidden, generator=g) / 3,
        "mlp.l2.bias": torch.randn(1, generator=g),
    }


def _mlp(state: dict[str, torch.Tensor], e: torch.Tensor) -> torch.Tensor:
    h = e @ state["mlp.l1.weight"].T + state["mlp.l1.bias"]
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU, written out
    return (h @ state["mlp.l2.weight"].T + state["mlp.l2.bias"])[:, 0]


@pytest.mark.parametrize("variant", ["iresnet", "mobilefacenet"])
def test_ediffiqa_mlp_on_the_base_embedding(tmp_path: Path, variant: str) -> None:
    if variant == "iresnet":
        base = tiny_iresnet(False, seed=4)
    else:
        base = randomise(MobileFaceNet(16, width=0.125, input_size=SIZE), seed=4)
    mlp = _mlp_state(5)
    state = {f"base_model.{k}": v for k, v in base.state_dict().items()} | mlp
    torch.save(state, tmp_path / "ediffiqa.pth")
    model = load_model(tmp_path / "ediffiqa.pth", device="cpu")
    assert kind_of(model) == "ediffiqa"
    assert model.card["model_spec"]["variant"] == ("S" if variant == "iresnet" else "T")
    images = faces()
    with torch.no_grad():
        e = base(official_input(images, bgr=False, mean=0.5, std=0.5))
    if variant == "mobilefacenet":  # eDifFIQA(T)'s base returns unit-length embeddings
        np.testing.assert_allclose(e.norm(dim=1).numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model.score(images), _mlp(mlp, e).numpy(), rtol=1e-4, atol=1e-5)


def test_curricularface_ir_network(tmp_path: Path) -> None:
    net = randomise(
        IRNet(50, "ir", input_size=SIZE, num_features=16, width=0.125, embedding_bn_affine=False)
    )
    assert "output_layer.4.weight" not in net.state_dict()
    torch.save(net.state_dict(), tmp_path / "CurricularFace_Backbone.pth")
    model = load_model(tmp_path / "CurricularFace_Backbone.pth", device="cpu")
    assert kind_of(model) == "curricularface" and not model.has_quality_head
    assert model.card["model_spec"]["depth"] == 50
    images = faces()
    with torch.no_grad():
        want = net(official_input(images, bgr=False, mean=0.5, std=0.5))
    np.testing.assert_allclose(model.embed(images), want.numpy(), rtol=1e-4, atol=1e-4)
    fr = load_fr_model(tmp_path / "CurricularFace_Backbone.pth", device="cpu")
    np.testing.assert_allclose(fr.embed(images), want.numpy(), rtol=1e-4, atol=1e-4)


def test_sddfiqa_quality_network_from_a_dataparallel_file(tmp_path: Path) -> None:
    net = randomise(SDDFIQANet(50, input_size=SIZE, width=0.125), seed=6)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "sdd.pth")
    model = load_model(tmp_path / "sdd.pth", device="cpu")
    assert kind_of(model) == "sddfiqa"
    images = faces()
    with torch.no_grad():
        want = net(official_input(images, bgr=False, mean=0.5, std=0.5))[:, 0]
    np.testing.assert_allclose(model.score(images), want.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(CheckpointError, match="no face recognition embedding"):
        load_fr_model(tmp_path / "sdd.pth", device="cpu")


def test_serfiq_kind_over_an_arcface_file(tmp_path: Path) -> None:
    net = tiny_iresnet(False, seed=7)
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    t, p = 6, 0.5
    model = load_model(
        tmp_path / "backbone.pth", kind="serfiq", options=f"T={t},p={p},seed=3", device="cpu"
    )
    assert kind_of(model) == "serfiq" and model.has_quality_head
    images = faces(2)
    x = official_input(images, bgr=False, mean=0.5, std=0.5)
    with torch.no_grad():
        hidden = torch.flatten(net.bn2(net.layer4(net.layer3(net.layer2(net.layer1(
            net.prelu(net.bn1(net.conv1(x)))))))), 1)  # fmt: skip
        masks = torch.rand((t, hidden.shape[1]), generator=torch.Generator().manual_seed(3)) >= p
        stochastic = [
            F.normalize(net.features(net.fc(hidden * masks[i] / (1 - p))), dim=1) for i in range(t)
        ]
    for b in range(2):
        d = np.mean(
            [
                float((stochastic[i][b] - stochastic[j][b]).norm())
                for i in range(t)
                for j in range(i + 1, t)
            ]
        )
        s = 2 / (1 + math.exp(d))
        want = 1 / (1 + math.exp(-130 * (s - 0.88)))
        assert model.score(images)[b] == pytest.approx(want, rel=1e-3, abs=1e-6)
    with pytest.raises(ConfigError, match="takes the options"):
        load_model(tmp_path / "backbone.pth", kind="serfiq", options="passes=3")


def _ofiq_like_onnx(path: Path, weight: np.ndarray) -> None:
    """A stand-in for OFIQ's file: input 1x3x112x112 (static batch of one), one output (1, 1)
    = the L2 norm of (channel means of the input) @ weight."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["feature"]),
        helper.make_node("ReduceL2", ["feature", "axis1"], ["norm"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "ofiq_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("norm", TensorProto.FLOAT, [1, 1])],
        [
            numpy_helper.from_array(weight.astype(np.float32), "w"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_ofiq_unified_quality_mapping_by_hand() -> None:
    # OFIQ's expected results: native 24.329985 -> 63 (62.56 rounded); the centre 23 -> 50
    assert ofiq_unified_quality(np.array([24.329985]))[0] == 63
    assert ofiq_unified_quality(np.array([23.0]))[0] == 50
    raw = np.array([0.0, 10.0, 40.0, 1e4])
    want = [round(100 / (1 + math.exp((23 - n) / 2.6))) for n in raw]
    np.testing.assert_array_equal(ofiq_unified_quality(raw), want)


def test_ofiq_uqs_resize_crop_bgr_and_mapping(tmp_path: Path) -> None:
    weight = np.random.default_rng(0).normal(0, 10, (3, 8))
    path = tmp_path / "magface_iresnet50_norm.onnx"
    _ofiq_like_onnx(path, weight)
    assert kind_of(load_model(path, device="cpu")) == "onnx"  # not recognised: a bare ONNX
    model = load_model(path, kind="ofiq-uqs", device="cpu")
    assert model.input_size == 616 and kind_of(model) == "ofiq-uqs"
    assert model.card["alignment"]["template"][0] == [251.0, 272.0]
    tints = np.array([[1.0, 0.2, 0.6], [0.3, 0.9, 0.1], [0.7, 0.7, 0.7], [0.1, 0.3, 1.0]])
    images = (faces(4, 616, seed=2) * tints[:, None, None, :]).astype(np.uint8)
    want = []
    for image in images:  # OFIQ's C++ steps, restated: BGR, resize to 192, crop, / 255
        bgr = np.ascontiguousarray(image[..., ::-1])
        small = cv2.resize(bgr, (192, 192), interpolation=cv2.INTER_LINEAR)[33:145, 40:152]
        pooled = (small.astype(np.float64) / 255.0).mean(axis=(0, 1))
        norm = np.linalg.norm(pooled @ weight)
        want.append(np.clip(round(100 / (1 + math.exp((23 - norm) / 2.6))), 0, 100))
    np.testing.assert_array_equal(model.score(images), want)
    assert len(set(want)) > 1  # the images differ enough for the check to mean something


def test_unknown_and_mismatched_files_name_the_kinds(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(3)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "odd.pth")
    for name in ("crfiqa", "magface", "ediffiqa", "--kind"):
        assert name in str(error.value)
    with pytest.raises(CheckpointError, match="reads onnx files"):
        load_model(tmp_path / "odd.pth", kind="ofiq-uqs")
    with pytest.raises(ConfigError, match="unknown model kind"):
        load_model(tmp_path / "odd.pth", kind="arcfac")


def test_sha256_is_reported_and_a_pin_that_does_not_match_loads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.save(tiny_iresnet(True).state_dict(), tmp_path / "m.pth")
    digest = hashlib.sha256((tmp_path / "m.pth").read_bytes()).hexdigest()
    model = load_model(tmp_path / "m.pth", sha256=digest.upper(), device="cpu")
    assert model.card["source"]["sha256"] == digest
    import igfiqa.inference.loading as loading

    def refuse(path: Path) -> None:
        raise AssertionError("the file was unpickled before its checksum was checked")

    monkeypatch.setattr(loading, "read_torch_file", refuse)
    with pytest.raises(CheckpointError, match="does not match the pinned"):
        load_model(tmp_path / "m.pth", sha256="0" * 64)
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        load_model(tmp_path / "m.pth", sha256="abc")
    cv2.imwrite(str(tmp_path / "face.png"), faces(1)[0])
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "m.pth"), str(tmp_path / "face.png"), "--sha256", "1" * 64]
    )
    assert result.exit_code == 2 and "does not match" in result.output


def test_export_keeps_the_kind_and_its_convention(tmp_path: Path) -> None:
    from igfiqa.inference.export import export_model

    reference = tiny_iresnet(False, bn_eps=2e-5, seed=8, var_scale=1e-3)
    state = {"features.module." + k: v for k, v in reference.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "mag.pth")
    card = export_model(tmp_path / "mag.pth", tmp_path / "export", reference=None)
    assert card["kind"]["kind"] == "magface" and card["model_spec"]["kind"] == "magface"
    assert card["input"]["convention"]["colour_order"] == "BGR"
    exported = load_model(tmp_path / "export", device="cpu")
    original = load_model(tmp_path / "mag.pth", device="cpu")
    images = faces()
    np.testing.assert_allclose(exported.score(images), original.score(images), rtol=1e-5)
    assert "magface" in KINDS


def test_an_edited_export_card_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    import json

    from igfiqa.inference.export import export_model

    reference = tiny_iresnet(False, bn_eps=2e-5, seed=9)
    state = {"features.module." + k: v for k, v in reference.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "mag.pth")
    export_model(tmp_path / "mag.pth", tmp_path / "export", reference=None)
    card_path = tmp_path / "export" / "model_card.json"
    card = json.loads(card_path.read_text())
    for change, message in (
        ({"width": 1000.0}, "do not fit"),  # 64000-channel stem: refused from its meta shapes
        ({"input_size": 100000}, "do not fit"),
        ({"kind": "serfiq", "base_kind": "serfiq"}, "cannot be serfiq"),
        ({"kind": "ediffiqa", "mlp_hidden": 10**9}, "do not fit"),
        ({"kind": "curricularface"}, "cannot build"),  # no depth in the spec
    ):
        edited = json.loads(json.dumps(card))
        edited["model_spec"].update(change)
        card_path.write_text(json.dumps(edited))
        with pytest.raises(CheckpointError, match=message):
            load_model(tmp_path / "export", device="cpu")


def test_pins_and_specs_of_onnx_exports_and_fr_models(tmp_path: Path) -> None:
    torch.save(tiny_iresnet(False, seed=10).state_dict(), tmp_path / "arc.pth")
    digest = hashlib.sha256((tmp_path / "arc.pth").read_bytes()).hexdigest()
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:  # a bare file name with a pin is not a NAME=SPEC
        assert load_fr_model(f"arc.pth@sha256={digest}", device="cpu").name == "arc.pth"
        assert load_fr_model(f"ArcFace=arcface:arc.pth@sha256={digest}", device="cpu").name == (
            "ArcFace"
        )
        with pytest.raises(CheckpointError, match="does not match"):
            load_fr_model(f"arc.pth@sha256={'0' * 64}", device="cpu")
        with pytest.raises(CheckpointError, match="is not a model kind"):
            load_fr_model("arcfac:arc.pth", device="cpu")
    finally:
        os.chdir(here)
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="not a readable ONNX"):
        load_model(tmp_path / "bad.onnx")
    (tmp_path / "torn.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "torn.pth")
    with pytest.raises(ConfigError, match="given twice"):
        load_model(tmp_path / "arc.pth", kind="serfiq", options="T=3,T=4")
    with pytest.raises(ConfigError, match="rescale"):
        load_model(tmp_path / "arc.pth", kind="serfiq", options="rescale=maybe")
