"""Batch scoring of image files: input discovery, landmarks, resumable CSV / JSON Lines output.

:func:`score_inputs` decodes (and, with landmarks, aligns) images in a thread pool while the model
runs, writes one row per input as results arrive and flushes after every batch, so an interrupted run
keeps every row it wrote; :class:`ResultWriter` with ``resume=True`` skips the paths already present.
A file that fails gets a row with its error and the run goes on. With a face detector each input
gives a row per face it keeps (the largest, or all with ``all_faces``), with the face's index, box and
detection confidence; the faces of one input are always written together. Nothing here imports
torch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from igfiqa.data.decode import IMAGE_EXTENSIONS
from igfiqa.data.pixels import normalise_into
from igfiqa.data.video import is_video
from igfiqa.detection import DEFAULT_MAX_SIDE
from igfiqa.errors import ConfigError, DataError, IgfiqaError
from igfiqa.files import (
    MAX_TABLE_BYTES,
    check_or_record_settings,
    complete_lines,
    open_locked_output,
    read_text_file,
    spreadsheet_safe,
    spreadsheet_unescape,
    writing,
)
from igfiqa.inference.pipeline import batched, ordered_map
from igfiqa.inference.preprocess import find_images, fit_to_size, to_rgb_array

LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class ScoreItem:
    """One input image: ``path`` is the text written to the output, ``relative`` its name below the
    folder or list file it came from (used to find its landmarks)."""

    path: str
    relative: str


MAX_LANDMARK_COORDINATE = 1e5
"""Landmarks farther from the origin than this (pixels) belong to no photograph."""


def _tolerant(stream: IO[str]) -> IO[str]:
    """``stream`` writing unencodable characters (surrogates of non-UTF-8 file names) escaped."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="backslashreplace")
    return stream


@dataclass
class ScoreSummary:
    """What one run did: inputs scored, inputs failed, faces scored (with a detector), inputs
    skipped by ``--resume``, time."""

    scored: int = 0
    failed: int = 0
    faces: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return (self.scored + self.failed) / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------------- inputs
def read_image_list(path: Path) -> list[ScoreItem]:
    """An image list file: one image path per line (relative to the list file's folder); blank
    lines and lines starting with ``#`` are skipped; a trailing label (``path label``) is ignored."""
    from igfiqa.data.datasets import list_file_lines

    try:
        entries = list_file_lines(path, "list file")
    except DataError as error:
        raise ConfigError(str(error)) from None
    base = path.parent
    items = []
    for _, text in entries:
        name = text
        if not (base / text).exists() and len(text.split()) > 1:
            name = text.rsplit(maxsplit=1)[0] if text.split()[-1].lstrip("-").isdigit() else text
        full = name if os.path.isabs(name) else os.path.normpath(os.path.join(str(base), name))
        items.append(ScoreItem(full, name))
    return items


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[ScoreItem]:
    """Expand INPUT arguments into image and video items: files as given, folders recursively
    (image and video extensions, sorted), ``.txt``/``.lst`` list files line by line. Duplicates are
    kept once, first occurrence first. A missing INPUT raises ConfigError (a usage error)."""
    from igfiqa.data.video import VIDEO_EXTENSIONS, find_videos

    items: list[ScoreItem] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                find_images(path) + find_videos(path),
                key=lambda entry: entry.relative_to(path).as_posix(),
            )
            if not found:
                raise ConfigError(
                    f"folder {raw} holds no images or videos (looked for "
                    f"{', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))}, recursively)"
                )
            for image in found:
                items.append(
                    ScoreItem(
                        os.path.join(str(raw), image.relative_to(path).as_posix()),
                        image.relative_to(path).as_posix(),
                    )
                )
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            items.extend(read_image_list(path))
        elif path.exists():
            items.append(ScoreItem(str(raw), path.name))
        else:
            raise ConfigError(
                f"input {raw} does not exist (expected an image, a video, a folder or a list file)"
            )
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.path not in seen:
            seen.add(item.path)
            unique.append(item)
    return unique


