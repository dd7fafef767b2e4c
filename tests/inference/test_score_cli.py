"""`igfiqa score`: rows, errors and exit codes on a folder of good, corrupt and odd images; list files;
landmark alignment; output formats; usage errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import SIZE, random_images, reference_forward
from PIL import Image
from typer.testing import CliRunner

from igfiqa.cli import app

runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, ["score", *map(str, args)])


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A folder of good and bad inputs; returns it and the RGB pixels each good file must score as."""
    root = tmp_path_factory.mktemp("odd")
    images = random_images(4, seed=7)
    expected: dict[str, np.ndarray] = {}
    expected["a_good.png"] = images[0]
    write_png(root / "a_good.png", images[0])
    expected["nested/b_good.png"] = images[1]
    write_png(root / "nested" / "b_good.png", images[1])
    grey = images[2][:, :, 0]
    write_png(root / "c_grey.png", grey)
    expected["c_grey.png"] = np.repeat(grey[:, :, None], 3, axis=2)
    opaque = np.concatenate([images[3], np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=2)
    write_png(root / "d_alpha_opaque.png", opaque)
    expected["d_alpha_opaque.png"] = images[3]
    clear = np.concatenate([images[3], np.zeros((SIZE, SIZE, 1), np.uint8)], axis=2)
    write_png(root / "e_alpha_clear.png", clear)  # composited on black
    expected["e_alpha_clear.png"] = np.zeros((SIZE, SIZE, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, format="JPEG", quality=95)
    (root / "f_good.jpg").write_bytes(buffer.getvalue())
    (root / "g_truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "h_empty.jpg").write_bytes(b"")
    (root / "i_text.jpg").write_text("not an image at all\n")
    write_png(root / "j_wrong_size.png", random_images(1, size=SIZE + 8)[0])
    (root / "notes.txt.bak").write_text("ignored: not an image extension")
    return root, expected


ODD_ORDER = [
    "a_good.png",
    "c_grey.png",
    "d_alpha_opaque.png",
    "e_alpha_clear.png",
    "f_good.jpg",
    "g_truncated.jpg",
    "h_empty.jpg",
    "i_text.jpg",
    "j_wrong_size.png",
    "nested/b_good.png",
]
FAILING = {"g_truncated.jpg", "h_empty.jpg", "i_text.jpg", "j_wrong_size.png"}


def test_odd_folder_rows_and_exit_code(odd_folder, backbone_path, model, tmp_path):
    root, expected = odd_folder
    out = tmp_path / "scores.csv"
    result = run_cli(backbone_path, root, "-o", out, "--batch-size", "3", "--workers", "2")
    assert result.exit_code == 1, result.output
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "quality", "error"]
    assert [row["path"] for row in rows] == [str(root / name) for name in ODD_ORDER]
    names = list(expected)
    _, want = reference_forward(model, np.stack([expected[name] for name in names]))
    by_name = {Path(row["path"]).relative_to(root).as_posix(): row for row in rows}
    for name, quality in zip(names, want, strict=True):
        assert by_name[name]["error"] == ""
        assert float(by_name[name]["quality"]) == pytest.approx(float(quality), abs=1e-5)
    assert np.isfinite(float(by_name["f_good.jpg"]["quality"]))
    for name in FAILING:
        assert by_name[name]["quality"] == ""
        assert name in by_name[name]["error"]
    assert "truncated" in by_name["g_truncated.jpg"]["error"]
    assert "empty" in by_name["h_empty.jpg"]["error"]
    assert f"{SIZE + 8}x{SIZE + 8}" in by_name["j_wrong_size.png"]["error"]
    assert "--resize" in by_name["j_wrong_size.png"]["error"]


def test_resize_and_all_good_exit_zero(odd_folder, backbone_path, tmp_path):
    root, _ = odd_folder
    out = tmp_path / "resized.jsonl"
    good = [root / "a_good.png", root / "j_wrong_size.png"]
    result = run_cli(
        backbone_path, *good, "--resize", "--format", "jsonl", "-o", out, "--workers", "0"
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in good]
    assert all(r["error"] is None and np.isfinite(r["quality"]) for r in records)


def test_list_file_relative_paths_and_labels(odd_folder, backbone_path, tmp_path):
    root, _ = odd_folder
    listing = root / "nested" / "list.lst"
    listing.write_text("# my list\n../a_good.png 3\nb_good.png\n\n../i_text.jpg 0\nmissing.png\n")
    out = tmp_path / "list.csv"
    result = run_cli(backbone_path, listing, "-o", out)
    assert result.exit_code == 1
    rows = read_rows(out)
    assert [row["path"] for row in rows] == [
        str(root / "a_good.png"),
        str(root / "nested" / "b_good.png"),
        str(root / "i_text.jpg"),
        str(root / "nested" / "missing.png"),
    ]
    assert [bool(row["error"]) for row in rows] == [False, False, True, True]
    assert "not found" in rows[3]["error"]


def test_landmarks_align_loose_crops(backbone_path, model, tmp_path):
    from igfiqa.data.align import ARCFACE_TEMPLATE

    aligned = random_images(2, seed=11)
    offsets = [(5, 9), (17, 3)]
    points = ARCFACE_TEMPLATE * (SIZE / 112.0)
    lines = []
    for index, ((dx, dy), image) in enumerate(zip(offsets, aligned, strict=True)):
        canvas = np.zeros((SIZE + 24, SIZE + 30, 3), np.uint8)
        canvas[dy : dy + SIZE, dx : dx + SIZE] = image
        write_png(tmp_path / "loose" / f"{index}.png", canvas)
        coords = " ".join(f"{v:.6f}" for v in (points + np.array([dx, dy])).ravel())
        lines.append(f"{index}.png {coords} 0.99")
    write_png(tmp_path / "loose" / "nolandmarks.png", aligned[0])
    landmarks = tmp_path / "ijb_name_5pts_score.txt"
    landmarks.write_text("\n".join(lines) + "\n")
    out = tmp_path / "aligned.csv"
    result = run_cli(backbone_path, tmp_path / "loose", "--landmarks", landmarks, "-o", out)
    assert result.exit_code == 1
    rows = read_rows(out)
    _, want = reference_forward(model, aligned)
    assert [float(r["quality"]) for r in rows[:2]] == pytest.approx(want.tolist(), abs=1e-4)
    assert "no landmarks" in rows[2]["error"]


@pytest.mark.parametrize(
    "case",
    [
        "missing_input",
        "missing_model",
        "corrupt_model",
        "exists",
        "no_calibration",
        "bad_landmarks",
        "far_landmarks",
        "empty_folder",
    ],
)
def test_usage_errors_exit_two(case, odd_folder, backbone_path, tmp_path):
    root, _ = odd_folder
    out = tmp_path / "out.csv"
    args = [backbone_path, root, "-o", out]
    if case == "missing_input":
        args[1] = tmp_path / "nope"
    elif case == "missing_model":
        args[0] = tmp_path / "nope.pth"
    elif case == "corrupt_model":
        args[0] = tmp_path / "bad.pth"
        args[0].write_bytes(b"garbage")
    elif case == "exists":
        out.write_text("path,quality,error\n")
    elif case == "no_calibration":
        args.append("--calibrated")
    elif case == "far_landmarks":
        (tmp_path / "lm.txt").write_text("x.png 1e30 2 3 4 5 6 7 8 9 10\n")
        args += ["--landmarks", tmp_path / "lm.txt"]
    elif case == "empty_folder":
        args[1] = tmp_path / "empty"
        args[1].mkdir()
    else:
        (tmp_path / "lm.txt").write_text("x.png 1 2 3\n")
        args += ["--landmarks", tmp_path / "lm.txt"]
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    if case != "exists":
        assert not out.exists()


def test_help_documents_exit_codes():
    result = run_cli("--help")
    assert result.exit_code == 0
    assert "Exit codes" in result.output and "--resume" in result.output


def test_help_says_what_the_0_100_score_is():
    result = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "400"})
    text = " ".join(result.output.replace("│", " ").split())
    assert "percentile rank (0-100)" in text and "reference images" in text
    assert "not an ISO/IEC 29794 quality" in text and "ISO/IEC 29794-1 style" not in text
    assert "--min-confidence" in text and "outside" in text


