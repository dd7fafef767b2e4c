"""Files and output folders: size-capped reads, folders created where asked (refused with a clear
message where they cannot be) and locked so that one process at a time writes into a run folder, and
atomic writes (a crash leaves the old file or the new one, never half of one)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import math
import os
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from igfiqa.errors import ConfigError, DataError, OutputError


def ensure_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Create the folder ``path`` (and its parents) unless it exists; returns it.

    Raises :class:`ConfigError` naming ``option`` and the path when it is a file (or anything else
    that is not a folder) or cannot be created (no permission, read-only file system, a parent that
    is a file).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder} exists and is not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{option} {folder}: cannot create this folder ({reason})") from error
    return folder


_OUTPUT_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "no permission: write into a folder you own",
    errno.EPERM: "not permitted: write into a folder you own",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder is in the way of the file",
    errno.ENAMETOOLONG: "the path is too long",
}


def output_error(path: str | os.PathLike[str], error: OSError, what: str = "write") -> OutputError:
    """An :class:`OutputError` of one line naming ``path``, the cause and what to do."""
    reason = error.strerror or str(error) or type(error).__name__
    hint = _OUTPUT_HINTS.get(error.errno or -1, "check the path and the disk")
    return OutputError(f"{path}: cannot {what} ({reason}); {hint}")


@contextlib.contextmanager
def writing(
    path: str | os.PathLike[str], what: str = "write", *, name_error_file: bool = True
) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside the block into :func:`output_error`, naming the file
    the error names (with ``name_error_file``) or else ``path``."""
    try:
        yield
    except OSError as error:
        named = (name_error_file and getattr(error, "filename", None)) or path
        raise output_error(named, error, what) from error


MAX_FILE_BYTES = 256 * 1024 * 1024
"""Default cap on one input image file; ``IGFIQA_MAX_FILE_MB`` in the environment changes it."""
MAX_FILE_ENV = "IGFIQA_MAX_FILE_MB"


def max_file_bytes() -> int:
    """The cap on one image file: ``IGFIQA_MAX_FILE_MB`` (MiB) if set, else :data:`MAX_FILE_BYTES`."""
    text = os.environ.get(MAX_FILE_ENV, "").strip()
    if not text:
        return MAX_FILE_BYTES
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{MAX_FILE_ENV}={text!r} must be a positive number of MiB")
    return int(value * 1024 * 1024)