def read_landmarks(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """IJB-style landmarks: ``name x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 [score]`` per line -> name -> (5, 2).

    Points are left eye, right eye, nose tip, left and right mouth corner, in pixels.
    """
    path = Path(path)
    try:
        lines = read_text_file(path, f"landmark file {path}", MAX_TABLE_BYTES).splitlines()
    except DataError as error:
        raise ConfigError(str(error)) from None
    table: dict[str, np.ndarray] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (11, 12):
            raise ConfigError(
                f"{path}:{number}: expected 'name x1 y1 ... x5 y5 [score]' (11 or 12 fields), "
                f"got {len(fields)}"
            )
        try:
            points = np.array([float(v) for v in fields[1:11]], dtype=np.float64).reshape(5, 2)
        except ValueError as error:
            raise ConfigError(
                f"{path}:{number}: landmark coordinates must be numbers ({error})"
            ) from error
        if not np.all(np.isfinite(points)):
            raise ConfigError(f"{path}:{number}: landmark coordinates must be finite")
        if np.abs(points).max() > MAX_LANDMARK_COORDINATE:
            raise ConfigError(
                f"{path}:{number}: landmark coordinate {np.abs(points).max():g} is outside any "
                f"image (|x|, |y| <= {MAX_LANDMARK_COORDINATE:g} pixels); check the file's columns"
            )
        table[fields[0]] = points
    if not table:
        raise ConfigError(f"landmark file {path} holds no landmarks")
    return table


def find_landmarks(table: Mapping[str, np.ndarray], item: ScoreItem) -> np.ndarray | None:
    """The landmarks of ``item``: looked up by output path, by name below its folder, then by base name."""
    for key in (item.path, item.relative, os.path.basename(item.path)):
        if key in table:
            return table[key]
    return None


# ----------------------------------------------------------------------------------- output
def _format_quality(value: float) -> str:
    return format(float(value), ".8g") if math.isfinite(value) else "nan"


@dataclass(frozen=True)
class FaceInfo:
    """Where a scored face was found: ``index`` (0 = largest), ``box`` (x1, y1, x2, y2), the
    detector's ``confidence`` and the share of the box ``outside`` the photograph (0 = wholly
    inside; a face cut by the frame is scored on a crop with black where the photograph ends)."""

    index: int
    box: tuple[float, float, float, float]
    confidence: float
    outside: float = 0.0


@dataclass(frozen=True)
class ResultRow:
    """One output row: a scored image or face, or an input's error."""

    path: str
    quality: float | None = None
    calibrated: int | None = None
    error: str | None = None
    face: FaceInfo | None = None
    expected_fnmr: tuple[float, float, float] | None = None


FACE_COLUMNS = ["face", "x1", "y1", "x2", "y2", "detection", "outside"]
"""Columns that ``--detect`` adds after ``path``."""
FNMR_COLUMNS = ["expected_fnmr", "expected_fnmr_low", "expected_fnmr_high"]
"""Columns that ``--calibrated`` adds for a model card with an expected-FNMR calibration."""


class ResultWriter:
    """Appends result rows to a CSV (``path,quality[,calibrated][,expected_fnmr,expected_fnmr_low,
    expected_fnmr_high],error``; with ``detect`` the face columns after ``path``) or JSON Lines file.

    With ``resume`` an existing file is kept: a truncated last line (an interrupted write) is cut
    off, and :attr:`done` holds the paths already present, which the run skips. Without it an
    existing non-empty file is refused unless ``overwrite``. ``path=None`` writes to stdout.

    A file output has one writer: a second process is refused while the first holds it. With
    ``settings`` (what decides the scores: the model's content, alignment, detection...) a new
    output records them beside it (:func:`settings_record_for`) and a resumed one must match them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        fmt: str = "csv",
        calibrated: bool = False,
        resume: bool = False,
        overwrite: bool = False,
        detect: bool = False,
        expected_fnmr: bool = False,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if fmt not in ("csv", "jsonl"):
            raise ConfigError(f"unknown output format {fmt!r}: use csv or jsonl")
        self.format = fmt
        self.calibrated = calibrated
        self.expected_fnmr = expected_fnmr
        self.detect = detect
        self.columns = [
            "path",
            *(FACE_COLUMNS if detect else []),
            "quality",
            *(["calibrated"] if calibrated else []),
            *(FNMR_COLUMNS if expected_fnmr else []),
            "error",
        ]
        self.done: set[str] = set()
        self.rows_written = 0
        self.path = None if path is None or str(path) == "-" else Path(path)
        if self.path is None:
            if resume:
                raise ConfigError("--resume needs an output file (-o FILE), not stdout")
            # stdout cannot take the raw bytes of a non-UTF-8 name: those are shown escaped
            self._handle: IO[str] = _tolerant(sys.stdout)
            self._owned = False
            self._write_header()
            return
        if self.path.is_dir():
            raise ConfigError(f"output {self.path} is a directory; give a file name")
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if exists and not resume and not overwrite:
            raise ConfigError(
                f"output {self.path} already exists: pass --resume to continue it (skipping the "
                "paths it holds) or --overwrite to replace it"
            )
        # One writer per output: the lock is taken before anything is read or truncated.
        raw = open_locked_output(self.path, truncate=False)
        try:
            exists = os.fstat(raw.fileno()).st_size > 0
            continuing = exists and resume
            if settings is not None:
                record_output_settings(self.path, settings, fmt=fmt, check=continuing)
            if continuing:
                self._read_existing()
            else:
                with writing(self.path):
                    raw.truncate(0)
        except BaseException:
            raw.close()
            raise
        # surrogateescape: a file name that is not valid UTF-8 (possible on POSIX) is written back
        # byte for byte, so --resume recognises it; everything else is plain UTF-8.
        self._handle = io.TextIOWrapper(
            raw, encoding="utf-8", errors="surrogateescape", newline="", write_through=True
        )
        self._owned = True
        if not continuing:
            with writing(self.path):
                self._write_header()

    def _write_header(self) -> None:
        if self.format == "csv":
            csv.writer(self._handle, lineterminator="\n").writerow(self.columns)
            self._handle.flush()

    def _read_existing(self) -> None:
        assert self.path is not None
        # a last row cut off mid-write is dropped (that image is scored again)
        text = complete_lines(self.path).decode("utf-8", errors="surrogateescape")
        if self.format == "csv":
            try:
                rows = list(csv.reader(io.StringIO(text)))
            except csv.Error as error:
                raise ConfigError(
                    f"cannot resume {self.path}: it is not a table `igfiqa score` wrote ({error}); "
                    "start again with --overwrite or use a new output"
                ) from None
            if rows and rows[0] != self.columns:
                raise ConfigError(
                    f"cannot resume {self.path}: its columns {rows[0]} differ from {self.columns} "
                    "(use the same --format, --calibrated and --detect as the first run)"
                )
            self.done = {spreadsheet_unescape(row[0]) for row in rows[1:] if row}
        else:
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    self.done.add(record["path"])
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ConfigError(
                        f"cannot resume {self.path}: line {number} is not a result record ({error}); "
                        "is it a JSON Lines output of `igfiqa score`?"
                    ) from error
                if (
                    self.calibrated != ("calibrated" in record)
                    or self.detect != ("face" in record)
                    or self.expected_fnmr != ("expected_fnmr" in record)
                ):
                    raise ConfigError(
                        f"cannot resume {self.path}: use the same --calibrated and --detect "
                        "settings as the first run"
                    )

    def write(self, rows: Iterable[ResultRow]) -> None:
        """Write rows and flush them to the file (an OSError becomes an OutputError);
        :attr:`rows_written` counts them once they are flushed."""
        rows = list(rows)
        with writing(self.path or "standard output"):
            self._write(rows)
        self.rows_written += len(rows)

    def _write(self, rows: Iterable[ResultRow]) -> None:
        if self.format == "csv":
            writer = csv.writer(self._handle, lineterminator="\n")
            for row in rows:
                # paths and messages may start with = + - @: never a formula in a spreadsheet
                fields = [spreadsheet_safe(row.path)]
                if self.detect:
                    fields += _face_fields(row.face)
                fields.append("" if row.quality is None else _format_quality(row.quality))
                if self.calibrated:
                    fields.append("" if row.calibrated is None else str(int(row.calibrated)))
                if self.expected_fnmr:
                    values = row.expected_fnmr or (None, None, None)
                    fields += [
                        "" if v is None or not math.isfinite(v) else f"{v:.6g}" for v in values
                    ]
                fields.append(spreadsheet_safe(row.error or ""))
                writer.writerow(fields)
        else:
            for row in rows:
                record: dict[str, Any] = {"path": row.path}
                if self.detect:
                    face = row.face
                    record["face"] = None if face is None else face.index
                    record["box"] = None if face is None else [round(v, 2) for v in face.box]
                    record["detection"] = None if face is None else round(face.confidence, 6)
                    record["outside"] = None if face is None else round(face.outside, 4)
                quality = row.quality
                record["quality"] = (
                    None if quality is None or not math.isfinite(quality) else float(quality)
                )
                if self.calibrated:
                    record["calibrated"] = None if row.calibrated is None else int(row.calibrated)
                if self.expected_fnmr:
                    values = row.expected_fnmr or (None, None, None)
                    for column, value in zip(FNMR_COLUMNS, values, strict=True):
                        finite = value is not None and math.isfinite(value)
                        record[column] = float(value) if finite else None
                record["error"] = row.error
                self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._owned and not self._handle.closed:
            try:
                with writing(self.path or "standard output"):
                    self._handle.flush()
                    os.fsync(self._handle.fileno())
            finally:
                with contextlib.suppress(OSError):
                    self._handle.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score_settings(
    model: Any,
    *,
    calibrated: bool = False,
    resize: bool = False,
    landmarks: str | os.PathLike[str] | None = None,
    detect: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What decides the rows of a score output, as :class:`ResultWriter` records it: the model's
    :meth:`~igfiqa.inference.model.QualityModel.fingerprint` and dtype, the calibration columns,
    resizing, the landmark file's SHA-256 and the detection settings."""
    from igfiqa.files import file_sha256

    return {
        "model": model.fingerprint(),
        "dtype": model.dtype,
        "calibrated": calibrated,
        "resize": resize,
        "landmarks": None if landmarks is None else file_sha256(landmarks),
        "detect": None if detect is None else dict(detect),
    }


def record_output_settings(
    output: str | os.PathLike[str],
    settings: Mapping[str, Any],
    *,
    fmt: str = "csv",
    check: bool = False,
) -> None:
    """Record ``settings`` (:func:`score_settings`) for the score output ``output`` in
    :func:`settings_record_for`; with ``check``, compare them with the recorded ones instead and
    raise :class:`ConfigError` on a difference or a missing record."""
    check_or_record_settings(
        settings_record_for(output), output, "score", {"format": fmt, **settings}, resume=check
    )


def settings_record_for(output: str | os.PathLike[str]) -> Path:
    """Where the settings of a score output are recorded: ``OUTPUT.settings.json`` beside it."""
    output = Path(output)
    return output.with_name(f"{output.name}.settings.json")


def _face_fields(face: FaceInfo | None) -> list[str]:
    if face is None:
        return [""] * len(FACE_COLUMNS)
    return [
        str(face.index), *(f"{v:.2f}" for v in face.box), f"{face.confidence:.6f}",
        f"{face.outside:.4f}",
    ]  # fmt: skip


# ----------------------------------------------------------------------------------- scoring
def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


NON_FINITE = (
    "the model gave a non-finite quality (NaN or infinity): its weights are broken (a diverged "
    "training?) or it overflows on this image"
)


def score_inputs(
    model: Any,
    items: Sequence[ScoreItem],
    writer: ResultWriter,
    *,
    batch_size: int = 64,
    resize: bool = False,
    landmarks: Mapping[str, np.ndarray] | None = None,
    landmark_source: str = "the landmark file",
    detector: Any = None,
    all_faces: bool = False,
    max_side: int = DEFAULT_MAX_SIDE,
    workers: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    every: int = 1,
    best_frames: int = 0,
    frames_out: str | os.PathLike[str] | None = None,
) -> ScoreSummary:
    """Score ``items`` with ``model`` (a :class:`~igfiqa.inference.model.QualityModel`), writing rows.

    Images are used as aligned crops, aligned with ``landmarks``, or searched for faces with
    ``detector`` (:mod:`igfiqa.detection`; the largest face, every face with ``all_faces``). Items
    whose path is in ``writer.done`` are skipped. ``on_batch(inputs_done_so_far)`` is called after
    each flushed batch (progress display; tests use it to interrupt a run). Videos (every
    ``every``-th frame; ``best_frames`` of each written into ``frames_out``) are scored frame by
    frame by :func:`igfiqa.inference.video.score_with_videos`.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if writer.calibrated and model.calibration is None:
        raise ConfigError(
            f"{model.source} has no score calibration in its model card: drop --calibrated, or "
            "export the model with `igfiqa export` (which learns one)"
        )
    if writer.expected_fnmr and model.fnmr_calibration is None:
        raise ConfigError(
            f"{model.source} has no expected-FNMR calibration in its model card: calibrate it "
            "(igfiqa calibrate, or igfiqa export --calibrate)"
        )
    if detector is not None and landmarks is not None:
        raise ConfigError("--detect and --landmarks both align the images; pass one of them")
    if (detector is not None) != writer.detect:
        raise ConfigError("the output's face columns need a detector, and a detector needs them")
    model._require_quality()
    size = model.input_size
    todo = [item for item in items if item.path not in writer.done]
    summary = ScoreSummary(skipped=len(items) - len(todo))
    template = model.alignment_template
    crop_faces = _face_finder(detector, size, all_faces, max_side, template) if detector else None
    if any(is_video(item.path) for item in items):  # frame by frame, images in runs between
        from igfiqa.inference.video import score_with_videos

        options = {
            "batch_size": batch_size, "resize": resize, "landmarks": landmarks,
            "landmark_source": landmark_source, "detector": detector, "all_faces": all_faces,
            "max_side": max_side, "workers": workers,
        }  # fmt: skip
        return score_with_videos(
            model, items, writer, score_images=score_inputs, options=options,
            crop_faces=crop_faces, every=every, best_frames=best_frames, frames_out=frames_out,
            on_batch=on_batch,
        )  # fmt: skip

    def prepare(item: ScoreItem) -> list[tuple[FaceInfo | None, np.ndarray]]:
        try:
            image = to_rgb_array(item.path, name=item.path)
            if crop_faces is not None:
                return [
                    (info, normalise_into(crop, np.empty((3, size, size), dtype=np.float32)))
                    for info, crop in crop_faces(image, item.path)
                ]
            if landmarks is not None:
                points = find_landmarks(landmarks, item)
                if points is None:
                    raise DataError(f"{item.path}: no landmarks for it in {landmark_source}")
                from igfiqa.data.align import align_face

                image = align_face(image, points, size=size, template=template)
            image = fit_to_size(image, size, resize=resize, name=item.path)
            return [(None, normalise_into(image, np.empty((3, size, size), dtype=np.float32)))]
        except IgfiqaError:
            raise
        except (OSError, ValueError, RuntimeError) as error:  # OpenCV / Pillow internals
            raise DataError(f"{item.path}: {type(error).__name__}: {_one_line(error)}") from error

    start = time.perf_counter()
    outcomes = ordered_map(prepare, todo, workers=workers, window=3 * batch_size)
    done = 0
    for group in batched(outcomes, batch_size):
        # Every face of the group's inputs in one array; an input's faces are never split.
        arrays = [a for o in group if o.error is None for _, a in o.value]
        quality = np.empty(0, np.float32)
        if arrays:
            quality = np.concatenate(
                [
                    model.forward_batch(np.stack(arrays[i : i + batch_size]))[1]
                    for i in range(0, len(arrays), batch_size)
                ]
            )
        levels = model.calibration(quality) if writer.calibrated and len(quality) else None
        fnmr = model.fnmr_calibration(quality) if writer.expected_fnmr and len(quality) else None
        rows, slot = [], 0
        for outcome in group:
            if outcome.error is not None:
                rows.append(ResultRow(outcome.item.path, error=_one_line(outcome.error)))
                summary.failed += 1
                continue
            broken = False
            for info, _ in outcome.value:
                value = float(quality[slot])
                if not math.isfinite(value):  # broken weights or a numerical overflow
                    rows.append(ResultRow(outcome.item.path, error=NON_FINITE, face=info))
                    broken, slot = True, slot + 1
                    continue
                level = None if levels is None else int(levels[slot])
                expected = None if fnmr is None else tuple(float(v[slot]) for v in fnmr)
                rows.append(
                    ResultRow(
                        outcome.item.path, value, level, face=info,
                        expected_fnmr=expected,  # type: ignore[arg-type]
                    )
                )  # fmt: skip
                slot += 1
            if broken:
                summary.failed += 1
            else:
                summary.scored += 1
            summary.faces += len(outcome.value)
        writer.write(rows)
        done += len(group)
        summary.seconds = time.perf_counter() - start
        if on_batch is not None:
            on_batch(done)
    summary.seconds = time.perf_counter() - start
    return summary


def _face_finder(
    detector: Any, size: int, all_faces: bool, max_side: int, template: np.ndarray | None = None
) -> Callable[[np.ndarray, str], list[tuple[FaceInfo, np.ndarray]]]:
    """``(image, name) -> [(face info, aligned crop)]`` with the detection policy."""
    from igfiqa.detection import find_faces

    def crop_faces(image: np.ndarray, name: str) -> list[tuple[FaceInfo, np.ndarray]]:
        found = find_faces(
            image, detector, size=size, all_faces=all_faces,
            max_side=max_side, name=name, template=template,
        )  # fmt: skip
        return [(_face_info(f.index, f.face, f.outside), f.crop) for f in found]

    return crop_faces


def _face_info(index: int, face: Any, outside: float = 0.0) -> FaceInfo:
    """The output record of a detected :class:`~igfiqa.detection.Face`."""
    box = tuple(float(v) for v in face.box)
    return FaceInfo(index, box, float(face.score), float(outside))  # type: ignore[arg-type]


__all__ = [
    "FACE_COLUMNS",
    "FaceInfo",
    "ResultRow",
    "ResultWriter",
    "ScoreItem",
    "ScoreSummary",
    "collect_inputs",
    "find_landmarks",
    "read_image_list",
    "read_landmarks",
    "record_output_settings",
    "score_inputs",
    "score_settings",
    "settings_record_for",
]
