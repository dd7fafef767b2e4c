"""``igfiqa align``: detect, align and save the faces of image files, folders and list files.

For every input the largest face (or, with ``all_faces``, every face) is aligned to the ArcFace
template and written as a lossless PNG below the output folder, mirroring the input's name
(``photo.jpg`` -> ``photo.png``; with ``all_faces`` ``photo_0.png``, ``photo_1.png``, ... largest
first). Two tables record the run, row by row as it goes (flushed after every batch):

- ``faces.csv``: ``input,face,crop,x1,y1,x2,y2,detection,lx1,ly1,...,lx5,ly5,error``: one row per
  written face, and one row per input that failed (unreadable, no face), with its error;
- ``landmarks.txt``: ``path x1 y1 ... x5 y5 detection`` of each input's largest face, in pixels of the
  input: the file ``igfiqa score INPUT... --landmarks landmarks.txt`` reads.

An interrupted run keeps what it wrote; ``resume`` skips the inputs already in ``faces.csv``.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from igfiqa.detection import DEFAULT_MAX_SIDE, DetectedFace, find_faces
from igfiqa.errors import ConfigError, DataError, IgfiqaError
from igfiqa.files import atomic_write_bytes, complete_lines, spreadsheet_safe, spreadsheet_unescape
from igfiqa.inference.pipeline import batched, ordered_map
from igfiqa.inference.preprocess import to_rgb_array
from igfiqa.inference.scorer import ScoreItem

FACES_FILE = "faces.csv"
LANDMARKS_FILE = "landmarks.txt"
FACE_TABLE_COLUMNS = [
    "input", "face", "crop", "x1", "y1", "x2", "y2", "detection",
    *(f"{axis}{i}" for i in range(1, 6) for axis in ("lx", "ly")), "error",
]  # fmt: skip


@dataclass
class AlignSummary:
    """What one run did: inputs with faces, faces written, inputs failed, skipped, time."""

    aligned: int = 0
    faces: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0


def crop_name(relative: str, index: int | None) -> str:
    """The crop's path below the output folder: the input's relative name, ``.png``, and with
    ``index`` a ``_<index>`` suffix. Parent references and absolute parts are dropped."""
    parts = [
        p for p in PurePosixPath(relative.replace("\\", "/")).parts if p not in ("..", "/", ".")
    ]
    path = PurePosixPath(*parts) if parts else PurePosixPath("image")
    stem = path.stem if index is None else f"{path.stem}_{index}"
    return str(path.with_name(f"{stem}.png"))


class AlignTables:
    """``faces.csv`` and ``landmarks.txt`` of an output folder, appended row by row."""

    def __init__(self, folder: Path, *, resume: bool, overwrite: bool) -> None:
        self.faces_path = folder / FACES_FILE
        self.landmarks_path = folder / LANDMARKS_FILE
        self.done: set[str] = set()
        self.used_names: set[str] = set()
        exists = self.faces_path.is_file() and self.faces_path.stat().st_size > 0
        if exists and not (resume or overwrite):
            raise ConfigError(
                f"{folder} already holds an alignment ({self.faces_path}): pass --resume to "
                "continue it or --overwrite to start again"
            )
        if exists and resume:
            self._read_existing()
            mode = "a"
        else:
            mode = "w"
        self._faces = self.faces_path.open(
            mode, encoding="utf-8", errors="surrogateescape", newline=""
        )
        self._landmarks = self.landmarks_path.open(
            mode, encoding="utf-8", errors="surrogateescape", newline=""
        )
        self._csv = csv.writer(self._faces, lineterminator="\n")
        if mode == "w":
            self._csv.writerow(FACE_TABLE_COLUMNS)
            self._landmarks.write("# path x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 detection (largest face)\n")
            self.flush()

    def _read_existing(self) -> None:
        # rows cut off mid-write are dropped from both tables; their input is aligned again
        if self.landmarks_path.is_file():
            complete_lines(self.landmarks_path)
        data = complete_lines(self.faces_path)
        rows = list(csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"))))
        if not rows or rows[0] != FACE_TABLE_COLUMNS:
            raise ConfigError(f"cannot resume {self.faces_path}: not a faces table of igfiqa align")
        for row in rows[1:]:
            if row:
                self.done.add(spreadsheet_unescape(row[0]))
                if len(row) > 2 and row[2]:
                    self.used_names.add(row[2])

    def write_faces(self, item: ScoreItem, faces: list[DetectedFace], crops: list[str]) -> None:
        for found, name in zip(faces, crops, strict=True):
            face = found.face
            self._csv.writerow(
                [spreadsheet_safe(item.path), found.index, name,
                 *(f"{v:.2f}" for v in face.box), f"{face.score:.6f}",
                 *(f"{v:.6f}" for v in face.landmarks.reshape(-1)), ""]
            )  # fmt: skip
        largest = faces[0].face
        if not any(c.isspace() for c in item.path):  # the landmark format splits on whitespace
            points = " ".join(f"{v:.6f}" for v in largest.landmarks.reshape(-1))
            self._landmarks.write(f"{item.path} {points} {largest.score:.6f}\n")

    def write_failure(self, item: ScoreItem, error: str) -> None:
        self._csv.writerow(
            [
                spreadsheet_safe(item.path),
                *[""] * (len(FACE_TABLE_COLUMNS) - 2),
                spreadsheet_safe(error),
            ]
        )

    def flush(self) -> None:
        for handle in (self._faces, self._landmarks):
            handle.flush()

    def close(self) -> None:
        for handle in (self._faces, self._landmarks):
            if not handle.closed:
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()

    def __enter__(self) -> AlignTables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError("could not encode an aligned crop as PNG")
    return encoded.tobytes()


def align_inputs(
    items: Sequence[ScoreItem],
    out: Path,
    detector: Any,
    *,
    size: int = 112,
    all_faces: bool = False,
    max_side: int = DEFAULT_MAX_SIDE,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    batch: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> AlignSummary:
    """Detect, align and write the faces of ``items`` into ``out`` (see the module docstring)."""
    if not 16 <= size <= 1024:
        raise ConfigError(f"--size must be in [16, 1024] pixels, got {size}")
    with AlignTables(out, resume=resume, overwrite=overwrite) as tables:
        todo = [item for item in items if item.path not in tables.done]
        summary = AlignSummary(skipped=len(items) - len(todo))

        def detect(item: ScoreItem) -> list[DetectedFace]:
            try:
                image = to_rgb_array(item.path, name=item.path)
                return find_faces(
                    image, detector, size=size, all_faces=all_faces, max_side=max_side,
                    name=item.path,
                )  # fmt: skip
            except IgfiqaError:
                raise
            except (OSError, ValueError, RuntimeError) as error:
                raise DataError(f"{item.path}: {type(error).__name__}: {error}") from error

        start = time.perf_counter()
        done = 0
        for group in batched(ordered_map(detect, todo, workers=workers, window=2 * batch), batch):
            for outcome in group:
                if outcome.error is not None:
                    tables.write_failure(outcome.item, " ".join(str(outcome.error).split()))
                    summary.failed += 1
                    continue
                names = []
                for found in outcome.value:
                    name = crop_name(outcome.item.relative, found.index if all_faces else None)
                    name = _unique(name, tables.used_names)
                    atomic_write_bytes(encode_png(found.crop), out / name, private=False)
                    names.append(name)
                tables.write_faces(outcome.item, outcome.value, names)
                summary.aligned += 1
                summary.faces += len(names)
            tables.flush()
            done += len(group)
            summary.seconds = time.perf_counter() - start
            if on_batch is not None:
                on_batch(done)
        summary.seconds = time.perf_counter() - start
    return summary


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``stem~2.png``, ``stem~3.png``, ... when two inputs map to the same crop."""
    candidate, number = name, 1
    path = PurePosixPath(name)
    while candidate in used:
        number += 1
        candidate = str(path.with_name(f"{path.stem}~{number}{path.suffix}"))
    used.add(candidate)
    return candidate


__all__ = [
    "FACES_FILE",
    "FACE_TABLE_COLUMNS",
    "LANDMARKS_FILE",
    "AlignSummary",
    "AlignTables",
    "align_inputs",
    "crop_name",
]
