"""Scoring videos frame by frame: a row per sampled frame (per face with ``all_faces``), the best
frames written out, resumable at any frame.

:func:`score_with_videos` is what :func:`igfiqa.inference.scorer.score_inputs` hands its inputs to
when one of them is a video (:func:`igfiqa.data.video.is_video`). Inputs are scored in order: runs
of images as ``score_inputs`` scores them, each video frame by frame with the same rules. Every
``every``-th frame is sampled; each gives, like a photograph, a row per face it keeps (with a
detector) or one error row (no face, wrong size without a detector, a frame that cannot be
decoded); a video that cannot be opened gets one error row. Rows carry the frame's ``frame`` index
and ``time`` in seconds (:class:`FrameResultWriter` adds both columns; images leave them empty).

The pipeline keeps both cores busy: a thread decodes the video ahead (OpenCV releases the GIL),
:func:`~igfiqa.inference.pipeline.ordered_map` detects and aligns the frames in worker threads and
the network scores them in batches in the calling thread. Memory is bounded: the frames in flight
are capped by count and by bytes (:data:`FRAME_MEMORY`), whatever the video's length.

Resuming: video rows are keyed by ``(path, frame)``. A resumed video is read again from its start,
frames already in the output are skipped (decoded by the codec, which needs them for the next ones,
but never converted, searched or scored) and scoring continues at the first frame that has no row, so nothing is duplicated.

Best frames: with ``best_frames=K`` and ``frames_out``, the K faces of highest quality of each video
(ties: the earlier frame) are written as PNGs, once the video is finished: the aligned crop the
network scored (the model's input size), named ``<relative folder>/<video stem>_f<frame>.png``
(``_f<frame>_<face>.png`` with ``all_faces``). They are new files only (a name taken by another
file becomes ``~2``, ``~3``...; a file igfiqa wrote with the same bytes is left as it is), written
under the folder's lock. A resumed video re-decodes the frames of its best rows so that its best
frames are those of the whole video.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import io
import json
import math
import os
import queue
import threading
import time as clock
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import cv2
import numpy as np

from igfiqa.data.pixels import normalise_into
from igfiqa.data.video import VideoFrame, VideoReader, is_video
from igfiqa.errors import ConfigError, DataError, IgfiqaError
from igfiqa.files import (
    FolderLock,
    complete_lines,
    ensure_dir,
    safe_child,
    spreadsheet_unescape,
    write_new_file,
)
from igfiqa.inference.pipeline import batched, default_workers, ordered_map
from igfiqa.inference.preprocess import fit_to_size
from igfiqa.inference.scorer import (
    NON_FINITE,
    ResultRow,
    ResultWriter,
    ScoreItem,
    ScoreSummary,
)

T = TypeVar("T")

FRAME_COLUMNS = ["frame", "time"]
"""Columns that a run with a video input adds after ``path``."""

FRAME_MEMORY = 256 << 20
"""Most bytes of decoded frames in flight at once (read ahead and queued for detection); frames
larger than this allows are held one per worker thread and three more."""

PREFETCH_FRAMES = 8
"""Frames the decoding thread reads ahead of the detection workers."""


@dataclass(frozen=True)
class FrameRow(ResultRow):
    """A :class:`~igfiqa.inference.scorer.ResultRow` of a video: the frame's ``index`` (None for
    a row about the whole video) and ``time`` in seconds."""

    frame: int | None = None
    time: float | None = None


@dataclass
class VideoSummary(ScoreSummary):
    """:class:`~igfiqa.inference.scorer.ScoreSummary` with the videos' frames: ``scored`` and
    ``failed`` count inputs (a video fails when any of its rows is an error), ``frames`` the
    sampled frames scored, ``frame_errors`` their error rows, ``frames_skipped`` those already in
    a resumed output."""

    videos: int = 0
    frames: int = 0
    frame_errors: int = 0
    frames_skipped: int = 0
    best_frames_written: int = 0

    @property
    def frames_per_second(self) -> float:
        return (self.frames + self.frame_errors) / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: ScoreSummary) -> None:
        self.scored += other.scored
        self.failed += other.failed
        self.faces += other.faces
        self.skipped += other.skipped


# ----------------------------------------------------------------------------------- output
def _time_text(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.3f}"


class FrameResultWriter(ResultWriter):
    """A :class:`~igfiqa.inference.scorer.ResultWriter` whose rows also have ``frame`` and
    ``time`` (after ``path``; empty for images), for runs with a video input.

    With ``resume``, :attr:`done` holds the inputs finished (images, and videos with a row about
    the whole video), :attr:`frames_done` the frames of each video already in the output and
    :attr:`frame_scores` their ``(quality, frame, face)`` (for the best frames).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.frames_done: dict[str, set[int]] = {}
        self.frame_scores: dict[str, list[tuple[float, int, int]]] = {}
        super().__init__(*args, **kwargs)
        self._frame_columns()

    def _frame_columns(self) -> None:
        if "frame" not in self.columns:
            self.columns[1:1] = FRAME_COLUMNS

    def _write_header(self) -> None:
        self._frame_columns()
        super()._write_header()

    def _read_existing(self) -> None:
        self._frame_columns()
        super()._read_existing()
        assert self.path is not None
        text = complete_lines(self.path).decode("utf-8", errors="surrogateescape")
        whole: set[str] = set()
        if self.format == "csv":
            rows = list(csv.reader(io.StringIO(text)))[1:]
            at = {name: self.columns.index(name) for name in ("frame", "quality", "error")}
            face_at = self.columns.index("face") if "face" in self.columns else None
            for number, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) != len(self.columns):
                    raise ConfigError(
                        f"cannot resume {self.path}: row {number} has {len(row)} fields, not "
                        f"{len(self.columns)}; start again with --overwrite or use a new output"
                    )
                path = spreadsheet_unescape(row[0])
                face = row[face_at] if face_at is not None else ""
                self._note(path, row[at["frame"]], row[at["quality"]], row[at["error"]], face,
                           whole, number)  # fmt: skip
        else:
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if "frame" not in record:
                    raise ConfigError(
                        f"cannot resume {self.path}: line {number} has no frame field (an output "
                        "of a run without videos); start again with --overwrite or use a new output"
                    )
                frame = record.get("frame")
                quality = record.get("quality")
                self._note(
                    record["path"],
                    "" if frame is None else str(frame),
                    "" if quality is None else str(quality),
                    record.get("error") or "",
                    "" if record.get("face") is None else str(record.get("face")),
                    whole,
                    number,
                )
        self.done = whole

    def _note(
        self, path: str, frame: str, quality: str, error: str, face: str, whole: set[str], line: int
    ) -> None:
        """Record one existing row: a finished input, or a video's frame (and its score)."""
        if not frame:
            whole.add(path)
            return
        try:
            index = int(frame)
        except ValueError:
            raise ConfigError(
                f"cannot resume {self.path}: line {line} has frame {frame!r}, not a frame index; "
                "start again with --overwrite or use a new output"
            ) from None
        self.frames_done.setdefault(path, set()).add(index)
        with contextlib.suppress(ValueError):
            value = float(quality)
            if not error and math.isfinite(value):
                face_index = int(face) if face else 0
                self.frame_scores.setdefault(path, []).append((value, index, face_index))

    def _write(self, rows: Any) -> None:
        # The parent formats each row (every column it knows); the frame columns go in after path.
        rows = list(rows)
        handle, buffer = self._handle, io.StringIO()
        self._handle = buffer
        try:
            super()._write(rows)
        finally:
            self._handle = handle
        text = buffer.getvalue()
        if self.format == "csv":
            parsed = list(csv.reader(io.StringIO(text)))
            writer = csv.writer(handle, lineterminator="\n")
            for fields, row in zip(parsed, rows, strict=True):
                frame = getattr(row, "frame", None)
                extra = [
                    "" if frame is None else str(frame),
                    _time_text(getattr(row, "time", None)),
                ]
                writer.writerow([fields[0], *extra, *fields[1:]])
        else:
            lines = [line for line in text.split("\n") if line]
            for line, row in zip(lines, rows, strict=True):
                record = json.loads(line)
                stamp = getattr(row, "time", None)
                ordered = {
                    "path": record.pop("path"),
                    "frame": getattr(row, "frame", None),
                    "time": None if stamp is None or not math.isfinite(stamp) else round(stamp, 3),
                    **record,
                }
                handle.write(json.dumps(ordered) + "\n")
        handle.flush()