def read_regular_file(
    path: str | os.PathLike[str], label: str | None = None, max_bytes: int | None = None
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (default :func:`max_file_bytes`);
    anything else raises :class:`DataError`.

    FIFOs, devices, sockets and directories are refused without reading (a FIFO would block, a
    device such as ``/dev/zero`` never ends); the size is checked before reading and again while
    reading, so a file that grows meanwhile cannot exceed the cap either.
    """
    label = label or str(path)
    max_bytes = max_file_bytes() if max_bytes is None else int(max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DataError(f"{label}: file not found (or a broken symbolic link)") from None
    except IsADirectoryError:
        raise DataError(f"{label}: is a directory, not a file") from None
    except OSError as error:
        raise DataError(f"{label}: cannot open the file ({error.strerror or error})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{label}: is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise DataError(
                f"{label}: not a regular file (a FIFO, device or socket); it was not read"
            )
        if info.st_size > max_bytes:
            raise DataError(
                f"{label}: {info.st_size:,} bytes, more than the {max_bytes:,}-byte limit on one "
                f"input file; it was not read (if it is genuine, raise {MAX_FILE_ENV})"
            )
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise DataError(f"{label}: grew past the {max_bytes:,}-byte limit while being read")
        return b"".join(chunks)
    except OSError as error:
        raise DataError(f"{label}: cannot read the file ({error.strerror or error})") from None
    finally:
        os.close(fd)


MAX_TABLE_BYTES = 4 * 1024 * 1024 * 1024
"""Cap for benchmark tables and verification files (IJB-C's pair list alone is ~300 MB)."""


def read_text_file(
    path: str | os.PathLike[str],
    label: str | None = None,
    max_bytes: int | None = None,
    encoding: str = "utf-8",
) -> str:
    """A regular text file (see :func:`read_regular_file`) decoded as ``encoding``; a file that is
    not valid text raises :class:`DataError` naming it and the byte."""
    label = label or str(path)
    data = read_regular_file(path, label, max_bytes)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{label}: not {encoding.upper()} text (byte {error.start}); is it the right file?"
        ) from None


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet evaluate a CSV cell as a formula."""


def spreadsheet_safe(text: str) -> str:
    """A text cell that spreadsheets show as text: a leading ``'`` before a formula start
    (OWASP's CSV-injection rule). :func:`spreadsheet_unescape` undoes it."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def spreadsheet_unescape(text: str) -> str:
    """The text :func:`spreadsheet_safe` was given."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


LOCK_FILE = ".igfiqa.lock"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class FolderLock:
    """One writer per run folder: ``folder/.igfiqa.lock`` holds the writer's PID and host.

    :meth:`acquire` creates the file exclusively. If it exists, a lock of a live process (or of
    another host, which cannot be checked) refuses with :class:`ConfigError` naming PID and host;
    a lock left by a dead process on this host is taken over. :meth:`release` removes it. Usable as
    a context manager.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "run folder") -> None:
        self.path = Path(folder) / LOCK_FILE
        self.what = what
        self.held = False

    def _holder(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> FolderLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                pid, host = holder.get("pid"), holder.get("host")
                same_host = host == me["host"]
                if isinstance(pid, int) and (not same_host or _process_alive(pid)):
                    where = "this host" if same_host else f"host {host}"
                    raise ConfigError(
                        f"{self.path.parent} is in use by another igfiqa process (PID {pid} on "
                        f"{where}); wait for it to finish or use another folder. If that process "
                        f"is gone, delete {self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its writer is dead (or it is unreadable)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            self.held = True
            return self
        raise ConfigError(f"could not take the lock {self.path}; another process keeps taking it")

    def release(self) -> None:
        if self.held:
            if self._holder().get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = [
    "LOCK_FILE",
    "MAX_FILE_BYTES",
    "MAX_FILE_ENV",
    "MAX_TABLE_BYTES",
    "FolderLock",
    "ensure_dir",
    "max_file_bytes",
    "output_error",
    "read_regular_file",
    "read_text_file",
    "spreadsheet_safe",
    "spreadsheet_unescape",
    "writing",
]


# ------------------------------------------------------------------------- appended tables
def complete_lines(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an append-only table up to its last newline; a last line cut off mid-write
    (an interrupted run) is truncated from the file too, so appending continues cleanly."""
    path = Path(path)
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)
        data = data[:end]
    return data


# ------------------------------------------------------------------------------ atomic writes
@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, private: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (for writers that want a file name); on
    success it is fsynced and renamed over ``path`` and the folder entry fsynced, on failure
    removed, and the old ``path`` is untouched. ``private`` keeps the temporary file's mode 0600;
    otherwise the file gets the usual 0666 & ~umask. An :class:`OSError` (a full disk, a read-only
    folder) becomes an :class:`OutputError` naming ``path``."""
    target = Path(path)
    with writing(target, name_error_file=False):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    temporary = Path(tmp_name)
    try:
        with writing(target, name_error_file=False):
            yield temporary
            if not private:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(temporary, 0o666 & ~umask)
            with temporary.open("rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], None], *, private: bool = True
) -> Path:
    """Write ``path`` atomically (:func:`atomic_output`): ``write`` fills the temporary file, so a
    crash or preemption leaves either the old or the new file, never half of one."""
    with atomic_output(path, private=private) as temporary, temporary.open("wb") as handle:
        write(handle)
    return Path(path)


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an atomic write left when its process was killed.

    Call only while holding the folder's lock (no other writer can be mid-write)."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for entry in folder.glob(".*.tmp"):
            if entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def atomic_write_bytes(data: bytes, path: str | os.PathLike[str], *, private: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data), private=private)


def atomic_write_text(text: str, path: str | os.PathLike[str], *, private: bool = True) -> Path:
    """Write a UTF-8 text file atomically (:func:`atomic_write`)."""
    return atomic_write_bytes(text.encode("utf-8"), path, private=private)


def fsync_dir(folder: Path) -> None:
    """Flush a directory entry to disk (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------- JSON
def json_safe(value: Any, *, infinite_as_text: bool = False) -> Any:
    """A JSON-serialisable copy of ``value``: mappings (keys as str), lists and tuples -> lists,
    numpy / torch scalars and arrays -> Python values, NaN -> None, infinities -> None (or
    ``"inf"`` / ``"-inf"`` with ``infinite_as_text``), dataclasses -> dicts, any other object -> str."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, infinite_as_text=infinite_as_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, infinite_as_text=infinite_as_text) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if infinite_as_text and not math.isnan(value):
            return "inf" if value > 0 else "-inf"
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value), infinite_as_text=infinite_as_text)
    if hasattr(value, "tolist"):  # numpy / torch scalars and small arrays
        return json_safe(value.tolist(), infinite_as_text=infinite_as_text)
    return str(value)


# ------------------------------------------------------------------------------------ cache keys
def file_signature(path: str | os.PathLike[str]) -> str:
    """Path, size and mtime of a file, or of every file in a directory (sorted): what a cache key
    of data read from it must change with."""
    path = Path(path).resolve()
    if path.is_dir():
        parts = [str(path)]
        for child in sorted(path.iterdir()):
            if child.is_file():
                info = child.stat()
                parts.append(f"{child.name}:{info.st_size}:{info.st_mtime_ns}")
        return "|".join(parts)
    info = path.stat()
    return f"{path}:{info.st_size}:{info.st_mtime_ns}"


def file_sha256(path: str | os.PathLike[str], *, chunk: int = 1 << 22) -> str:
    """The SHA-256 of a file's bytes, as ``sha256sum`` prints it."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_digest(*parts: str | bytes) -> str:
    """A 32-hex-digit BLAKE2b digest of ``parts`` (separated, so ("ab", "c") != ("a", "bc"))."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()
