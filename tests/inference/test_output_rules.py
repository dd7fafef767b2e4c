"""What `igfiqa score` and `igfiqa align` promise about the user's files (the output half of the
hostile-input corpus, docs/robustness.md): one writer per output, no file igfiqa did not write is
replaced, no write follows a link out of the output folder, a resumed output keeps its settings, an
OSError on output is one line, and a model that gives NaN fails its rows instead of writing them."""

from __future__ import annotations

import csv
import errno
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from igfiqa.cli import main
from igfiqa.errors import OutputError
from igfiqa.files import open_locked_output
from igfiqa.inference.model import load_model
from igfiqa.inference.scorer import (
    ResultRow,
    ResultWriter,
    collect_inputs,
    score_inputs,
    settings_record_for,
)

SIZE = 32  # the tiny model of tests/inference/conftest.py


def run(monkeypatch, capsys, *args: object) -> tuple[int, str]:
    """``igfiqa ARGS`` through the console entry point; returns (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["igfiqa", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, text


def faces(folder: Path, count: int = 3, size: int = SIZE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            folder / f"f{i}.png"
        )
    return folder


def table(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


# ----------------------------------------------------------------------------------------- score
def test_second_writer_of_a_score_output_is_refused(monkeypatch, capsys, tmp_path, backbone_path):
    images = faces(tmp_path / "in")
    out = tmp_path / "scores.csv"
    assert run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--quiet")[0] == 0
    before = out.read_bytes()
    holder = open_locked_output(out, truncate=False)  # another writer holds the output
    try:
        code, text = run(
            monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--overwrite"
        )
        assert code == 2 and "being written by another igfiqa process" in text
        code, text = run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--resume")
        assert code == 2 and str(out) in text
    finally:
        holder.close()
    assert out.read_bytes() == before
    code, _ = run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--resume")
    assert code == 0 and out.read_bytes() == before  # nothing left to do, nothing duplicated


def test_resume_refuses_other_settings_and_keeps_the_rows(
    monkeypatch, capsys, tmp_path, backbone_path, model
):
    images = faces(tmp_path / "in")
    out = tmp_path / "scores.csv"
    assert run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--quiet")[0] == 0
    before = out.read_bytes()
    other = tmp_path / "other" / "181952backbone.pth"
    other.parent.mkdir()
    changed = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(k for k, v in changed.items() if v.is_floating_point())
    changed[first] += 0.5
    torch.save(changed, other)
    cases = [
        (other, ()),  # another model
        (backbone_path, ("--resize",)),  # another preprocessing
        (backbone_path, ("--dtype", "bfloat16")),
    ]
    for model_path, extra in cases:
        code, text = run(
            monkeypatch, capsys, "score", model_path, images, "-o", out, "--resume", *extra
        )
        assert code == 2, text
        assert "cannot resume" in text and "other settings" in text
        assert out.read_bytes() == before
    # the same model copied elsewhere is the same model
    copy = tmp_path / "copy" / "181952backbone.pth"
    copy.parent.mkdir()
    copy.write_bytes(backbone_path.read_bytes())
    more = faces(tmp_path / "more", count=2)
    code, text = run(monkeypatch, capsys, "score", copy, images, more, "-o", out, "--resume")
    assert code == 0, text
    assert len(table(out)) == 1 + 3 + 2


def test_resume_of_an_output_without_a_settings_record_is_refused(
    monkeypatch, capsys, tmp_path, backbone_path
):
    images = faces(tmp_path / "in")
    out = tmp_path / "scores.csv"
    out.write_text("path,quality,error\n")  # written by hand or by another program
    code, text = run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--resume")
    assert code == 2 and "does not record the settings" in text
    assert out.read_text() == "path,quality,error\n"


def test_symbolic_link_as_score_output_is_refused(monkeypatch, capsys, tmp_path, backbone_path):
    images = faces(tmp_path / "in")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "scores.csv"
    out.symlink_to(victim)
    code, text = run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--overwrite")
    assert code == 2 and "symbolic link" in text
    assert victim.read_text() == "precious"


def test_unwritable_output_is_one_line(monkeypatch, capsys, tmp_path, backbone_path):
    images = faces(tmp_path / "in")
    for target in ("/sys/igfiqa-test.csv", "/proc/igfiqa/x.csv"):
        code, text = run(monkeypatch, capsys, "score", backbone_path, images, "-o", target)
        assert code == 2 and target.split("/")[1] in text
        assert len(text.strip().splitlines()) == 1, text
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, text = run(
        monkeypatch, capsys, "score", backbone_path, images, "-o", blocker / "scores.csv"
    )
    assert code == 2 and "cannot" in text and str(blocker) in text


def test_full_disk_while_writing_rows_is_an_output_error(tmp_path):
    out = tmp_path / "scores.csv"
    writer = ResultWriter(out)
    writer.write([ResultRow("a.png", 1.0)])

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    handle = writer._handle
    writer._handle = Full()
    with pytest.raises(OutputError, match="disk is full") as raised:
        writer.write([ResultRow("b.png", 2.0)])
    assert str(out) in str(raised.value)
    writer._handle = handle
    writer.close()
    assert table(out) == [["path", "quality", "error"], ["a.png", "1", ""]]


def test_huge_field_in_a_resumed_output_is_one_line(monkeypatch, capsys, tmp_path, backbone_path):
    images = faces(tmp_path / "in")
    out = tmp_path / "scores.csv"
    assert run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--quiet")[0] == 0
    with out.open("a") as handle:
        handle.write('"' + "x" * 200_000 + '",1,\n')
    before = out.read_bytes()
    code, text = run(monkeypatch, capsys, "score", backbone_path, images, "-o", out, "--resume")
    assert code == 2 and "not a table" in text
    assert out.read_bytes() == before


def test_non_finite_quality_is_an_error_row_not_a_score(tmp_path, backbone_path):
    images = faces(tmp_path / "in")
    model = load_model(backbone_path)
    forward = model.forward_batch

    def half_broken(batch):
        embeddings, quality = forward(batch)
        quality = np.array(quality, dtype=np.float32)
        quality[0] = np.nan
        return embeddings, quality

    model.forward_batch = half_broken
    out = tmp_path / "scores.csv"
    with ResultWriter(out) as writer:
        summary = score_inputs(model, collect_inputs([images]), writer, batch_size=8)
    assert summary.failed == 1 and summary.scored == 2
    rows = table(out)[1:]
    assert rows[0][1] == "" and "non-finite quality" in rows[0][2]
    assert all(row[1] and not row[2] for row in rows[1:])


def test_environment_settings_are_checked_before_any_work(
    monkeypatch, capsys, tmp_path, backbone_path
):
    images = faces(tmp_path / "in")
    out = tmp_path / "scores.csv"
    for value in ("abc", "inf", "-1", "nan", "1e30"):
        monkeypatch.setenv("IGFIQA_MAX_FILE_MB", value)
        code, text = run(monkeypatch, capsys, "score", backbone_path, images, "-o", out)
        assert code == 2 and "IGFIQA_MAX_FILE_MB" in text
        assert not out.exists()


# ----------------------------------------------------------------------------------------- align
@pytest.fixture()
def photo_folder(tmp_path, astronaut) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(astronaut[0]).save(folder / "tom.png")
    return folder


def test_align_never_writes_over_its_inputs(monkeypatch, capsys, photo_folder):
    before = (photo_folder / "tom.png").read_bytes()
    code, text = run(monkeypatch, capsys, "align", photo_folder, "--out", photo_folder)
    assert code == 2 and "tom.png" in text
    monkeypatch.chdir(photo_folder)
    code, text = run(monkeypatch, capsys, "align", "tom.png", "--out", ".")
    assert code == 2
    for flags in ((), ("--overwrite",), ("--resume",)):
        code, _ = run(monkeypatch, capsys, "align", photo_folder, "--out", photo_folder, *flags)
        assert code == 2
    assert (photo_folder / "tom.png").read_bytes() == before
    assert sorted(p.name for p in photo_folder.iterdir()) == ["tom.png"]


def test_align_keeps_a_users_landmarks_file_and_link_targets(
    monkeypatch, capsys, tmp_path, photo_folder
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "landmarks.txt").write_text("mine\n")
    code, text = run(monkeypatch, capsys, "align", photo_folder, "--out", out)
    assert code == 2 and "landmarks.txt" in text
    assert (out / "landmarks.txt").read_text() == "mine\n"
    # an earlier alignment whose landmarks.txt has become a link: never written through
    out2 = tmp_path / "out2"
    assert run(monkeypatch, capsys, "align", photo_folder, "--out", out2, "--no-progress")[0] == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out2 / "landmarks.txt").unlink()
    (out2 / "landmarks.txt").symlink_to(victim)
    for flags in (("--overwrite",), ("--resume",)):
        code, text = run(monkeypatch, capsys, "align", photo_folder, "--out", out2, *flags)
        assert code == 2 and "landmarks.txt" in text
    assert victim.read_text() == "precious"


def test_align_resume_never_leaves_the_folder_or_replaces_a_file(
    monkeypatch, capsys, tmp_path, photo_folder, astronaut
):
    out = tmp_path / "out"
    assert run(monkeypatch, capsys, "align", photo_folder, "--out", out, "--no-progress")[0] == 0
    # the user adds inputs, a file of their own with a crop's name, and a linked subfolder
    Image.fromarray(astronaut[0]).save(photo_folder / "own.png")
    (out / "own.png").write_bytes(b"the user's own file")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (photo_folder / "sub").mkdir()
    Image.fromarray(astronaut[0]).save(photo_folder / "sub" / "x.png")
    (out / "sub").symlink_to(elsewhere)
    # and an input subfolder named like the faces table
    (photo_folder / "faces.csv").mkdir()
    Image.fromarray(astronaut[0]).save(photo_folder / "faces.csv" / "y.png")
    code, text = run(monkeypatch, capsys, "align", photo_folder, "--out", out, "--resume")
    assert code == 1, text  # sub/x.png and faces.csv/y.png fail, own.png is aligned
    assert list(elsewhere.iterdir()) == []
    assert (out / "own.png").read_bytes() == b"the user's own file"
    rows = {row[0]: row for row in table(out / "faces.csv")[1:]}
    assert rows[str(photo_folder / "own.png")][2] == "own~2.png"
    assert (out / "own~2.png").is_file()
    assert "symbolic link" in rows[str(photo_folder / "sub" / "x.png")][-1]
    assert "is a file" in rows[str(photo_folder / "faces.csv" / "y.png")][-1]
    assert (out / "faces.csv").is_file()


def test_align_resume_refuses_other_settings_and_a_second_writer(
    monkeypatch, capsys, tmp_path, photo_folder
):
    out = tmp_path / "out"
    assert run(monkeypatch, capsys, "align", photo_folder, "--out", out, "--no-progress")[0] == 0
    before = (out / "faces.csv").read_bytes()
    for flags in (("--size", "64"), ("--all-faces",), ("--min-face", "40")):
        code, text = run(
            monkeypatch, capsys, "align", photo_folder, "--out", out, "--resume", *flags
        )
        assert code == 2 and "other settings" in text, text
    (out / ".igfiqa.lock").write_text(f'{{"pid": {os.getppid()}, "host": "{os.uname()[1]}"}}')
    code, text = run(monkeypatch, capsys, "align", photo_folder, "--out", out, "--resume")
    assert code == 2 and "in use by another igfiqa process" in text
    assert (out / "faces.csv").read_bytes() == before


def test_align_overwrite_replaces_only_its_own_crops(monkeypatch, capsys, tmp_path, photo_folder):
    out = tmp_path / "out"
    assert run(monkeypatch, capsys, "align", photo_folder, "--out", out, "--no-progress")[0] == 0
    (out / "notes.md").write_text("mine")
    code, _ = run(
        monkeypatch, capsys, "align", photo_folder, "--out", out, "--overwrite", "--size", "64"
    )
    assert code == 0
    assert (out / "notes.md").read_text() == "mine"
    assert Image.open(out / "tom.png").size == (64, 64)
    assert settings_record_for(out / "x").name == "x.settings.json"
