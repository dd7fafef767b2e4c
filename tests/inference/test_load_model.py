"""load_model: every supported weight file loads and scores like the network's own forward; bad
files are refused with CheckpointError, and a malicious pickle never runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import FEATURES, SIZE, SPEC, random_images, reference_forward, tiny_model
from PIL import Image

import igfiqa
from igfiqa.checkpoint import REQUIRED_KEYS, load_checkpoint
from igfiqa.errors import CheckpointError, DataError
from igfiqa.inference.loading import infer_model_spec
from igfiqa.models import create_model


def _checkpoint(spec, state, **changes):
    """A training checkpoint of the format's every key (placeholders where scoring needs none)."""
    payload = {key: {} for key in REQUIRED_KEYS}
    payload.update(format="igfiqa.checkpoint", format_version=1, epoch=0, step=0)
    payload.update(model_spec=spec, model=state, igfiqa_version="0.1.0", **changes)
    return payload


def test_crfiqa_backbone_scores_equal_own_forward(model, backbone_path):
    images = random_images(7)
    loaded = igfiqa.load_model(backbone_path)
    assert loaded.input_size == SIZE and loaded.num_features == FEATURES
    assert loaded.card["model_spec"]["name"] == "iresnet18"
    scores, embeddings = loaded.score_and_embed(images, batch_size=3)
    want_embedding, want_quality = reference_forward(model, images)
    np.testing.assert_allclose(scores, want_quality, atol=1e-5)
    np.testing.assert_allclose(embeddings, want_embedding, atol=1e-4)
    np.testing.assert_allclose(loaded.score(list(images), batch_size=64), want_quality, atol=1e-5)


def test_input_kinds_single_list_pil_paths(model, backbone_path, tmp_path):
    images = random_images(3, seed=4)
    _, want = reference_forward(model, images)
    loaded = igfiqa.load_model(backbone_path)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    assert loaded.score(images[0]).shape == (1,)
    np.testing.assert_allclose(loaded.score(images[1]), want[1:2], atol=1e-5)
    np.testing.assert_allclose(loaded.score(Image.fromarray(images[2])), want[2:3], atol=1e-5)
    np.testing.assert_allclose(loaded.score([str(p) for p in paths]), want, atol=1e-5)
    np.testing.assert_allclose(loaded.score(paths, workers=0), want, atol=1e-5)
    assert loaded.embed(paths[0]).shape == (1, FEATURES)


def test_wrong_size_refused_unless_resize(backbone_path):
    loaded = igfiqa.load_model(backbone_path)
    big = random_images(1, size=SIZE * 2)[0]
    with pytest.raises(DataError, match=r"64x64.*32x32"):
        loaded.score(big)
    assert np.isfinite(loaded.score(big, resize=True)).all()


def test_training_checkpoint(model, checkpoint_path):
    images = random_images(4, seed=1)
    loaded = igfiqa.load_model(checkpoint_path)
    np.testing.assert_allclose(loaded.score(images), reference_forward(model, images)[1], atol=1e-5)
    assert loaded.card["source"]["epoch"] == 2
    assert loaded.card["training"]["num_classes"] == 3
    assert loaded.card["training"]["data"] == {"train": "synthetic:identities=3,samples=4"}


def test_checkpoint_with_wrong_format_refused(tmp_path, model):
    path = tmp_path / "other.pt"
    torch.save({"format": "someone.else", "model_spec": SPEC, "model": model.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt.*igfiqa\.checkpoint"):
        igfiqa.load_model(path)
    torch.save({"format": "igfiqa.checkpoint", "format_version": 99, "model_spec": SPEC}, path)
    with pytest.raises(CheckpointError, match="format_version 99"):
        igfiqa.load_model(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 2}, r"format_version 2 is not supported \(this igfiqa reads 1 to 1\)"),
        ({"format_version": True}, "format_version True is not supported"),
        ({"optimizer": None}, r"incomplete: missing keys \['optimizer'\]"),
        ({"class_names": None, "rng": None}, r"missing keys \['rng', 'class_names'\]"),
    ],
)
def test_scoring_and_resuming_refuse_a_checkpoint_with_the_same_message(
    tmp_path, model, change, message
):
    """One reader: igfiqa.load_model (the kinds registry, kind igfiqa) and load_checkpoint (resume,
    demo, study) refuse a future version or a missing required key alike, word for word."""
    payload = _checkpoint(dict(SPEC), model.state_dict())
    for key, value in change.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    path = tmp_path / "step_00000001.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message) as resumed:
        load_checkpoint(path)
    for kind in (None, "igfiqa"):
        with pytest.raises(CheckpointError) as scored:
            igfiqa.load_model(path, kind=kind)
        assert str(scored.value) == str(resumed.value)
    assert str(path) in str(resumed.value)


