"""Video files, frame by frame: the frames of a video streamed in order, never the whole video.

:class:`VideoReader` opens a regular file of at most :func:`max_video_bytes` with OpenCV's FFmpeg
backend and yields :class:`VideoFrame` records (index, time in seconds, BGR pixels) one at a time:
memory holds one frame, whatever the video's length. The rules match the image decoder's
(:mod:`igfiqa.data.decode`):

- only regular files are read (a FIFO, device or directory is refused without being opened by the
  decoder), read through the descriptor that was checked, so the file cannot be swapped meanwhile;
  FFmpeg may read local files only (no network protocols, no playlists that fetch other files);
- the frame size the container announces must be within ``max_pixels`` (default
  :data:`~igfiqa.data.decode.MAX_PIXELS`), checked before any frame is decoded, and every decoded
  frame is checked again;
- a file OpenCV cannot open, or that has no decodable frame, raises :class:`ImageDecodeError` (the
  caller writes one error row); a frame that cannot be decoded midway is a :class:`VideoFrame` with
  its ``error`` set, and a stream that ends well before the frame count its header announces ends
  with such a frame (a truncated or damaged file).

Times come from the container's timestamps where it has them, else ``index / fps``.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from igfiqa.data.decode import MAX_PIXELS
from igfiqa.errors import ConfigError, ImageDecodeError
from igfiqa.files import MAX_VIDEO_BYTES, MAX_VIDEO_ENV, max_video_bytes

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
    | {".ogv", ".mts", ".m2ts", ".mxf"}
)
"""File name endings (lower case) that scoring treats as videos."""


MISSING_FRAMES_TOLERANCE = 2
"""A stream may end this many frames (or 1 %) short of the count its header announces without being
reported: some containers announce an estimate from duration x frame rate."""

# FFmpeg through OpenCV: local files only (no http, no HLS segment fetching) and no log lines of
# its own on stderr (a frame that cannot be decoded becomes an error row instead). setdefault: a
# user's own setting wins. Read by OpenCV when it opens a capture.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "protocol_whitelist;file")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a video file name ending (:data:`VIDEO_EXTENSIONS`)."""
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


def find_videos(folder: Path) -> list[Path]:
    """Every entry with a video file name under ``folder`` (recursive, hidden files skipped),
    sorted by its path relative to it; broken links and FIFOs are included (each gets an error row),
    as :func:`igfiqa.inference.preprocess.find_images` does for images."""
    found = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in VIDEO_EXTENSIONS
        and not path.name.startswith(".")
        and (path.is_symlink() or not path.is_dir())
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


@dataclass(frozen=True)
class VideoFrame:
    """One frame: ``index`` (0-based, in presentation order), ``time`` in seconds (NaN when the
    video says nothing about it) and ``image`` (BGR uint8, as OpenCV decodes it), or ``error`` when
    it could not be decoded; ``final`` marks the frame after which reading stopped early."""

    index: int
    time: float
    image: np.ndarray | None = None
    error: str | None = None
    final: bool = False


