"""`igfiqa export`: the export reloads with the same scores, the card says what it must, ONNX agrees
with PyTorch, and the ONNX scoring path runs without torch."""

from __future__ import annotations

import json
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