def test_a_complete_checkpoint_passes_both_readers(tmp_path, model):
    path = tmp_path / "step_00000001.pt"
    torch.save(_checkpoint(dict(SPEC), model.state_dict()), path)
    assert load_checkpoint(path)["format_version"] == 1
    images = random_images(2, seed=3)
    np.testing.assert_allclose(
        igfiqa.load_model(path).score(images), reference_forward(model, images)[1], atol=1e-5
    )


def test_embedding_only_arcface_backbone(tmp_path):
    arcface = tiny_model(seed=3, quality_head=False)
    path = tmp_path / "arcface_r18.pth"
    torch.save({f"module.{k}": v for k, v in arcface.state_dict().items()}, path)
    loaded = igfiqa.load_model(path)
    assert not loaded.has_quality_head
    images = random_images(2)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        want = arcface(x).numpy()
    np.testing.assert_allclose(loaded.embed(images), want, atol=1e-4)
    with pytest.raises(CheckpointError, match="embedding-only"):
        loaded.score(images)


@pytest.mark.parametrize(
    ("name", "layers", "width", "size"),
    [("iresnet34", (3, 4, 6, 3), 0.0625, 112), ("iresnet50", (3, 4, 14, 3), 0.0625, 48)],
)
def test_architecture_inferred_from_keys(name, layers, width, size):
    network = create_model(name, width=width, input_size=size, num_features=24)
    spec = infer_model_spec(network.state_dict(), where="x")
    assert spec == {
        "name": name,
        "num_features": 24,
        "dropout": 0.0,
        "width": width,
        "input_size": size,
        "quality_head": True,
    }


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil_backbone.pth"
    torch.save({"conv1.weight": _RunsCode(marker)}, zipped)
    legacy = tmp_path / "evil_legacy.pth"
    with legacy.open("wb") as handle:
        pickle.dump(_RunsCode(marker), handle)
    for path in (zipped, legacy):
        with pytest.raises(CheckpointError, match=rf"refused to load .*{path.name}|{path.name}"):
            igfiqa.load_model(path)
        with pytest.raises(CheckpointError, match=rf"refused to load .*{path.name}|{path.name}"):
            load_checkpoint(path)  # the resume path reads files the same way
    assert not marker.exists()


def test_corrupt_and_wrong_files(tmp_path, backbone_path):
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint\n")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(backbone_path.read_bytes()[:500])
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listing)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(3)}, foreign)
    for path in (text, truncated, empty, listing, foreign, tmp_path / "missing.pth"):
        with pytest.raises(CheckpointError, match=path.name):
            igfiqa.load_model(path)


def test_weights_that_do_not_fit_the_spec(tmp_path, model):
    path = tmp_path / "mismatch.pt"
    spec = dict(SPEC, num_features=FEATURES * 2)
    torch.save(_checkpoint(spec, model.state_dict()), path)
    with pytest.raises(CheckpointError, match=r"does not fit the weights: num_features"):
        igfiqa.load_model(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("width", 400.0, "width 400"),  # would allocate ~24 GB if built before the check
        ("input_size", 10**9, "input_size 1000000000"),
        ("name", "iresnet100", "name iresnet100"),
        ("width", "wide", "malformed"),
    ],
)
def test_a_crafted_spec_is_refused_before_anything_is_allocated(
    tmp_path, model, field, value, message
):
    import tracemalloc

    path = tmp_path / "crafted.pt"
    spec = dict(SPEC, **{field: value})
    torch.save(_checkpoint(spec, model.state_dict()), path)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=message):
            igfiqa.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20


def test_bfloat16_close_to_float32(backbone_path):
    images = random_images(4, seed=2)
    full = igfiqa.load_model(backbone_path).score(images)
    half = igfiqa.load_model(backbone_path, dtype="bf16")
    assert half.dtype == "bfloat16"
    scores = half.score(images)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, full, atol=0.05 * (np.abs(full).max() + 1))


