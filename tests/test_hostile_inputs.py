"""A corpus of bad inputs walked through every command that reads files.

Each case runs the real console entry point (``igfiqa.cli.main``) in-process and asserts what a user
is promised: no traceback, exit code 1 (some items failed, the rest done) or 2 (usage error, nothing
done), a message naming the file or field, and, for batch commands, every good item still processed.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from igfiqa.checkpoint import REQUIRED_KEYS
from igfiqa.cli import main
from igfiqa.models import create_model

SIZE = 32
SPEC = {"name": "iresnet18", "num_features": 16, "width": 0.125, "input_size": SIZE}
BENCH = "synthetic:identities=4,samples=3,image_size=32,seed=1"


def run(monkeypatch, capsys, *args: object) -> tuple[int, str]:
    """Run ``igfiqa ARGS`` as the console script does; returns (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["igfiqa", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    out, err = capsys.readouterr()
    return code, out + err


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels (and nothing behind it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


class Evil:
    """A pickle that would run a shell command when loaded by plain pickle.load."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/igfiqa_pwned",))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny model in two forms, a good image, and a folder of bad inputs."""
    root = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    model = create_model(**SPEC).eval()
    backbone = root / "backbone.pth"
    torch.save(model.state_dict(), backbone)
    checkpoint = root / "model.pt"
    training = {key: {} for key in REQUIRED_KEYS}  # every key of the format, placeholders
    training.update(format="igfiqa.checkpoint", format_version=1, epoch=0, step=0)
    torch.save({**training, "model_spec": SPEC, "model": model.state_dict()}, checkpoint)
    crafted = root / "crafted.pt"
    crafted_spec = {**SPEC, "width": 400.0}
    torch.save({**training, "model_spec": crafted_spec, "model": model.state_dict()}, crafted)
    good = root / "good.png"
    rng = np.random.default_rng(0)
    good.write_bytes(png_bytes(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)))
    return {
        "root": root,
        "backbone": backbone,
        "checkpoint": checkpoint,
        "crafted": crafted,
        "good": good,
    }


# ----------------------------------------------------------------------------- bad images for score
def _jpeg_half(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), 90, np.uint8)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


IMAGE_CASES: dict[str, tuple[str, Callable[[Path], object], str]] = {
    # name: (file name, how to make it, a word the error must contain)
    "empty file": ("empty.jpg", lambda p: p.write_bytes(b""), "empty"),
    "truncated JPEG": ("half.jpg", _jpeg_half, "half.jpg"),
    "truncated PNG": (
        "half.png",
        lambda p: p.write_bytes(png_bytes(np.zeros((SIZE, SIZE, 3), np.uint8))[:60]),
        "half.png",
    ),
    "text named .jpg": (
        "text.jpg",
        lambda p: p.write_text("hello, I am not an image\n"),
        "text.jpg",
    ),
    "random bytes": ("noise.png", lambda p: p.write_bytes(os.urandom(2048)), "noise.png"),
    "HTML page": ("page.jpg", lambda p: p.write_text("<html><body>404</body></html>"), "page.jpg"),
    "decompression bomb": ("bomb.png", lambda p: p.write_bytes(bomb_png(100_000, 100_000)), "bomb"),
    "zero-size header": ("zero.png", lambda p: p.write_bytes(bomb_png(0, 0)), "zero.png"),
    "wrong size": (
        "big.png",
        lambda p: p.write_bytes(png_bytes(np.zeros((SIZE + 8, SIZE + 8, 3), np.uint8))),
        "--resize",
    ),
    "1x1 image": (
        "dot.png",
        lambda p: p.write_bytes(png_bytes(np.zeros((1, 1, 3), np.uint8))),
        "1x1",
    ),
    "FIFO": ("pipe.jpg", lambda p: os.mkfifo(p), "not a regular file"),
    "broken link": ("gone.png", lambda p: p.symlink_to(p.parent / "nowhere.png"), "broken"),
    "link to a device": ("zero_dev.png", lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
    "over the size cap": (
        "huge.png",
        lambda p: p.write_bytes(png_bytes(np.zeros((SIZE, SIZE, 3), np.uint8)) + b"\0" * 2_200_000),
        "limit",
    ),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_a_bad_image_gets_an_error_row_and_the_good_one_is_scored(
    case, world, tmp_path, monkeypatch, capsys
):
    name, make, word = IMAGE_CASES[case]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_good.png").write_bytes(world["good"].read_bytes())
    make(folder / name)
    monkeypatch.setenv("IGFIQA_MAX_FILE_MB", "2")
    out = tmp_path / "scores.csv"
    code, text = run(monkeypatch, capsys, "score", world["backbone"], folder, "-o", out)
    assert "Traceback" not in text
    assert code == 1, text
    rows = {Path(r.split(",")[0]).name: r for r in out.read_text().splitlines()[1:]}
    assert np.isfinite(float(rows["a_good.png"].split(",")[1]))  # the good image was scored
    assert word in rows[name], rows[name]
    assert name in rows[name]  # the message names the file


def test_align_and_score_detect_give_every_bad_image_its_row(
    world, astronaut, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_face.png").write_bytes(png_bytes(astronaut[0]))
    for name, make, _ in IMAGE_CASES.values():
        make(folder / name)
    monkeypatch.setenv("IGFIQA_MAX_FILE_MB", "2")
    names = {"a_face.png", *(name for name, _, _ in IMAGE_CASES.values())}
    code, text = run(monkeypatch, capsys, "align", folder, "-o", tmp_path / "crops")
    assert code == 1 and "Traceback" not in text
    lines = (tmp_path / "crops" / "faces.csv").read_text().splitlines()[1:]
    by_name = {Path(line.split(",")[0]).name: line for line in lines}
    assert len(lines) == len(names) and set(by_name) == names
    assert (
        by_name["a_face.png"].split(",")[2] == "a_face.png"
        and (tmp_path / "crops" / "a_face.png").is_file()
    )
    assert all(by_name[n].rstrip().split(",")[-1] for n in names - {"a_face.png"})  # an error each
    out = tmp_path / "scores.csv"
    code, text = run(monkeypatch, capsys, "score", world["backbone"], folder, "--detect", "-o", out)
    assert code == 1 and "Traceback" not in text
    rows = {Path(r.split(",")[0]).name: r for r in out.read_text().splitlines()[1:]}
    assert set(rows) == names
    assert np.isfinite(float(rows["a_face.png"].split(",")[7]))


def test_dev_zero_as_an_input_gets_a_row_and_is_never_read(world, tmp_path, monkeypatch, capsys):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    out = tmp_path / "z.csv"
    code, text = run(
        monkeypatch, capsys, "score", world["backbone"], "/dev/zero", world["good"], "-o", out
    )
    assert code == 1 and "Traceback" not in text
    rows = out.read_text().splitlines()
    assert "/dev/zero" in rows[1] and "not a regular file" in rows[1]
    assert rows[2].startswith(str(world["good"])) and rows[2].split(",")[1]


def test_a_file_name_that_is_not_utf8_is_scored_and_resumed(world, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "names"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    with open(odd, "wb") as handle:
        handle.write(world["good"].read_bytes())
    out = tmp_path / "n.csv"
    code, text = run(monkeypatch, capsys, "score", world["backbone"], folder, "-o", out)
    assert code == 0 and "Traceback" not in text
    code, text = run(monkeypatch, capsys, "score", world["backbone"], folder, "-o", out, "--resume")
    assert code == 0 and "1 skipped" in text  # recognised, not scored twice


# ----------------------------------------------------------------------------- usage errors
@dataclass
class Usage:
    """A command that must be refused as a whole: exit 2, a message naming ``word``."""

    build: Callable[[dict[str, Path], Path], list[object]]
    word: str


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def _train_set(t: Path, override: str) -> list[object]:
    return ["train", "--preset", "synthetic_demo", "--set", override, "--out", t / "r"]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _link(path: Path, target: Path) -> Path:
    target.write_text("precious")
    path.symlink_to(target)
    return path


def _score(w: dict[str, Path], model: object, *extra: object) -> list[object]:
    return ["score", model, w["good"], *extra]


def _eval_csv(w: dict[str, Path], t: Path, content: bytes | str) -> list[object]:
    return _evaluate(w, t, "-q", "csv:" + str(_write(t / "q.csv", content)))


def _evaluate(w: dict[str, Path], t: Path, *extra: object) -> list[object]:
    return [
        "evaluate",
        "-b",
        BENCH,
        "-f",
        w["backbone"],
        "--out",
        t / "ev",
        "--workers",
        "0",
        *extra,
    ]


def _recordio_with_property(t: Path) -> Path:
    from igfiqa.data.convert import write_recordio
    from igfiqa.data.datasets import open_training_dataset

    write_recordio(open_training_dataset(BENCH, hflip=False), t / "rec", image_format="png")
    (t / "rec" / "property").write_text("9,32,32")
    return t / "rec"


USAGE: dict[str, Usage] = {
    # score: the model and the side files
    "score: missing model": Usage(lambda w, t: _score(w, t / "none.pth"), "none.pth"),
    "score: model of garbage bytes": Usage(
        lambda w, t: _score(w, _write(t / "junk.pth", os.urandom(500))), "junk.pth"
    ),
    "score: model is a text file": Usage(
        lambda w, t: _score(w, _write(t / "notes.pt", "weights: none\n")), "notes.pt"
    ),
    "score: truncated checkpoint": Usage(
        lambda w, t: _score(w, _write(t / "cut.pt", w["checkpoint"].read_bytes()[:3000])), "cut.pt"
    ),
    "score: pickle that runs code": Usage(
        lambda w, t: _score(w, _write(t / "evil.pt", pickle.dumps(Evil()))), "evil.pt"
    ),
    "score: crafted model card (width 400)": Usage(
        lambda w, t: _score(w, w["crafted"]), "width 400"
    ),
    "score: landmarks of the wrong shape": Usage(
        lambda w, t: _score(w, w["backbone"], "--landmarks", _write(t / "lm.txt", "a.png 1 2\n")),
        "lm.txt",
    ),
    "score: landmarks at 1e30": Usage(
        lambda w, t: _score(
            w, w["backbone"], "--landmarks", _write(t / "far.txt", "a.png " + "1e30 " * 10 + "\n")
        ),
        "far.txt",
    ),
    "score: landmarks that are not UTF-8": Usage(
        lambda w, t: _score(w, w["backbone"], "--landmarks", _write(t / "l1.txt", b"\xff\xfe1 2")),
        "l1.txt",
    ),
    "score: list file that is not UTF-8": Usage(
        lambda w, t: ["score", w["backbone"], _write(t / "list.txt", b"\xffimg.png\n")], "list.txt"
    ),
    "score: empty folder": Usage(
        lambda w, t: ["score", w["backbone"], _write(t / "empty" / ".keep", "").parent], "empty"
    ),
    "score: missing input": Usage(lambda w, t: ["score", w["backbone"], t / "nothing"], "nothing"),
    "score: output exists": Usage(
        lambda w, t: _score(w, w["backbone"], "-o", _write(t / "done.csv", "path,quality\n")),
        "done.csv",
    ),
    "score: --calibrated without a calibration": Usage(
        lambda w, t: _score(w, w["backbone"], "--calibrated"), "calibrat"
    ),
    "score: --workers -3": Usage(
        lambda w, t: _score(w, w["backbone"], "--workers", "-3"), "workers"
    ),
    "score: a FIFO as the model (never read: a read would block)": Usage(
        lambda w, t: _score(w, _fifo(t / "m.pt")), "m.pt"
    ),
    "score: a symbolic link as the output": Usage(
        lambda w, t: _score(
            w, w["backbone"], "--overwrite", "-o", _link(t / "o.csv", t / "victim.txt")
        ),
        "symbolic link",
    ),
    "score: an output under /sys": Usage(
        lambda w, t: _score(w, w["backbone"], "-o", "/sys/igfiqa.csv"), "/sys/igfiqa.csv"
    ),
    # evaluate: quality CSVs, verification files, FR models, options
    "evaluate: quality CSV not UTF-8": Usage(
        lambda w, t: _eval_csv(w, t, b"\x00\xff,1"), "q.csv (quality CSV): not UTF-8"
    ),
    "evaluate: quality CSV with NaN": Usage(
        lambda w, t: _eval_csv(w, t, "a.png,nan\n"), "q.csv:1: quality 'nan' is not a finite"
    ),
    "evaluate: quality CSV with conflicting rows": Usage(
        lambda w, t: _eval_csv(w, t, "a,1\nb,2\na,3\n"),
        "q.csv:3",
    ),
    "evaluate: quality CSV missing samples": Usage(
        lambda w, t: _eval_csv(w, t, "nobody.png,0.5\n"), "q.csv"
    ),
    "evaluate: quality CSV is a folder": Usage(
        lambda w, t: _evaluate(w, t, "-q", "csv:" + str(_write(t / "dir" / "x", "").parent)), "dir"
    ),
    "evaluate: .bin that is not a pickle": Usage(
        lambda w, t: [
            "evaluate",
            "-b",
            f"lfw:{_write(t / 'lfw.bin', os.urandom(300))}",
            "-f",
            w["backbone"],
            "-q",
            "random",
            "--out",
            t / "ev",
        ],
        "lfw.bin",
    ),
    "evaluate: .bin pickle that runs code": Usage(
        lambda w, t: [
            "evaluate",
            "-b",
            f"lfw:{_write(t / 'evil.bin', pickle.dumps(Evil()))}",
            "-f",
            w["backbone"],
            "-q",
            "random",
            "--out",
            t / "ev",
        ],
        "evil.bin",
    ),
    "evaluate: .bin of the wrong structure": Usage(
        lambda w, t: [
            "evaluate",
            "-b",
            f"lfw:{_write(t / 'int.bin', pickle.dumps(42))}",
            "-f",
            w["backbone"],
            "-q",
            "random",
            "--out",
            t / "ev",
        ],
        "int.bin",
    ),
    "evaluate: FR model of garbage": Usage(
        lambda w, t: [
            "evaluate",
            "-b",
            BENCH,
            "-f",
            _write(t / "fr.pth", os.urandom(400)),
            "-q",
            "random",
            "--out",
            t / "ev",
        ],
        "fr.pth",
    ),
    "evaluate: --out is a file": Usage(
        lambda w, t: [
            "evaluate",
            "-b",
            BENCH,
            "-f",
            w["backbone"],
            "-q",
            "random",
            "--out",
            _write(t / "afile", "x"),
        ],
        "afile",
    ),
    "evaluate: --fmr out of range": Usage(
        lambda w, t: _evaluate(w, t, "-q", "random", "--fmr", "2"), "--fmr"
    ),
    "evaluate: repeated benchmark": Usage(
        lambda w, t: _evaluate(w, t, "-q", "random", "-b", BENCH), "more than once"
    ),
    # train: configs, data, run folders
    "train: config YAML that does not parse": Usage(
        lambda w, t: [
            "train",
            "--config",
            _write(t / "bad.yaml", "model: [unclosed\n"),
            "--out",
            t / "r",
        ],
        "bad.yaml",
    ),
    "train: config with an unknown key": Usage(
        lambda w, t: [
            "train",
            "--preset",
            "synthetic_demo",
            "--config",
            _write(t / "extra.yaml", "model: {colour: red}\n"),
            "--out",
            t / "r",
        ],
        "colour",
    ),
    "train: override of the wrong type": Usage(
        lambda w, t: [
            "train",
            "--preset",
            "synthetic_demo",
            "--set",
            "train.epochs=many",
            "--out",
            t / "r",
        ],
        "train.epochs",
    ),
    "train: missing data": Usage(
        lambda w, t: [
            "train",
            "--preset",
            "synthetic_demo",
            "--data",
            t / "no_data",
            "--out",
            t / "r",
        ],
        "no_data",
    ),
    "train: list file that is not UTF-8": Usage(
        lambda w, t: [
            "train",
            "--preset",
            "synthetic_demo",
            "--data",
            _write(t / "train.txt", b"\xff\xfe a 0\n"),
            "--out",
            t / "r",
        ],
        "train.txt",
    ),
    "train: list file naming missing images": Usage(
        lambda w, t: [
            "train",
            "--preset",
            "synthetic_demo",
            "--data",
            _write(t / "list.txt", "ghost.png 0\nshade.png 1\n"),
            "--out",
            t / "r",
        ],
        "ghost.png",
    ),
    "train: RecordIO property that contradicts the data": Usage(
        lambda w, t: [
            "train",
            "--preset",
            "synthetic_demo",
            "--data",
            _recordio_with_property(t),
            "--out",
            t / "r",
        ],
        "property",
    ),
    "train: resume from a corrupt checkpoint": Usage(
        lambda w, t: [
            "train",
            "--resume",
            _write(t / "run" / "checkpoints" / "step_00000001.pt", b"rubbish").parent.parent,
            "--preset",
            "synthetic_demo",
        ],
        "step_00000001.pt",
    ),
    "train: resume a folder without checkpoints": Usage(
        lambda w, t: [
            "train",
            "--resume",
            _write(t / "run2" / "x", "").parent,
            "--preset",
            "synthetic_demo",
        ],
        "run2",
    ),
    "train: a learning rate of infinity": Usage(
        lambda w, t: _train_set(t, "optim.lr=.inf"), "optim.lr"
    ),
    "train: ten thousand loader workers": Usage(
        lambda w, t: _train_set(t, "data.num_workers=10000"), "data.num_workers"
    ),
    "train: a model wider than the memory": Usage(
        lambda w, t: _train_set(t, "model.width=1000"), "model"
    ),
    "train: an image size that is not the model's": Usage(
        lambda w, t: _train_set(t, "data.image_size=64"), "image_size"
    ),
    "train: --out is a file": Usage(
        lambda w, t: ["train", "--preset", "synthetic_demo", "--out", _write(t / "afile", "x")],
        "afile",
    ),
    "train: cuda without CUDA": Usage(
        lambda w, t: [
            "train",
            "--preset",
            "synthetic_demo",
            "--set",
            "train.device=cuda",
            "--out",
            t / "r",
        ],
        "train.device",
    ),
    # data and export
    "data inspect: negative seed": Usage(
        lambda w, t: ["data", "inspect", "synthetic:seed=-5"], "seed"
    ),
    "data inspect: absurd size": Usage(
        lambda w, t: ["data", "inspect", "synthetic:identities=100000000000,samples=100000000"],
        "20,000,000",
    ),
    "data inspect: missing source": Usage(lambda w, t: ["data", "inspect", t / "void"], "void"),
    "data convert: missing source": Usage(
        lambda w, t: ["data", "convert", t / "void2", t / "out_rec"], "void2"
    ),
    "export: model of garbage": Usage(
        lambda w, t: ["export", _write(t / "junk2.pt", os.urandom(300)), "--out", t / "exp"],
        "junk2.pt",
    ),
    "export: crafted model card": Usage(
        lambda w, t: ["export", w["crafted"], "--out", t / "exp2"], "width 400"
    ),
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the cuda case needs a machine without CUDA")
@pytest.mark.parametrize("case", list(USAGE))
def test_a_bad_input_is_refused_with_a_message_naming_it(
    case, world, tmp_path, monkeypatch, capsys
):
    usage = USAGE[case]
    args = usage.build(world, tmp_path)
    code, text = run(monkeypatch, capsys, *args)
    assert "Traceback" not in text, text
    assert code == 2, f"exit {code}: {text}"
    assert usage.word in text, text
    assert not Path("/tmp/igfiqa_pwned").exists()  # no pickle ever ran its code


ENVIRONMENT = {
    "IGFIQA_MAX_FILE_MB=abc": ("IGFIQA_MAX_FILE_MB", "abc", "IGFIQA_MAX_FILE_MB"),
    "IGFIQA_MAX_FILE_MB=inf": ("IGFIQA_MAX_FILE_MB", "inf", "IGFIQA_MAX_FILE_MB"),
    "IGFIQA_MAX_VIDEO_MB=abc": ("IGFIQA_MAX_VIDEO_MB", "abc", "IGFIQA_MAX_VIDEO_MB"),
    "RANK=abc": ("RANK", "abc", "RANK"),
    "RANK=1 without WORLD_SIZE": ("RANK", "1", "WORLD_SIZE"),
}


@pytest.mark.parametrize("case", list(ENVIRONMENT))
def test_a_bad_environment_is_refused_before_any_work(
    case, world, tmp_path, monkeypatch, capsys
) -> None:
    name, value, word = ENVIRONMENT[case]
    monkeypatch.setenv(name, value)
    out = tmp_path / "r"
    code, text = run(monkeypatch, capsys, *_train_set(tmp_path, "train.epochs=1"))
    assert code == 2 and word in text and "Traceback" not in text, text
    assert not out.exists()
    if name.startswith("IGFIQA"):  # every command, not only train
        code, text = run(monkeypatch, capsys, "score", world["backbone"], world["good"])
        assert code == 2 and word in text, text


def test_the_corpus_has_at_least_forty_kinds() -> None:
    kinds = len(IMAGE_CASES) + len(USAGE) + len(ENVIRONMENT) + 2  # + /dev/zero, non-UTF-8 name
    assert kinds >= 40
