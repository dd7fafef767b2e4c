"""Interrupted runs keep their rows; `--resume` finishes them without losing or duplicating any."""

from __future__ import annotations

import csv
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import random_images
from PIL import Image
from typer.testing import CliRunner

import igfiqa
from igfiqa.cli import app
from igfiqa.inference.scorer import (
    ResultWriter,
    collect_inputs,
    record_output_settings,
    score_inputs,
    score_settings,
)

runner = CliRunner()
NUM_IMAGES = 13


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for index, image in enumerate(random_images(NUM_IMAGES, seed=5)):
        Image.fromarray(image).save(root / f"img_{index:02d}.png")
    (root / "img_99_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


@pytest.fixture(scope="module")
def complete(folder, backbone_path, tmp_path_factory) -> list[list[str]]:
    """The rows of an uninterrupted run (header included)."""
    out = tmp_path_factory.mktemp("complete") / "all.csv"
    result = runner.invoke(app, ["score", str(backbone_path), str(folder), "-o", str(out)])
    assert result.exit_code == 1, result.output
    return read_csv(out)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def resume(backbone_path: Path, folder: Path, out: Path, *extra: str):
    args = ["score", str(backbone_path), str(folder), "-o", str(out), "--resume", *extra]
    return runner.invoke(app, args)


def assert_same_rows(got: list[list[str]], want: list[list[str]]) -> None:
    assert got[0] == want[0]
    paths = [row[0] for row in got[1:]]
    assert len(paths) == len(set(paths)), "duplicated rows"
    by_path = {row[0]: row for row in got[1:]}
    assert set(by_path) == {row[0] for row in want[1:]}, "lost rows"
    for row in want[1:]:
        assert by_path[row[0]][2] == row[2]
        if row[1]:
            assert float(by_path[row[0]][1]) == pytest.approx(float(row[1]), rel=1e-5, abs=1e-5)


class Interrupted(Exception):
    pass


def test_interrupt_after_k_rows_then_resume(folder, backbone_path, complete, tmp_path):
    out = tmp_path / "partial.csv"
    model = igfiqa.load_model(backbone_path)

    def stop_after_two_batches(rows_so_far: int) -> None:
        if rows_so_far >= 8:
            raise Interrupted

    with pytest.raises(Interrupted), ResultWriter(out, settings=score_settings(model)) as writer:
        score_inputs(
            model, collect_inputs([folder]), writer, batch_size=4, on_batch=stop_after_two_batches
        )
    partial = read_csv(out)
    assert len(partial) == 1 + 8  # everything scored before the interruption is on disk
    result = resume(backbone_path, folder, out, "--batch-size", "5")
    assert result.exit_code == 1  # the broken PNG fails again (it was not reached before)
    assert "8 skipped" in result.output
    assert_same_rows(read_csv(out), complete)
    again = resume(backbone_path, folder, out)  # nothing left: no new rows, exit 0
    assert again.exit_code == 0 and "0 failed, 14 skipped" in again.output
    assert_same_rows(read_csv(out), complete)


def test_truncated_last_line_is_rescored(folder, backbone_path, complete, tmp_path):
    out = tmp_path / "cut.csv"
    text = "\n".join(",".join(row) for row in complete[:6]) + "\n"
    cut = ",".join(complete[6])[:-4]  # a row cut off mid-write
    out.write_text(text + cut)
    record_output_settings(out, score_settings(igfiqa.load_model(backbone_path)))
    result = resume(backbone_path, folder, out)
    assert result.exit_code == 1
    assert_same_rows(read_csv(out), complete)


def test_resume_refuses_other_columns(folder, backbone_path, tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("path,quality,calibrated,error\n")
    record_output_settings(out, score_settings(igfiqa.load_model(backbone_path)))
    result = resume(backbone_path, folder, out)
    assert result.exit_code == 2 and "columns" in result.output


def test_jsonl_resume(folder, backbone_path, tmp_path):
    out = tmp_path / "scores.jsonl"
    first = [str(folder / "img_00.png"), str(folder / "img_01.png")]
    assert (
        runner.invoke(
            app, ["score", str(backbone_path), *first, "--format", "jsonl", "-o", str(out)]
        ).exit_code
        == 0
    )
    with out.open("a") as handle:
        handle.write('{"path": "half-writ')
    result = resume(backbone_path, folder, out, "--format", "jsonl")
    assert result.exit_code == 1
    import json

    records = [json.loads(line) for line in out.read_text().splitlines()]
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths)) == NUM_IMAGES + 1


