"""`igfiqa score` on videos: a row per sampled frame with its index and time, --every, the best
frames written, damaged videos, videos mixed with images, and --resume in the middle of a video."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from inference_helpers import SIZE, random_images
from PIL import Image
from typer.testing import CliRunner

import igfiqa
from igfiqa.cli import app
from igfiqa.data.video import VideoReader, is_video
from igfiqa.inference.scorer import collect_inputs, score_inputs, score_settings
from igfiqa.inference.video import FrameResultWriter, best_frame_name

runner = CliRunner()
FPS = 10.0
FRAMES = 20


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def write_video(path: Path, frames: np.ndarray, fourcc: str = "mp4v", fps: float = FPS) -> Path:
    """RGB uint8 frames (N, H, W, 3) as a video file."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder: ``aligned.mp4`` (20 frames, 32x32: crops of the tiny model's size, 10 frames/s),
    ``sub/motion.avi`` (the same frames as MJPEG) and a 32x32 image."""
    root = tmp_path_factory.mktemp("clips")
    frames = random_images(FRAMES, seed=3)
    write_video(root / "aligned.mp4", frames)
    (root / "sub").mkdir()
    write_video(root / "sub" / "motion.avi", frames, "MJPG")
    Image.fromarray(random_images(1, seed=9)[0]).save(root / "photo.png")
    return root


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory, astronaut) -> Path:
    """12 frames of 160x160 with the astronaut's face, of changing sharpness and brightness;
    frames 4 and 9 are black (no face)."""
    image, _ = astronaut
    base = cv2.resize(image, (160, 160), interpolation=cv2.INTER_AREA)
    frames = []
    for index in range(12):
        frame = base.copy()
        if index % 3:
            frame = cv2.GaussianBlur(frame, (0, 0), 0.4 * (index % 3))
        frame = np.clip(frame.astype(np.int16) + 6 * (index % 4) - 9, 0, 255).astype(np.uint8)
        if index in (4, 9):
            frame = np.zeros_like(frame)
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("face") / "talk.mp4", np.stack(frames))


def test_inputs_find_videos_in_folders(clips) -> None:
    items = collect_inputs([clips])
    assert [item.relative for item in items] == ["aligned.mp4", "photo.png", "sub/motion.avi"]
    assert is_video("x/A.MKV") and not is_video("a.png")
    with VideoReader(clips / "aligned.mp4") as reader:
        assert (reader.width, reader.height, reader.frame_count) == (SIZE, SIZE, FRAMES)
        assert reader.fps == pytest.approx(FPS)


def test_a_row_per_frame_with_index_and_time(clips, backbone_path, tmp_path) -> None:
    out = tmp_path / "scores.csv"
    result = invoke("score", backbone_path, clips / "aligned.mp4", "-o", out, "--batch-size", 8)
    assert result.exit_code == 0, result.output
    rows = table(out.read_text())
    assert list(rows[0]) == ["path", "frame", "time", "quality", "error"]
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    assert [float(r["time"]) for r in rows] == pytest.approx([i / FPS for i in range(FRAMES)])
    assert all(r["quality"] and not r["error"] for r in rows)
    assert "0 images and 1 videos (20 frames, 0 frame errors), 0 failed" in result.output
    # the same frames decoded by hand score the same
    model = igfiqa.load_model(backbone_path)
    capture = cv2.VideoCapture(str(clips / "aligned.mp4"))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    expected = model.score(np.stack(decoded))
    got = np.array([float(r["quality"]) for r in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_every_nth_frame_and_jsonl(clips, backbone_path, tmp_path) -> None:
    out = tmp_path / "scores.jsonl"
    video = clips / "sub" / "motion.avi"
    result = invoke("score", backbone_path, video, "-o", out, "--format", "jsonl", "--every", 3)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(0, FRAMES, 3))
    assert [r["time"] for r in records] == pytest.approx([i / FPS for i in range(0, FRAMES, 3)])
    assert list(records[0])[:3] == ["path", "frame", "time"]
    assert (
        json.loads(out.with_name("scores.jsonl.settings.json").read_text())["settings"]["every"]
        == 3
    )


def test_detect_rows_and_best_frames(face_clip, backbone_path, tmp_path) -> None:
    out, best = tmp_path / "scores.csv", tmp_path / "best"
    result = invoke(
        "score", backbone_path, face_clip, "--detect", "-o", out,
        "--best-frames", 3, "--frames-out", best, "--batch-size", 4,
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # the two black frames have no face
    rows = table(out.read_text())
    assert [int(r["frame"]) for r in rows] == list(range(12))
    for row in rows:
        if int(row["frame"]) in (4, 9):
            assert "no face found" in row["error"] and "frame" in row["error"]
        else:
            assert row["face"] == "0" and float(row["detection"]) > 0.9 and not row["error"]
    scored = sorted(
        ((float(r["quality"]), -int(r["frame"])) for r in rows if r["quality"]), reverse=True
    )
    want = {f"talk_f{-frame}.png" for _, frame in scored[:3]}
    assert {p.name for p in best.iterdir()} == want
    for path in best.iterdir():
        assert cv2.imread(str(path)).shape == (SIZE, SIZE, 3)  # the aligned crop that was scored
    # a second run into the same folder adds nothing and replaces nothing
    (best / sorted(want)[0]).write_bytes(b"a user's file")
    again = invoke(
        "score", backbone_path, face_clip, "--detect", "-o", tmp_path / "again.csv",
        "--best-frames", 3, "--frames-out", best, "--batch-size", 4,
    )  # fmt: skip
    assert again.exit_code == 1, again.output
    assert (best / sorted(want)[0]).read_bytes() == b"a user's file"
    names = {p.name for p in best.iterdir()}
    assert names == want | {sorted(want)[0].replace(".png", "~2.png")}
    assert best_frame_name("../a/b/clip.mov", 7, 1, True) == "a/b/clip_f7_1.png"


def test_damaged_videos_get_one_row_and_the_run_goes_on(clips, backbone_path, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "junk.mp4").write_bytes(os.urandom(4000))
    data = (clips / "aligned.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # no index at the end: unreadable
    (folder / "empty.webm").write_bytes(b"")
    os.mkfifo(folder / "pipe.mkv")
    (folder / "z_good.mp4").write_bytes(data)
    out = tmp_path / "scores.csv"
    result = invoke("score", backbone_path, folder, "-o", out)
    assert result.exit_code == 1, result.output
    rows = table(out.read_text())
    by_path: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_path.setdefault(Path(row["path"]).name, []).append(row)
    for name in ("junk.mp4", "cut.mp4", "empty.webm", "pipe.mkv"):
        assert len(by_path[name]) == 1 and by_path[name][0]["error"], name
        assert by_path[name][0]["frame"] == ""
    assert "not a regular file" in by_path["pipe.mkv"][0]["error"]
    assert len(by_path["z_good.mp4"]) == FRAMES and not any(
        r["error"] for r in by_path["z_good.mp4"]
    )


def test_a_stream_cut_midway_ends_with_a_row_saying_so(clips, backbone_path, tmp_path) -> None:
    data = (clips / "sub" / "motion.avi").read_bytes()
    cut = tmp_path / "cut.avi"  # AVI: the header announces 20 frames, half the data is there
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "scores.csv"
    result = invoke("score", backbone_path, cut, "-o", out)
    assert result.exit_code == 1, result.output
    rows = table(out.read_text())
    assert 0 < len(rows) < FRAMES
    assert [int(r["frame"]) for r in rows] == list(range(len(rows)))
    assert all(not r["error"] for r in rows[:-1])
    assert "announces 20 frames" in rows[-1]["error"]


def test_images_and_videos_together(clips, backbone_path, tmp_path) -> None:
    out = tmp_path / "scores.csv"
    result = invoke("score", backbone_path, clips, "-o", out, "--every", 5)
    assert result.exit_code == 0, result.output
    rows = table(out.read_text())
    names = [Path(r["path"]).name for r in rows]
    assert names == ["aligned.mp4"] * 4 + ["photo.png"] + ["motion.avi"] * 4
    photo = rows[4]
    assert photo["frame"] == "" and photo["time"] == "" and photo["quality"]
    alone = tmp_path / "photo.csv"
    assert invoke("score", backbone_path, clips / "photo.png", "-o", alone).exit_code == 0
    assert float(table(alone.read_text())[0]["quality"]) == pytest.approx(float(photo["quality"]))


class Interrupted(Exception):
    pass


def test_resume_in_the_middle_of_a_video(clips, backbone_path, tmp_path) -> None:
    complete = tmp_path / "complete.csv"
    assert invoke("score", backbone_path, clips, "-o", complete, "--every", 2).exit_code == 0
    want = complete.read_text().splitlines()

    out = tmp_path / "partial.csv"
    model = igfiqa.load_model(backbone_path)
    settings = {**score_settings(model), "every": 2}
    calls = []

    def stop_in_the_second_video(done: int) -> None:
        calls.append(done)
        if calls.count(2) == 3:  # the photo, then two batches of motion.avi
            raise Interrupted

    with pytest.raises(Interrupted), FrameResultWriter(out, settings=settings) as writer:
        score_inputs(
            model, collect_inputs([clips]), writer, batch_size=2, every=2,
            on_batch=stop_in_the_second_video,
        )  # fmt: skip
    partial = out.read_text().splitlines()
    assert len(partial) == 1 + 10 + 1 + 4  # the first video, the photo and 2 batches of the next
    result = invoke("score", backbone_path, clips, "-o", out, "--every", 2, "--resume")
    assert result.exit_code == 0, result.output
    got = out.read_text().splitlines()
    assert len(got) == len(want) and len(set(got)) == len(got)  # nothing lost, nothing twice
    key = lambda line: next(csv.reader([line]))[:2]  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
    for line_got, line_want in zip(sorted(got), sorted(want), strict=True):
        a, b = next(csv.reader([line_got])), next(csv.reader([line_want]))
        assert a[:3] == b[:3] and a[4:] == b[4:]
        if a[3] != "quality":
            assert float(a[3]) == pytest.approx(float(b[3]), rel=1e-5, abs=1e-6)
    assert "frames already in the output" in result.output
    # nothing left: the next resume writes nothing
    again = invoke("score", backbone_path, clips, "-o", out, "--every", 2, "--resume")
    assert again.exit_code == 0 and out.read_text().splitlines() == got


def test_resume_with_another_every_is_refused(clips, backbone_path, tmp_path) -> None:
    out = tmp_path / "scores.csv"
    video = clips / "aligned.mp4"
    assert invoke("score", backbone_path, video, "-o", out, "--every", 2).exit_code == 0
    result = invoke("score", backbone_path, video, "-o", out, "--every", 3, "--resume")
    assert result.exit_code == 2 and "every" in result.output


def test_video_options_need_a_video(clips, backbone_path, tmp_path) -> None:
    photo = clips / "photo.png"
    result = invoke("score", backbone_path, photo, "--every", 2)
    assert result.exit_code == 2 and "no input is a video" in result.output
    result = invoke("score", backbone_path, clips / "aligned.mp4", "--best-frames", 2)
    assert result.exit_code == 2 and "--frames-out" in result.output
    result = invoke("score", backbone_path, clips / "aligned.mp4", "--every", 0)
    assert result.exit_code == 2


def test_best_frames_of_a_resumed_video_are_those_of_the_whole_video(
    face_clip, backbone_path, detector, tmp_path
) -> None:
    model = igfiqa.load_model(backbone_path)
    out, best = tmp_path / "scores.csv", tmp_path / "best"
    options = {"detector": detector, "batch_size": 3, "frames_out": best, "best_frames": 3}

    def stop_after_two_batches(done: int, calls: list[int] = []) -> None:  # noqa: B006
        calls.append(done)
        if len(calls) == 2:
            raise Interrupted

    with pytest.raises(Interrupted), FrameResultWriter(out, detect=True) as writer:
        score_inputs(model, [*collect_inputs([face_clip])], writer, **options,
                     on_batch=stop_after_two_batches)  # fmt: skip
    written = len(table(out.read_text()))  # two batches of 3 faces (and the black frame 4)
    assert written == 7 and not any(best.iterdir())
    with FrameResultWriter(out, detect=True, resume=True) as writer:
        summary = score_inputs(model, collect_inputs([face_clip]), writer, **options)
    assert summary.frames_skipped == written
    assert summary.frames + summary.frame_errors == 12 - written
    rows = table(out.read_text())
    assert [int(r["frame"]) for r in rows] == list(range(12))
    scored = sorted(
        ((float(r["quality"]), -int(r["frame"])) for r in rows if r["quality"]), reverse=True
    )
    assert any(-frame < written for _, frame in scored[:3])  # one of them was scored before
    assert {p.name for p in best.iterdir()} == {f"talk_f{-f}.png" for _, f in scored[:3]}