class VideoReader:
    """A video file opened for reading (see the module docstring); use as a context manager.

    ``width``, ``height``, ``fps`` (0 when unknown) and ``frame_count`` (announced, 0 when unknown)
    come from the container; :meth:`frames` streams the frames.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        max_pixels: int = MAX_PIXELS,
        max_bytes: int | None = None,
    ) -> None:
        self.name = name or os.fspath(path)
        self.max_pixels = int(max_pixels)
        self._fd: int | None = None
        self._capture: cv2.VideoCapture | None = None
        self._fd = _open_regular(
            path, self.name, max_video_bytes() if max_bytes is None else max_bytes
        )
        try:
            # The checked descriptor, not the name: the file read is the file checked, and no
            # name is ever taken as an image-sequence pattern or a protocol (file names with % or
            # "://" are just names).
            source = f"/proc/self/fd/{self._fd}"
            if not os.path.exists(source):  # no /proc (not Linux): the name, checked above
                source = os.fspath(path)
            capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
            self._capture = capture
            if not capture.isOpened():
                raise ImageDecodeError(
                    f"{self.name}: not a video OpenCV/FFmpeg can read (damaged or truncated, not a "
                    "video, or a codec this build lacks)"
                )
            self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = float(capture.get(cv2.CAP_PROP_FPS))
            self.fps = fps if math.isfinite(fps) and 0 < fps < 10_000 else 0.0
            count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.frame_count = int(count) if math.isfinite(count) and count > 0 else 0
            if self.width <= 0 or self.height <= 0:
                raise ImageDecodeError(f"{self.name}: the video announces no frame size")
            self._check_size(self.width, self.height, "the video announces frames of")
        except BaseException:
            self.close()
            raise

    def _check_size(self, width: int, height: int, what: str) -> None:
        if width * height > self.max_pixels:
            raise ImageDecodeError(
                f"{self.name}: {what} {width}x{height} = {width * height:,} pixels, more than the "
                f"limit of {self.max_pixels:,}; refused before decoding (downscale the video first, "
                "e.g. ffmpeg -vf scale=1920:-2)"
            )

    def frames(
        self, every: int = 1, wanted: Callable[[int], bool] | None = None
    ) -> Iterator[VideoFrame]:
        """Frames ``0, every, 2 * every, ...`` for which ``wanted(index)`` (default: all) holds, in
        order; the others are only grabbed (decoded by the codec, which needs them for the next
        frames, never converted to BGR pixels).

        The first frame that cannot be read at all raises :class:`ImageDecodeError` (a video
        without any decodable frame); later a frame that cannot be decoded comes with its
        ``error``, and a stream that ends more than :data:`MISSING_FRAMES_TOLERANCE` frames (or 1 %)
        short of the announced count ends with a ``final`` frame saying so.
        """
        if every < 1:
            raise ConfigError(f"--every must be >= 1, got {every}")
        capture = self._capture
        assert capture is not None, "the reader is closed"
        index = 0
        while True:
            if not capture.grab():
                if index == 0:
                    raise ImageDecodeError(
                        f"{self.name}: no decodable frame (a damaged file, or a codec this build "
                        "lacks)"
                    )
                missing = self.frame_count - index
                if missing > max(MISSING_FRAMES_TOLERANCE, self.frame_count // 100):
                    yield VideoFrame(
                        index,
                        self._time(index),
                        error=f"{self.name}: frame {index} cannot be read; the video ends there "
                        f"although it announces {self.frame_count} frames (a truncated or damaged "
                        "file); the rest of it was not scored",
                        final=True,
                    )
                return
            if index % every == 0 and (wanted is None or wanted(index)):
                time = self._time(index)
                ok, image = capture.retrieve()
                if not ok or image is None:
                    yield VideoFrame(
                        index, time, error=f"{self.name}: frame {index} cannot be decoded"
                    )
                else:
                    yield self._checked(index, time, image)
            index += 1

    def _checked(self, index: int, time: float, image: np.ndarray) -> VideoFrame:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            return VideoFrame(
                index,
                time,
                error=f"{self.name}: frame {index} decodes to an unexpected layout "
                f"{image.shape} {image.dtype}",
            )
        height, width = image.shape[:2]
        if width * height > self.max_pixels:
            return VideoFrame(
                index,
                time,
                error=f"{self.name}: frame {index} is {width}x{height}, more than the limit of "
                f"{self.max_pixels:,} pixels",
            )
        return VideoFrame(index, time, image)

    def _time(self, index: int) -> float:
        """The current frame's time: the container's timestamp, else ``index / fps``."""
        assert self._capture is not None
        msec = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        if math.isfinite(msec) and (msec > 0 or (index == 0 and msec == 0)):
            return msec / 1000.0
        return index / self.fps if self.fps > 0 else math.nan

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a reader dropped without close (a generator never finished)
        with contextlib.suppress(Exception):
            self.close()


def _open_regular(path: str | os.PathLike[str], label: str, max_bytes: int) -> int:
    """A read-only descriptor of a regular file of at most ``max_bytes``; ImageDecodeError else."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageDecodeError(f"{label}: file not found (or a broken symbolic link)") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{label}: is a directory, not a file") from None
    except OSError as error:
        raise ImageDecodeError(
            f"{label}: cannot open the file ({error.strerror or error})"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, device or socket"
            raise ImageDecodeError(f"{label}: not a regular file ({what}); it was not read")
        if info.st_size == 0:
            raise ImageDecodeError(f"{label}: the file is empty (0 bytes)")
        if info.st_size > max_bytes:
            raise ImageDecodeError(
                f"{label}: {info.st_size:,} bytes, more than the {max_bytes:,}-byte limit on one "
                f"video; it was not read (if it is genuine, raise {MAX_VIDEO_ENV})"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = [
    "MAX_VIDEO_BYTES",
    "MAX_VIDEO_ENV",
    "VIDEO_EXTENSIONS",
    "VideoFrame",
    "VideoReader",
    "find_videos",
    "is_video",
    "max_video_bytes",
]
