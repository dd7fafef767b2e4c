"""`igfiqa export`: the export reloads with the same scores, the card says what it must, ONNX agrees
with PyTorch, and the ONNX scoring path runs without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inference_helpers import SIZE, random_images
from PIL import Image
from typer.testing import CliRunner

import igfiqa
from igfiqa.cli import app
from igfiqa.errors import CheckpointError
from igfiqa.inference.calibration import ScoreCalibration

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _onnx_export_once_per_network():
    """torch's ONNX exporter takes seconds per call, and these tests export the same tiny network
    many times: each distinct network (by its weights) is converted once, then saved, checked and
    verified against torch as usual."""
    import hashlib

    from igfiqa.inference import export

    real, programs = export._onnx_program, {}

    def once(network, opset):
        h = hashlib.sha256(str(opset).encode())
        for name, tensor in network.state_dict().items():
            h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        if h.hexdigest() not in programs:
            programs[h.hexdigest()] = real(network, opset)
        return programs[h.hexdigest()]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "_onnx_program", once)
        yield


@pytest.fixture(scope="module")
def export_dir(checkpoint_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny"
    reference = "synthetic:identities=6,samples=5,seed=1"
    result = runner.invoke(
        app, ["export", str(checkpoint_path), "--out", str(out), "--onnx", "--reference", reference]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for index, image in enumerate(random_images(6, seed=21)):
        Image.fromarray(image).save(root / f"{index}.png")
    return root


def test_card_contents(export_dir):
    card = json.loads((export_dir / "model_card.json").read_text())
    assert card["format"] == "igfiqa.model_card"
    assert card["model_spec"]["name"] == "iresnet18" and card["model_spec"]["input_size"] == SIZE
    assert card["input"]["colour_order"] == "RGB"
    assert card["input"]["normalisation"]["mean"] == [0.5] * 3
    assert card["input"]["normalisation"]["std"] == [0.5] * 3
    template = np.array(card["alignment"]["template"])
    assert template.shape == (5, 2)
    np.testing.assert_allclose(template[0], np.array([38.2946, 51.6963]) * SIZE / 112, atol=1e-9)
    assert card["training"]["data"] == {"train": "synthetic:identities=3,samples=4"}
    assert card["code_version"]["igfiqa"] == igfiqa.__version__
    assert card["onnx"]["opset"] == 18 and card["onnx"]["max_abs_difference_to_torch"] < 1e-4
    calibration = card["calibration"]
    assert calibration["reference"]["num_images"] == 30
    assert calibration["levels"][-1] == 100.0


def test_round_trip_same_scores(export_dir, checkpoint_path, image_folder):
    images = sorted(image_folder.iterdir())
    original = igfiqa.load_model(checkpoint_path).score(images)
    exported = igfiqa.load_model(export_dir)
    np.testing.assert_allclose(exported.score(images), original, atol=1e-6)
    alone = export_dir.parent / "alone.safetensors"  # the card embedded in the metadata suffices
    alone.write_bytes((export_dir / "model.safetensors").read_bytes())
    np.testing.assert_allclose(igfiqa.load_model(alone).score(images), original, atol=1e-6)
    assert exported.calibration is not None
    assert set(exported.calibrate(original).tolist()) <= set(range(101))


def test_onnx_matches_torch(export_dir, image_folder, tmp_path):
    images = sorted(image_folder.iterdir())
    torch_model = igfiqa.load_model(export_dir)
    onnx_model = igfiqa.load_model(export_dir, backend="onnx")
    assert onnx_model.backend == "onnx"
    t_scores, t_embeddings = torch_model.score_and_embed(images)
    o_scores, o_embeddings = onnx_model.score_and_embed(images, batch_size=4)  # dynamic batch 4 + 2
    np.testing.assert_allclose(o_scores, t_scores, atol=1e-4)
    np.testing.assert_allclose(o_embeddings, t_embeddings, atol=1e-3)
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.csv"
        args = ["score", str(export_dir), str(image_folder), "-o", str(out), "--calibrated"]
        assert runner.invoke(app, [*args, "--backend", backend]).exit_code == 0
        rows[backend] = [line.split(",") for line in out.read_text().splitlines()[1:]]
    for t_row, o_row in zip(rows["torch"], rows["onnx"], strict=True):
        assert t_row[0] == o_row[0]
        assert float(t_row[1]) == pytest.approx(float(o_row[1]), abs=1e-4)
        assert abs(int(t_row[2]) - int(o_row[2])) <= 1


NO_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, BlockTorch())
{body}
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
"""