def test_cuda_device_refused_clearly_without_gpu(backbone_path, odd_folder, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal only applies without one")
    root, _ = odd_folder
    result = run_cli(backbone_path, root, "--device", "cuda", "-o", tmp_path / "x.csv")
    assert result.exit_code == 2 and "CUDA" in result.output


def test_links_pipes_and_gifs_in_a_folder_each_get_a_row(backbone_path, model, tmp_path):
    import os

    root = tmp_path / "mixed"
    image = random_images(1, seed=3)[0]
    write_png(root / "a_good.png", image)
    Image.fromarray(image).save(root / "b_anim.gif")  # scored like any other image
    (root / "c_broken.png").symlink_to(root / "gone.png")
    os.mkfifo(root / "d_pipe.jpg")  # refused without reading: a read would block forever
    out = tmp_path / "mixed.csv"
    result = run_cli(backbone_path, root, "-o", out)
    assert result.exit_code == 1, result.output
    rows = {Path(row["path"]).name: row for row in read_rows(out)}
    assert sorted(rows) == ["a_good.png", "b_anim.gif", "c_broken.png", "d_pipe.jpg"]
    assert rows["a_good.png"]["error"] == "" and rows["b_anim.gif"]["error"] == ""
    assert "broken symbolic link" in rows["c_broken.png"]["error"]
    assert "not a regular file" in rows["d_pipe.jpg"]["error"]


def test_formula_like_file_names_are_escaped_in_csv_and_resume_and_evaluate_read_them_back(
    backbone_path, tmp_path, monkeypatch
):
    from igfiqa.evaluation.quality.csv_scores import read_quality_csv

    root = tmp_path / "names"
    images = random_images(2, seed=4)
    names = ["=HYPERLINK(1).png", "+good.png"]
    write_png(root / names[0], images[0])
    write_png(root / names[1], images[1])
    monkeypatch.chdir(root)  # relative inputs: the rows' paths start with = and +
    out = tmp_path / "q.csv"
    assert run_cli(backbone_path, *names, "-o", out).exit_code == 0
    raw = out.read_text()
    assert "\n'=HYPERLINK(1).png," in raw and "\n'+good.png," in raw
    again = run_cli(backbone_path, *names, "-o", out, "--resume")  # nothing scored twice
    assert again.exit_code == 0 and len(read_rows(out)) == 2
    values = read_quality_csv(out, names)
    assert np.all(np.isfinite(values))