# The child of the kill test: reading img_06 hangs (as a file on a hung network share would), and
# the child says on a pipe when it is stuck there: the rows of img_00..img_05 are written and
# counted and its main thread asks for img_06's result, which never comes. The test signals only
# then, whatever the machine's load: no sleep, no guess of how far the run got.
STUCK_CHILD = """
import os, signal, sys, time

# Ctrl-C as in a terminal: a test runner started in the background (`pytest &` in a script or CI
# step) passes SIGINT on ignored, and a Python started so never turns it into KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
announce = int(sys.argv.pop(1))

import igfiqa.data.decode as decode
import igfiqa.inference.scorer as scorer

read = decode.read_regular_file


def hung_read(path, *args, **kwargs):
    if str(path).endswith("img_06.png"):
        time.sleep(3600)
    return read(path, *args, **kwargs)


decode.read_regular_file = hung_read
ordered_map = scorer.ordered_map


def announced(*args, **kwargs):
    for count, outcome in enumerate(ordered_map(*args, **kwargs), 1):
        yield outcome
        if count == 6:  # resumed: img_05's batch is written and counted; img_06 is next
            os.write(announce, b"stuck")
            os.close(announce)


scorer.ordered_map = announced
from igfiqa.cli import main

main()
"""
# Last-resort bounds, far above what a 2-core machine with both cores busy needs (~10 s to start
# torch and score 6 images, well under 1 s to exit): they end a broken run, never a slow one.
START_LIMIT_S = 120
EXIT_LIMIT_S = 120


def wait_until_stuck(process: subprocess.Popen, announce: int, log: Path) -> None:
    """Block until the child writes on the pipe ``announce``; fail if it exits or never does."""
    ready, _, _ = select.select([announce], [], [], START_LIMIT_S)
    said = os.read(announce, 16) if ready else b""
    if said != b"stuck":  # EOF: the child ended (or closed the pipe) without getting stuck
        process.kill()
        process.wait()
        why = "ended" if ready else f"was not stuck at img_06 after {START_LIMIT_S} s"
        pytest.fail(f"the scoring child {why} (exit {process.returncode}):\n{log.read_text()}")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_killed_process_keeps_rows_and_resume_completes(
    how, folder, backbone_path, complete, tmp_path
):
    """A real kill mid-run, stuck at a known item (see STUCK_CHILD): killed (SIGKILL) or
    interrupted (Ctrl-C: exit 130, the rows written are named)."""
    work = tmp_path / "images"
    work.mkdir()
    for path in sorted(folder.iterdir()):
        (work / path.name).write_bytes(path.read_bytes())
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"images/{path.name}\n" for path in sorted(folder.iterdir())))
    out = tmp_path / "killed.csv"
    log = tmp_path / "stderr.txt"
    announce, told = os.pipe()
    command = [sys.executable, "-c", STUCK_CHILD, str(told), "score", str(backbone_path)]
    command += [str(listing), "-o", str(out), "--batch-size", "2", "--workers", "2"]
    try:
        with log.open("w") as stderr:  # a file, not a pipe nobody reads until the end
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(told,),
            )
    finally:
        os.close(told)  # the child's copy is the only one left: EOF here when it ends
    try:
        try:
            wait_until_stuck(process, announce, log)
            assert process.poll() is None, "the run should be stuck at img_06"
            process.send_signal(how)
            try:
                process.wait(timeout=EXIT_LIMIT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {EXIT_LIMIT_S} s after {how.name}:\n{log.read_text()}")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        os.close(announce)
    stderr_text = log.read_text()
    if how == signal.SIGINT:
        assert process.returncode == 130, stderr_text
        assert "6 rows were written" in stderr_text and "--resume" in stderr_text
    else:
        assert process.returncode == -signal.SIGKILL
    kept = read_csv(out)
    assert [row[0] for row in kept[1:]] == [str(work / f"img_{i:02d}.png") for i in range(6)]
    result = resume(backbone_path, listing, out)
    assert result.exit_code == 1
    renamed = [[row[0].replace(str(folder), str(work)), *row[1:]] for row in complete]
    renamed = [[r[0], r[1], r[2].replace(str(folder), str(work))] for r in renamed]
    assert_same_rows(read_csv(out), renamed)
    assert np.isfinite(float(read_csv(out)[7][1]))