def run_without_torch(body: str) -> subprocess.CompletedProcess:
    script = NO_TORCH.format(body=textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )


def test_onnx_scoring_path_without_torch(export_dir, image_folder, tmp_path):
    out = tmp_path / "library.csv"
    result = run_without_torch(
        f"""
        from igfiqa.inference.model import load_model
        from igfiqa.inference.scorer import ResultWriter, collect_inputs, score_inputs
        model = load_model({str(export_dir)!r}, backend="onnx")
        with ResultWriter({str(out)!r}, calibrated=True) as writer:
            summary = score_inputs(model, collect_inputs([{str(image_folder)!r}]), writer, batch_size=4)
        assert summary.scored == 6 and summary.failed == 0
        """
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 7


def test_onnx_cli_without_torch(export_dir, image_folder, tmp_path):
    out = tmp_path / "cli.csv"
    result = run_without_torch(
        f"""
        sys.argv = ["igfiqa", "score", {str(export_dir)!r}, {str(image_folder)!r}, "--backend", "onnx",
                    "-o", {str(out)!r}]
        from igfiqa.cli import main
        try:
            main()
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        """
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 7


def test_export_refuses_to_overwrite_and_bad_reference(export_dir, checkpoint_path, tmp_path):
    result = runner.invoke(app, ["export", str(checkpoint_path), "--out", str(export_dir)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = runner.invoke(
        app,
        [
            "export",
            str(checkpoint_path),
            "--out",
            str(tmp_path / "e"),
            "--reference",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2 and "reference" in result.output


def test_export_with_folder_reference_and_no_calibration(checkpoint_path, image_folder, tmp_path):
    out = tmp_path / "folder_ref"
    result = runner.invoke(
        app, ["export", str(checkpoint_path), "--out", str(out), "--reference", str(image_folder)]
    )
    assert result.exit_code == 0, result.output
    model = igfiqa.load_model(out)
    scores = model.score(sorted(image_folder.iterdir()))
    levels = model.calibrate(scores)
    # Scored against itself, the reference's own ranks are its percentiles: min -> 0, max -> 100.
    assert levels[np.argmin(scores)] == 0 and levels[np.argmax(scores)] == 100
    bare = tmp_path / "bare"
    assert (
        runner.invoke(
            app, ["export", str(checkpoint_path), "--out", str(bare), "--reference", "none"]
        ).exit_code
        == 0
    )
    with pytest.raises(CheckpointError, match="no score calibration"):
        igfiqa.load_model(bare).calibrate(scores)


@pytest.mark.parametrize(
    ("version", "refused"),
    [("2.5.1+cu124", True), ("2.6.0", True), ("2.7.0", False), ("2.13.0+cpu", False),
     ("3.0.0a0", False), ("weird", False)],
)  # fmt: skip
def test_onnx_export_names_the_torch_it_needs(version, refused):
    from igfiqa.errors import ConfigError
    from igfiqa.inference.export import check_onnx_exporter

    if not refused:
        check_onnx_exporter(version)
        return
    with pytest.raises(ConfigError, match=r"torch >= 2\.7.*" + version.replace("+", r"\+")):
        check_onnx_exporter(version)


def test_calibration_properties():
    rng = np.random.default_rng(0)
    reference = rng.normal(2.0, 0.5, 1000)
    calibration = ScoreCalibration.fit(reference)
    probe = np.sort(rng.normal(2.0, 1.5, 5000))
    levels = calibration(probe)
    assert levels.dtype == np.int64
    assert levels.min() >= 0 and levels.max() <= 100
    assert np.all(np.diff(levels) >= 0), "calibration must be monotone"
    assert calibration(np.array([-1e9, 1e9])).tolist() == [0, 100]
    # Percentile meaning: about 25 % of the reference lies below a score calibrated to 25.
    quartile = np.quantile(reference, 0.25)
    assert calibration(np.array([quartile]))[0] == 25
    assert np.mean(calibration(reference) <= 50) == pytest.approx(0.5, abs=0.02)
    assert ScoreCalibration.from_dict(calibration.to_dict()) == calibration


def test_calibration_uniform_reference_is_linear():
    calibration = ScoreCalibration.fit(np.linspace(0.0, 1.0, 1001))
    assert calibration(np.array([0.0, 0.004, 0.006, 0.25, 0.5, 0.999, 1.0])).tolist() == [
        0,
        0,
        1,
        25,
        50,
        100,
        100,
    ]


def test_calibration_ties_and_degenerate_references():
    tied = ScoreCalibration.fit(np.array([0.0] * 50 + [1.0] * 50))
    # Linear quantiles of 50 zeros and 50 ones (positions p * 99): 0 up to the 49 % level, 0.5 at
    # 50 %, 1 from 51 %; runs of equal quantiles keep their highest level -> (0, 49), (0.5, 50), (1, 100).
    assert tied(np.array([-0.1, 0.0, 0.25, 0.5, 1.0])).tolist() == [0, 49, 50, 50, 100]
    with pytest.raises(Exception, match="distinct"):
        ScoreCalibration.fit(np.ones(10))
    with pytest.raises(CheckpointError):
        ScoreCalibration.from_dict({"method": "sigmoid"})
    with pytest.raises(CheckpointError):
        ScoreCalibration((1.0, 0.5), (0.0, 100.0))


@settings(max_examples=60, deadline=None)
@given(
    reference=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=300).filter(
        lambda values: len(set(values)) > 1
    ),
    probes=st.lists(st.floats(-2e3, 2e3), min_size=1, max_size=100),
)
def test_calibration_monotone_and_bounded(reference, probes):
    calibration = ScoreCalibration.fit(np.array(reference))
    values = np.sort(np.array(probes))
    levels = calibration(values)
    assert levels.min() >= 0 and levels.max() <= 100
    assert np.all(np.diff(levels) >= 0)
    assert calibration(np.array([min(reference) - 1, max(reference)])).tolist() == [0, 100]


def test_a_broken_calibration_names_the_export(export_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    card = json.loads((broken / "model_card.json").read_text())
    card["calibration"]["raw"] = list(reversed(card["calibration"]["raw"]))
    (broken / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=rf"{broken}.*strictly increasing.*--reference"):
        igfiqa.load_model(broken)


def test_an_onnx_export_honours_a_pin(export_dir):
    import hashlib

    from igfiqa.errors import CheckpointError

    digest = hashlib.sha256((export_dir / "model.onnx").read_bytes()).hexdigest()
    model = igfiqa.load_model(export_dir, backend="onnx", sha256=digest)
    assert model.backend == "onnx"
    with pytest.raises(CheckpointError, match="does not match"):
        igfiqa.load_model(export_dir, backend="onnx", sha256="0" * 64)
    with pytest.raises(CheckpointError, match="no model options"):
        igfiqa.load_model(export_dir, backend="onnx", options="T=3")


# ------------------------------------------------------------------ files of an export (issue 25)
EXPORT_FILES = {"model.safetensors", "model_card.json"}


def _listing(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_onnx_export_is_self_contained_listed_and_survives_a_copy(
    export_dir, image_folder, tmp_path
):
    import shutil

    assert _listing(export_dir) == EXPORT_FILES | {"model.onnx"}  # no hidden weights file
    card = json.loads((export_dir / "model_card.json").read_text())
    assert card["files"]["onnx"] == "model.onnx" and card["files"]["onnx_data"] is None
    assert card["files"]["sha256"] == {
        name: _sha256(export_dir / name) for name in ("model.onnx", "model.safetensors")
    }
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(export_dir, copy)
    images = sorted(image_folder.iterdir())
    expected = igfiqa.load_model(export_dir, backend="onnx").score(images)
    np.testing.assert_array_equal(igfiqa.load_model(copy, backend="onnx").score(images), expected)
    np.testing.assert_allclose(igfiqa.load_model(copy).score(images), expected, atol=1e-4)


def test_overwrite_leaves_exactly_the_files_of_the_new_export(
    export_dir, checkpoint_path, tmp_path
):
    # export_dir: the network was converted to ONNX once already (_onnx_export_once_per_network)
    out = tmp_path / "exp"
    args = ["export", str(checkpoint_path), "--out", str(out), "--onnx", "--reference", "none"]
    assert runner.invoke(app, args).exit_code == 0
    (out / ".model.onnx.k3j2l1x0.tmp.data").write_bytes(b"left by igfiqa <= 0.1")
    (out / ".igfiqa-export.abc.tmp").mkdir()  # the staging folder of a killed export
    (out / "notes.txt").write_text("the user's own file")
    for _ in range(2):
        result = runner.invoke(app, [*args, "--overwrite"])
        assert result.exit_code == 0, result.output
        assert _listing(out) == EXPORT_FILES | {"model.onnx", "notes.txt"}


def test_external_onnx_weights_are_replaced_as_a_pair_and_listed(
    export_dir, checkpoint_path, image_folder, tmp_path
):
    import shutil

    from igfiqa.inference.export import export_model

    out = tmp_path / "big"
    for _ in range(2):  # as a network over 1.5 GiB would be written
        card = export_model(
            checkpoint_path, out, onnx=True, reference=None, overwrite=True,
            onnx_external_data_over=0,
        )  # fmt: skip
        data = card["files"]["onnx_data"]
        assert data.startswith("model.onnx.") and data.endswith(".data")
        assert _listing(out) == EXPORT_FILES | {"model.onnx", data}
        assert card["files"]["sha256"][data] == _sha256(out / data)
    assert data[len("model.onnx.") : -len(".data")] == _sha256(out / data)[:16]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    images = sorted(image_folder.iterdir())
    np.testing.assert_allclose(
        igfiqa.load_model(copy, backend="onnx").score(images),
        igfiqa.load_model(checkpoint_path).score(images),
        atol=1e-4,
    )
    (copy / data).unlink()  # a partial copy is named, not a traceback
    with pytest.raises(CheckpointError, match=rf"{data}.*missing.*copy the whole export"):
        igfiqa.load_model(copy, backend="onnx")
    export_model(checkpoint_path, out, reference=None, overwrite=True)
    assert _listing(out) == EXPORT_FILES
    shutil.copy(copy / "model.onnx", out)  # a graph its card does not list is not used
    with pytest.raises(CheckpointError, match=r"model.onnx is not part of the export"):
        igfiqa.load_model(out, backend="onnx")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_a_failed_or_interrupted_overwrite_never_loads_wrongly(
    checkpoint_path, image_folder, tmp_path, monkeypatch
):
    import os

    import safetensors.torch
    import torch
    from inference_helpers import tiny_model
    from safetensors import SafetensorError

    out = tmp_path / "exp"
    args = ["export", str(checkpoint_path), "--out", str(out), "--reference", "none"]
    assert runner.invoke(app, args).exit_code == 0
    before = _snapshot(out)
    images = sorted(image_folder.iterdir())
    scores = igfiqa.load_model(out).score(images)
    other = tmp_path / "other.pth"
    torch.save(tiny_model(seed=5).state_dict(), other)

    def full_disk(*_args, **_kwargs):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    with monkeypatch.context() as patch:
        patch.setattr(safetensors.torch, "save_file", full_disk)
        result = runner.invoke(app, [*args[:1], str(other), *args[2:], "--overwrite"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert str(out / "model.safetensors") in result.output and "disk is full" in result.output
    assert _snapshot(out) == before  # the old export as it was: no temporary file, no lock
    np.testing.assert_array_equal(igfiqa.load_model(out).score(images), scores)

    # Killed between renaming the new weights into place and the card: the folder mixes two
    # exports, and the card's hashes make it refuse instead of scoring with the wrong card.
    real_replace = os.replace

    def killed_before_the_card(source, target, *rest, **kwargs):
        if Path(target).name == "model_card.json" and ".igfiqa-export." in str(source):
            raise OSError(5, "Input/output error")
        return real_replace(source, target, *rest, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", killed_before_the_card)
        result = runner.invoke(app, [*args[:1], str(other), *args[2:], "--overwrite"])
    assert result.exit_code == 2 and "cannot replace the export" in result.output
    assert (out / "model_card.json").read_bytes() == before["model_card.json"]
    with pytest.raises(CheckpointError, match=r"model.safetensors is not the file its model card"):
        igfiqa.load_model(out)
    result = runner.invoke(app, [*args[:1], str(other), *args[2:], "--overwrite"])
    assert result.exit_code == 0 and _listing(out) == EXPORT_FILES
    assert not np.allclose(igfiqa.load_model(out).score(images), scores)


def test_output_errors_of_export_are_one_line(checkpoint_path, tmp_path):
    import socket

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    base = ["export", str(checkpoint_path), "--reference", "none", "--out"]
    result = runner.invoke(app, [*base, str(blocker / "exp")])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert str(blocker / "exp") in result.output and "is a file, not a folder" in result.output
    busy = tmp_path / "busy"
    busy.mkdir()
    lock = {"pid": 1, "host": socket.gethostname()}  # a live process: init
    (busy / ".igfiqa.lock").write_text(json.dumps(lock))
    result = runner.invoke(app, [*base, str(busy)])
    assert result.exit_code == 2 and "in use by another igfiqa process" in result.output
    assert _listing(busy) == {".igfiqa.lock"}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_export_folder_is_one_line_and_the_old_export_stays(checkpoint_path, tmp_path):
    out = tmp_path / "exp"
    args = ["export", str(checkpoint_path), "--out", str(out), "--reference", "none"]
    assert runner.invoke(app, args).exit_code == 0
    before = _snapshot(out)
    out.chmod(0o555)
    try:
        result = runner.invoke(app, [*args, "--overwrite"])
    finally:
        out.chmod(0o755)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert str(out) in result.output and "permission" in result.output
    assert _snapshot(out) == before


def test_a_deeply_nested_or_huge_model_card_is_refused_in_one_line(
    export_dir, image_folder, tmp_path
):
    import shutil

    from safetensors.torch import load_file, save_file

    from igfiqa.cli.calibrate import read_calibration_file
    from igfiqa.errors import ConfigError

    deep = '{"a":' * 200_000 + "1" + "}" * 200_000
    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    (copy / "model_card.json").write_text(deep)
    for backend in ("torch", "onnx"):
        with pytest.raises(CheckpointError, match=rf"{copy / 'model_card.json'}.*nested"):
            igfiqa.load_model(copy, backend=backend)
    result = runner.invoke(app, ["score", str(copy), str(image_folder)])
    assert result.exit_code == 2 and "nested more than" in result.output
    assert result.output.count("\n") == 1
    alone = tmp_path / "alone.safetensors"  # the same in the card embedded in the weights
    save_file(load_file(export_dir / "model.safetensors"), alone, {"igfiqa_model_card": deep})
    with pytest.raises(CheckpointError, match=r"alone.safetensors \(embedded model card\).*nested"):
        igfiqa.load_model(alone)
    (copy / "model_card.json").write_text(" " * (17 * 1024 * 1024))
    with pytest.raises(CheckpointError, match=r"model_card.json.*limit"):
        igfiqa.load_model(copy)
    (tmp_path / "deep.json").write_text(deep)
    with pytest.raises(ConfigError, match=r"deep.json: nested more than 64 levels"):
        read_calibration_file(tmp_path / "deep.json", "--fnmr-calibration")


def test_calibrate_output_errors_are_one_line(tmp_path, monkeypatch):
    import errno

    import igfiqa.evaluation.expected_fnmr_report as report
    from igfiqa.cli import calibrate as command
    from igfiqa.errors import OutputError

    def read_only(run, out, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(out / "expected_fnmr.png"))

    monkeypatch.setattr(command, "calibrate_on", lambda *args, **kwargs: None)
    monkeypatch.setattr(report, "write_calibration_report", read_only)
    out = tmp_path / "cal"
    result = runner.invoke(
        app, ["calibrate", "m.pt", "-b", "synthetic:identities=4", "-f", "fr.pt", "-o", str(out)]
    )
    assert isinstance(result.exception, OutputError)
    message = str(result.exception)
    assert "\n" not in message and str(out / "expected_fnmr.png") in message
    assert "read-only" in message
    assert not (out / ".igfiqa.lock").exists()  # the lock is released
