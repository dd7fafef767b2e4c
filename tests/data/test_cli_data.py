"""``igfiqa data inspect`` and ``igfiqa data convert`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.data.datasets import open_training_dataset

SPEC = "synthetic:identities=4,samples=3,seed=2,image_size=32"
runner = CliRunner()


def test_inspect_synthetic_json_and_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(app, ["data", "inspect", SPEC, "--json", "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["format"] == "synthetic" and summary["images"] == 12 and summary["classes"] == 4
    assert summary["images_per_class"] == {"min": 3, "median": 3.0, "mean": 3.0, "max": 3}
    image = cv2.imread(str(sheet))
    # 4 classes x 3 images, 112-pixel cells with 2-pixel gaps.
    assert image.shape == (4 * 114 + 2, 3 * 114 + 2, 3)


def test_convert_to_rec_folder_bin_and_inspect_each(tmp_path: Path) -> None:
    source = open_training_dataset(SPEC, hflip=False)
    rec, folder, binary = tmp_path / "rec", tmp_path / "folder", tmp_path / "x.bin"
    for args in (
        [SPEC, str(rec), "--format", "rec", "--image-format", "png"],
        [SPEC, str(folder), "--format", "folder"],
        [str(folder), str(binary), "--format", "bin", "--pairs", "10"],
    ):
        result = runner.invoke(app, ["data", "convert", *args])
        assert result.exit_code == 0, result.output
        assert "0 unreadable" in result.output
    for path, fmt, images in ((rec, "recordio", 12), (folder, "folder", 12), (binary, "bin", 20)):
        result = runner.invoke(
            app, ["data", "inspect", str(path), "--json", "--sheet", str(tmp_path / f"{fmt}.png")]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.strip().splitlines()[-1])
        assert summary["format"] == fmt
        assert summary.get("images", summary.get("samples")) == images
        assert (tmp_path / f"{fmt}.png").is_file()
    back = open_training_dataset(rec, hflip=False)
    assert np.array_equal(back.load_image(5), source.load_image(5))
    assert back.labels.tolist() == source.labels.tolist()


def test_convert_skips_undecodable_images_and_reports_them(tmp_path: Path) -> None:
    runner.invoke(app, ["data", "convert", SPEC, str(tmp_path / "f"), "--format", "folder"])
    broken = sorted((tmp_path / "f" / "1").iterdir())[0]
    broken.write_bytes(b"garbage")
    result = runner.invoke(app, ["data", "convert", str(tmp_path / "f"), str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "wrote 11 images" in result.output and "1 unreadable" in result.output
    assert broken.name in result.output
    dataset = open_training_dataset(tmp_path / "r", hflip=False)
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3]


def test_user_errors_exit_cleanly(tmp_path: Path) -> None:
    from igfiqa.errors import ConfigError, DataError

    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "missing")])
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = runner.invoke(app, ["data", "convert", SPEC, str(tmp_path / "full")])
    assert isinstance(result.exception, ConfigError) and "--overwrite" in str(result.exception)
    result = runner.invoke(app, ["data", "convert", SPEC, str(tmp_path / "o"), "--format", "zip"])
    assert result.exit_code == 2 and "zip" in result.output and "--format" in result.output
    assert not (tmp_path / "o").exists()
