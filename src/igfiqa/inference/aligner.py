"""``igfiqa align``: detect, align and save the faces of image files, folders and list files.

For every input the largest face (or, with ``all_faces``, every face) is aligned to the ArcFace
template and written as a lossless PNG below the output folder, mirroring the input's name
(``photo.jpg`` -> ``photo.png``; with ``all_faces`` ``photo_0.png``, ``photo_1.png``, ... largest
first). Two tables record the run, row by row as it goes (flushed after every batch):

- ``faces.csv``: ``input,face,crop,x1,y1,x2,y2,detection,outside,lx1,ly1,...,lx5,ly5,error``: one
  row per written face (``outside``: the share of its box outside the photograph, 0 = wholly
  inside), and one row per input that failed (unreadable, no face), with its error;
- ``landmarks.txt``: ``path x1 y1 ... x5 y5 detection`` of each input's largest face, in pixels of the
  input: the file ``igfiqa score INPUT... --landmarks landmarks.txt`` reads.

An interrupted run keeps what it wrote; ``resume`` skips the inputs already in ``faces.csv``.
"""

from __future__ import annotations

import contextlib
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
from igfiqa.files import (
    FolderLock,
    check_or_record_settings,
    complete_lines,
    open_locked_output,
    safe_child,
    spreadsheet_safe,
    spreadsheet_unescape,
    write_new_file,
    writing,
)
from igfiqa.inference.pipeline import batched, ordered_map
from igfiqa.inference.preprocess import to_rgb_array
from igfiqa.inference.scorer import ScoreItem