# ----------------------------------------------------------------------------------- scoring
def score_with_videos(
    model: Any,
    items: Sequence[ScoreItem],
    writer: ResultWriter,
    *,
    score_images: Callable[..., ScoreSummary],
    options: Mapping[str, Any],
    crop_faces: Callable[[np.ndarray, str], list[tuple[Any, np.ndarray]]] | None,
    every: int = 1,
    best_frames: int = 0,
    frames_out: str | os.PathLike[str] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> VideoSummary:
    """Score ``items`` (images and videos) in order into ``writer`` (a :class:`FrameResultWriter`).

    Runs of images go to ``score_images`` (``score_inputs``) with ``options``; videos are scored
    here with ``crop_faces`` (``(image, name) -> [(face info, aligned crop)]``, None without a
    detector) and the ``options`` ``batch_size``, ``resize`` and ``workers``. See the module
    docstring for ``every``, ``best_frames`` and ``frames_out``.
    """
    if every < 1:
        raise ConfigError(f"--every must be >= 1, got {every}")
    if best_frames < 0:
        raise ConfigError(f"--best-frames must be >= 0, got {best_frames}")
    if bool(best_frames) != (frames_out is not None):
        raise ConfigError("--best-frames K and --frames-out DIR go together: give both or neither")
    if not isinstance(writer, FrameResultWriter):
        raise ConfigError(
            "an input is a video: its rows need the frame and time columns of an "
            "igfiqa.inference.video.FrameResultWriter (write with it instead of a ResultWriter)"
        )
    if options.get("landmarks") is not None:
        raise ConfigError(
            "--landmarks names the landmarks of image files; the frames of a video are aligned "
            "with --detect"
        )
    summary = VideoSummary()
    start = clock.perf_counter()
    out = None if frames_out is None else ensure_dir(frames_out, "--frames-out")
    lock = FolderLock(out, "best-frames folder") if out is not None else contextlib.nullcontext()
    with lock:
        scorer = _VideoScorer(
            model, writer, options, crop_faces, every, best_frames, out, summary, on_batch, start
        )
        for run in _runs(items):
            todo = sum(1 for item in run if item.path not in writer.done)  # as the CLI counts
            if is_video(run[0].path):
                scorer.score(run[0])
                scorer.done += todo
                scorer.progress()
                continue
            offset = scorer.done

            def shifted(done: int, offset: int = offset) -> None:
                scorer.done = offset + done
                scorer.progress()

            summary.add(score_images(model, run, writer, **options, on_batch=shifted))
            scorer.done = offset + todo
    summary.seconds = clock.perf_counter() - start
    return summary


def _runs(items: Sequence[ScoreItem]) -> Iterator[list[ScoreItem]]:
    """``items`` in order as runs: each video alone, consecutive images together."""
    run: list[ScoreItem] = []
    for item in items:
        if is_video(item.path):
            if run:
                yield run
                run = []
            yield [item]
        else:
            run.append(item)
    if run:
        yield run


class _Best:
    """The ``k`` faces of highest quality of one video (ties: the earlier frame, face)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.heap: list[tuple[float, int, int, np.ndarray]] = []

    def offer(self, quality: float, frame: int, face: int, crop: np.ndarray | None) -> None:
        if self.k <= 0 or crop is None or not math.isfinite(quality):
            return
        entry = (quality, -frame, -face, crop)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, entry)
        elif entry[:3] > self.heap[0][:3]:
            heapq.heapreplace(self.heap, entry)

    def ranked(self) -> list[tuple[float, int, int, np.ndarray]]:
        return sorted(self.heap, key=lambda e: e[:3], reverse=True)


class _VideoScorer:
    """Scores one video at a time into the writer (state shared across the videos of a run)."""

    def __init__(
        self,
        model: Any,
        writer: FrameResultWriter,
        options: Mapping[str, Any],
        crop_faces: Callable[[np.ndarray, str], list[tuple[Any, np.ndarray]]] | None,
        every: int,
        best_frames: int,
        out: Path | None,
        summary: VideoSummary,
        on_batch: Callable[[int], None] | None,
        start: float,
    ) -> None:
        self.model, self.writer = model, writer
        self.batch_size = int(options.get("batch_size", 64))
        self.resize = bool(options.get("resize", False))
        self.all_faces = bool(options.get("all_faces", False))
        self.workers = options.get("workers")
        self.crop_faces = crop_faces
        self.every, self.best_frames, self.out = every, best_frames, out
        self.summary, self.on_batch, self.start = summary, on_batch, start
        self.size = int(model.input_size)
        self.done = 0  # inputs finished, for on_batch
        self.used_names: set[str] = set()

    def progress(self) -> None:
        self.summary.seconds = clock.perf_counter() - self.start
        if self.on_batch is not None:
            self.on_batch(self.done)

    # ------------------------------------------------------------------ one video
    def score(self, item: ScoreItem) -> None:
        writer, summary = self.writer, self.summary
        path = item.path
        if path in writer.done:  # a row about the whole video: finished
            summary.skipped += 1
            return
        summary.videos += 1
        done_frames = writer.frames_done.get(path, set())
        replay = self._replay(path) if self.best_frames else set()
        try:
            reader = VideoReader(path, name=path)
        except IgfiqaError as error:
            writer.write([FrameRow(path, error=_one_line(error))])
            summary.failed += 1
            return
        best = _Best(self.best_frames)
        failed = False
        frame_bytes = max(reader.width * reader.height * 3, 1)
        workers = default_workers() if self.workers is None else int(self.workers)
        # Decoded frames held at once: those queued for the workers (window) and read ahead
        # (depth), within FRAME_MEMORY; frames larger than that allows: one per worker, three more.
        budget = FRAME_MEMORY // frame_bytes
        window = max(workers + 1, min(3 * self.batch_size, budget * 3 // 4))
        depth = max(1, min(PREFETCH_FRAMES, budget // 4))
        wanted = None
        if done_frames:
            summary.frames_skipped += sum(1 for i in done_frames if i % self.every == 0)

            def wanted(index: int) -> bool:
                return index not in done_frames or index in replay

        # The decoding thread owns the reader from here on and closes it when it stops.
        frames = _prefetch(_frames(reader, self.every, wanted), depth)
        outcomes = ordered_map(self._preparer(path), frames, workers=self.workers, window=window)
        with contextlib.closing(frames), contextlib.closing(outcomes):
            for group in batched(outcomes, self.batch_size):
                failed |= self._write_group(path, group, done_frames, best)
                self.progress()
        if self.out is not None:
            failed |= not self._write_best(item, best)
        if failed:
            summary.failed += 1
        else:
            summary.scored += 1

    def _replay(self, path: str) -> set[int]:
        """Frames of a resumed video whose rows are among its ``best_frames`` best: decoded again
        so that their crops can be written."""
        scores = sorted(
            self.writer.frame_scores.get(path, []), key=lambda s: (s[0], -s[1], -s[2]), reverse=True
        )
        return {frame for _, frame, _ in scores[: self.best_frames]}

    def _preparer(self, path: str) -> Callable[[VideoFrame], list[tuple[Any, Any, np.ndarray]]]:
        size, crop_faces, keep = self.size, self.crop_faces, self.best_frames > 0

        def prepare(frame: VideoFrame) -> list[tuple[Any, Any, np.ndarray]]:
            if frame.error is not None or frame.image is None:
                raise DataError(frame.error or f"{path}: frame {frame.index} cannot be decoded")
            name = f"{path} (frame {frame.index})"
            try:
                image = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
                if crop_faces is not None:
                    found = crop_faces(image, name)
                else:
                    found = [(None, fit_to_size(image, size, resize=self.resize, name=name))]
                return [
                    (info, crop if keep else None,
                     normalise_into(crop, np.empty((3, size, size), dtype=np.float32)))
                    for info, crop in found
                ]  # fmt: skip
            except IgfiqaError:
                raise
            except (OSError, ValueError, RuntimeError, cv2.error) as error:
                raise DataError(f"{name}: {type(error).__name__}: {_one_line(error)}") from error

        return prepare

    def _write_group(self, path: str, group: list[Any], done_frames: set[int], best: _Best) -> bool:
        """Score one batch of frames and write their rows; True if any row is an error."""
        model, writer, summary = self.model, self.writer, self.summary
        arrays = [a for o in group if o.error is None for _, _, a in o.value]
        quality = np.empty(0, np.float32)
        if arrays:
            quality = np.concatenate(
                [
                    model.forward_batch(np.stack(arrays[i : i + self.batch_size]))[1]
                    for i in range(0, len(arrays), self.batch_size)
                ]
            )
        levels = model.calibration(quality) if writer.calibrated and len(quality) else None
        fnmr = model.fnmr_calibration(quality) if writer.expected_fnmr and len(quality) else None
        rows: list[FrameRow] = []
        failed, slot = False, 0
        for outcome in group:
            frame: VideoFrame = outcome.item
            replayed = frame.index in done_frames
            if frame.index < 0:  # the video has no decodable frame: one row about all of it
                rows.append(FrameRow(path, error=frame.error))
                failed = True
                continue
            if outcome.error is not None:
                if not replayed:
                    rows.append(
                        FrameRow(path, error=_one_line(outcome.error), frame=frame.index,
                                 time=frame.time)
                    )  # fmt: skip
                    summary.frame_errors += 1
                    failed = True
                continue
            frame_rows: list[FrameRow] = []
            for number, (info, crop, _) in enumerate(outcome.value):
                value = float(quality[slot])
                face = number if info is None else int(info.index)
                if not math.isfinite(value):  # broken weights or a numerical overflow
                    frame_rows.append(
                        FrameRow(path, error=NON_FINITE, face=info, frame=frame.index,
                                 time=frame.time)
                    )  # fmt: skip
                    failed = True
                else:
                    best.offer(value, frame.index, face, crop)
                    level = None if levels is None else int(levels[slot])
                    expected = None if fnmr is None else tuple(float(v[slot]) for v in fnmr)
                    frame_rows.append(
                        FrameRow(path, value, level, face=info,
                                 expected_fnmr=expected,  # type: ignore[arg-type]
                                 frame=frame.index, time=frame.time)
                    )  # fmt: skip
                slot += 1
            if not replayed:
                rows += frame_rows
                summary.frames += 1
                summary.faces += len(frame_rows)
        if rows:
            writer.write(rows)
        return failed

    # ------------------------------------------------------------------ best frames
    def _write_best(self, item: ScoreItem, best: _Best) -> bool:
        """Write the video's best faces into :attr:`out`; False (and an error row) on a problem."""
        assert self.out is not None
        names: list[str] = []
        try:
            for _, negative_frame, negative_face, crop in best.ranked():
                face = -negative_face if self.crop_faces is not None else None
                name = best_frame_name(item.relative, -negative_frame, face, self.all_faces)
                ok, encoded = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise DataError(f"{item.path}: could not encode frame {-negative_frame} as PNG")
                names.append(self._write_new(name, encoded.tobytes()))
        except DataError as error:
            self.writer.write([FrameRow(item.path, error=f"best frames: {_one_line(error)}")])
            return False
        self.summary.best_frames_written += len(names)
        return True

    def _write_new(self, name: str, data: bytes) -> str:
        """Write ``data`` as ``name`` below the output folder (or the next free ``~N`` name); a
        file already there with the same bytes (a resumed run's) counts as written."""
        assert self.out is not None
        path = PurePosixPath(name)
        number = 1
        while True:
            candidate = name if number == 1 else str(path.with_name(f"{path.stem}~{number}.png"))
            number += 1
            if candidate in self.used_names:
                continue
            target = safe_child(self.out, candidate)
            if write_new_file(data, target):
                self.used_names.add(candidate)
                return candidate
            with contextlib.suppress(OSError):
                if target.is_file() and not target.is_symlink() and target.read_bytes() == data:
                    self.used_names.add(candidate)
                    return candidate


def best_frame_name(relative: str, frame: int, face: int | None, all_faces: bool) -> str:
    """``<folder>/<stem>_f<frame>.png`` below the best-frames folder for the video named
    ``relative`` below its input (``_f<frame>_<face>.png`` with ``all_faces``); parent references
    and absolute parts are dropped."""
    parts = [
        p for p in PurePosixPath(relative.replace("\\", "/")).parts if p not in ("..", "/", ".")
    ]
    video = PurePosixPath(*parts) if parts else PurePosixPath("video")
    stem = f"{video.stem}_f{frame}" + (f"_{face}" if all_faces and face is not None else "")
    return str(video.with_name(f"{stem}.png"))


# ----------------------------------------------------------------------------------- helpers
def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _frames(
    reader: VideoReader, every: int, wanted: Callable[[int], bool] | None
) -> Iterator[VideoFrame]:
    """The reader's frames; a video without a decodable frame gives one frame of index -1 with
    the error. Closes the reader when it ends or is closed."""
    try:
        yield from reader.frames(every, wanted)
    except IgfiqaError as error:
        yield VideoFrame(-1, math.nan, error=_one_line(error), final=True)
    finally:
        reader.close()


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _prefetch(source: Iterator[T], depth: int) -> Iterator[T]:
    """``source``'s items, produced by a thread up to ``depth`` ahead of the consumer (decoding a
    video overlaps the work on its frames). An error of ``source`` is raised in the consumer;
    stopping early (an error, Ctrl-C) stops the thread at its next item."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for value in source:
                if not put(value):
                    return
            put(_END)
        except BaseException as error:  # handed to the consumer
            put(_Raised(error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    thread = threading.Thread(target=produce, name="igfiqa-video-decode", daemon=True)
    thread.start()
    try:
        while True:
            value = slots.get()
            if value is _END:
                return
            if isinstance(value, _Raised):
                raise value.error
            yield value
    finally:
        stop.set()
        thread.join(timeout=10)


__all__ = [
    "FRAME_COLUMNS",
    "FrameResultWriter",
    "FrameRow",
    "VideoSummary",
    "best_frame_name",
    "score_with_videos",
]