def test_run_folder_loads_latest_checkpoint_of_the_engine_writer(tmp_path, checkpoint_path, model):
    from igfiqa.checkpoint import save_checkpoint

    payload = torch.load(checkpoint_path, weights_only=True)
    older = tiny_model(seed=9)
    save_checkpoint({**payload, "step": 10, "model": older.state_dict()}, tmp_path / "checkpoints")
    save_checkpoint({**payload, "step": 40}, tmp_path / "checkpoints")
    images = random_images(3, seed=8)
    loaded = igfiqa.load_model(tmp_path)
    assert loaded.card["source"]["file"] == "step_00000040.pt"
    np.testing.assert_allclose(loaded.score(images), reference_forward(model, images)[1], atol=1e-5)


def test_a_wrong_shape_tensor_is_named_in_full(tmp_path, model):
    state = dict(model.state_dict())
    state["qs.weight"] = torch.zeros(1, FEATURES + 1)
    path = tmp_path / "wrong_qs.pt"
    torch.save(_checkpoint(SPEC, state), path)
    with pytest.raises(CheckpointError, match=r"size mismatch for qs\.weight: .*torch\.Size"):
        igfiqa.load_model(path)


def test_torch_tensors_score_like_the_same_images_as_arrays(backbone_path):
    from igfiqa.errors import DataError

    images = random_images(5, seed=9)  # uint8 (N, S, S, 3)
    model = igfiqa.load_model(backbone_path)
    expected = model.score(images)
    as_uint8 = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    # (other batch sizes take other kernels: agreement to float32 rounding, not bitwise)
    np.testing.assert_allclose(model.score(as_uint8, batch_size=2), expected, rtol=1e-5, atol=1e-5)
    as_float = as_uint8.float() / 255.0
    np.testing.assert_allclose(model.score(as_float), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.score(as_float[0]), expected[:1], rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        model.score(as_float * 255.0)
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        model.score(as_uint8.permute(0, 2, 3, 1))
    with pytest.raises(DataError, match="resize=True"):
        model.score(torch.zeros(1, 3, 40, 40))
    assert model.score(torch.zeros(2, 3, 40, 40), resize=True).shape == (2,)


def test_nan_or_inf_weights_are_refused_at_load_and_by_export(tmp_path, checkpoint_path):
    """A diverged run (say --set optim.lr=.inf) saves NaN weights; scoring with them wrote `nan`
    on every row and exited 0 (issue 25, item 8)."""
    from typer.testing import CliRunner

    from igfiqa.cli import app

    data = torch.load(checkpoint_path, weights_only=True)
    data["model"]["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(data, tmp_path / "diverged.pt")
    message = r"diverged.pt holds NaN/inf weights \(tensor layer1.0.conv1.weight\).*lower learning"
    with pytest.raises(CheckpointError, match=message):
        igfiqa.load_model(tmp_path / "diverged.pt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a run folder names its checkpoint
    torch.save(data, tmp_path / "run" / "checkpoints" / "step_00000040.pt")
    with pytest.raises(CheckpointError, match=r"run \(step_00000040.pt\) holds NaN/inf"):
        igfiqa.load_model(tmp_path / "run")
    state = tiny_model().state_dict()
    state["bn1.running_var"][3] = float("inf")  # a buffer, in a released-model layout
    torch.save(state, tmp_path / "181952backbone.pth")
    with pytest.raises(CheckpointError, match=r"tensor bn1.running_var"):
        igfiqa.load_model(tmp_path / "181952backbone.pth")
    out = tmp_path / "exp"
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "diverged.pt"), "--out", str(out), "--reference", "none"]
    )
    assert result.exit_code == 2 and "holds NaN/inf weights" in result.output
    assert result.output.count("\n") == 1 and not out.exists()


def test_finite_weights_whose_sum_overflows_are_not_refused():
    from igfiqa.inference.loading import check_finite_weights

    layer = torch.nn.Linear(4, 4)
    torch.nn.init.constant_(layer.weight, 3e38)  # finite; the float32 sum overflows to inf
    check_finite_weights(layer, where="huge.pt")
    layer.bias.data[1] = float("-inf")
    with pytest.raises(CheckpointError, match=r"huge.pt holds NaN/inf weights \(tensor bias\)"):
        check_finite_weights(layer, where="huge.pt")