FACES_FILE = "faces.csv"
LANDMARKS_FILE = "landmarks.txt"
SETTINGS_FILE = "align.json"
FACE_TABLE_COLUMNS = [
    "input", "face", "crop", "x1", "y1", "x2", "y2", "detection", "outside",
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
    """``faces.csv`` and ``landmarks.txt`` of an output folder, appended row by row.

    A new alignment needs a folder without files of its own (hidden ones aside), so that no file
    igfiqa did not write is ever replaced; ``resume`` continues one with the recorded settings
    (``align.json``); ``overwrite`` starts it again, deleting the crops its table lists."""

    def __init__(
        self,
        folder: Path,
        *,
        resume: bool,
        overwrite: bool,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.folder = folder
        self.faces_path = folder / FACES_FILE
        self.landmarks_path = folder / LANDMARKS_FILE
        self.done: set[str] = set()
        self.used_names: set[str] = set()
        for table in (self.faces_path, self.landmarks_path, folder / SETTINGS_FILE):
            if table.is_symlink() or (table.exists() and not table.is_file()):
                raise ConfigError(
                    f"{table} is not a regular file (a link or a folder): igfiqa does not write "
                    "through it; use another --out"
                )
        exists = self.faces_path.is_file() and self.faces_path.stat().st_size > 0
        if exists and not (resume or overwrite):
            raise ConfigError(
                f"{folder} already holds an alignment ({self.faces_path}): pass --resume to "
                "continue it or --overwrite to start again"
            )
        if not exists:
            _require_no_foreign_files(folder)
        continuing = exists and resume
        check_or_record_settings(
            folder / SETTINGS_FILE, folder, "align", settings or {}, resume=continuing
        )
        if continuing:
            self._read_existing()
        elif exists:  # --overwrite: the crops of the earlier alignment go, nothing else
            self._remove_listed_crops()
        self._faces = self._open(self.faces_path, truncate=not continuing)
        self._landmarks = self._open(self.landmarks_path, truncate=not continuing)
        self._csv = csv.writer(self._faces, lineterminator="\n")
        if not continuing:
            with writing(self.faces_path):
                self._csv.writerow(FACE_TABLE_COLUMNS)
                self._landmarks.write(
                    "# path x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 detection (largest face)\n"
                )
            self.flush()

    @staticmethod
    def _open(path: Path, *, truncate: bool) -> io.TextIOWrapper:
        raw = open_locked_output(path, truncate=truncate)
        return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")

    def _rows(self) -> list[list[str]]:
        data = complete_lines(self.faces_path)
        try:
            rows = list(csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"))))
        except csv.Error as error:
            raise ConfigError(
                f"{self.faces_path} is not a faces table igfiqa align wrote ({error}); start "
                "again in a new --out"
            ) from None
        if not rows or rows[0] != FACE_TABLE_COLUMNS:
            raise ConfigError(f"{self.faces_path} is not a faces table of igfiqa align")
        return rows[1:]

    def _read_existing(self) -> None:
        # rows cut off mid-write are dropped from both tables; their input is aligned again
        if self.landmarks_path.is_file():
            complete_lines(self.landmarks_path)
        for row in self._rows():
            if row:
                self.done.add(spreadsheet_unescape(row[0]))
                if len(row) > 2 and row[2]:
                    self.used_names.add(row[2])

    def _remove_listed_crops(self) -> None:
        for row in self._rows():
            if len(row) > 2 and row[2]:
                try:
                    crop = safe_child(self.folder, row[2], create=False)
                except DataError:
                    continue  # a name that leaves the folder or passes a link: never touched
                if crop.is_file() and not crop.is_symlink():
                    with writing(crop, "delete"):
                        crop.unlink()

    def write_faces(self, item: ScoreItem, faces: list[DetectedFace], crops: list[str]) -> None:
        for found, name in zip(faces, crops, strict=True):
            face = found.face
            self._csv.writerow(
                [spreadsheet_safe(item.path), found.index, name,
                 *(f"{v:.2f}" for v in face.box), f"{face.score:.6f}", f"{found.outside:.4f}",
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
        with writing(self.faces_path):
            for handle in (self._faces, self._landmarks):
                handle.flush()

    def close(self) -> None:
        for handle in (self._faces, self._landmarks):
            if not handle.closed:
                try:
                    with writing(self.faces_path):
                        handle.flush()
                        os.fsync(handle.fileno())
                finally:
                    with contextlib.suppress(OSError):
                        handle.close()

    def __enter__(self) -> AlignTables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _require_no_foreign_files(folder: Path) -> None:
    """Refuse to start an alignment in a folder holding files (other than hidden ones)."""
    if not folder.is_dir():
        return
    with os.scandir(folder) as entries:
        found = sorted(e.name for e in entries if not e.name.startswith("."))
    if found:
        raise ConfigError(
            f"--out {folder} holds files that are not an alignment (e.g. {found[0]}): write the "
            "crops into a new or empty folder, so that none of them can replace a file"
        )


def _require_inputs_outside(items: Sequence[ScoreItem], out: Path) -> None:
    """Refuse inputs inside the output folder: crops could replace them, and a later run of the
    same command would read the crops as inputs."""
    root = out.resolve()
    for item in items:
        try:
            inside = Path(item.path).resolve().is_relative_to(root)
        except (OSError, RuntimeError, ValueError):
            continue
        if inside:
            raise ConfigError(
                f"input {item.path} is inside --out {out}: write the crops into a folder that "
                "holds no input"
            )


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
    detector_settings: dict[str, Any] | None = None,
) -> AlignSummary:
    """Detect, align and write the faces of ``items`` into ``out`` (see the module docstring).

    One process writes into ``out`` at a time (``.igfiqa.lock``); inputs inside ``out`` are
    refused; ``detector_settings`` (e.g. the minimum face size and confidence) are recorded with
    the crop size and naming in ``align.json``, and ``resume`` refuses other ones."""
    if not 16 <= size <= 1024:
        raise ConfigError(f"--size must be in [16, 1024] pixels, got {size}")
    _require_inputs_outside(items, out)
    settings = {
        "size": size,
        "all_faces": all_faces,
        "max_side": max_side,
        "min_confidence": getattr(detector, "min_confidence", None),
        **(detector_settings or {}),
    }
    with (
        FolderLock(out, "alignment folder"),
        AlignTables(out, resume=resume, overwrite=overwrite, settings=settings) as tables,
    ):
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
                try:
                    names = _write_crops(out, outcome.item, outcome.value, all_faces, tables)
                except DataError as error:
                    tables.write_failure(outcome.item, " ".join(str(error).split()))
                    summary.failed += 1
                    continue
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


def _write_crops(
    out: Path, item: ScoreItem, faces: list[DetectedFace], all_faces: bool, tables: AlignTables
) -> list[str]:
    """Write an input's crops as new files (never replacing one, never through a link); returns
    their names. On a problem of this input's names the crops already written are removed and a
    :class:`DataError` says why."""
    names: list[str] = []
    try:
        for found in faces:
            name = crop_name(item.relative, found.index if all_faces else None)
            data = encode_png(found.crop)
            while True:
                name = _unique(name, tables.used_names)
                if write_new_file(data, safe_child(out, name)):
                    break  # else a file igfiqa did not write has this name: take the next one
            names.append(name)
    except DataError:
        for name in names:
            (out / name).unlink(missing_ok=True)
        raise
    return names


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
    "SETTINGS_FILE",
    "AlignSummary",
    "AlignTables",
    "align_inputs",
    "crop_name",
]
