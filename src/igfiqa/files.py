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
MAX_FILE_MB_LIMIT = 64 * 1024
"""The largest cap ``IGFIQA_MAX_FILE_MB`` may set (64 GiB): a whole file is read into memory."""


def mebibytes_from_env(name: str, default: int, limit_mb: float) -> int:
    """A byte cap set in MiB by the environment variable ``name`` (``default`` bytes when unset);
    anything but a number in (0, ``limit_mb``] raises :class:`ConfigError` naming the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= limit_mb:
        raise ConfigError(
            f"{name}={text!r} must be a number of MiB in (0, {limit_mb:,}]; fix or unset it"
        )
    return int(value * 1024 * 1024)


def max_file_bytes() -> int:
    """The cap on one image file: ``IGFIQA_MAX_FILE_MB`` (MiB) if set, else :data:`MAX_FILE_BYTES`."""
    return mebibytes_from_env(MAX_FILE_ENV, MAX_FILE_BYTES, MAX_FILE_MB_LIMIT)


MAX_VIDEO_BYTES = 16 * 1024**3
"""Default cap on one video file (16 GiB); ``IGFIQA_MAX_VIDEO_MB`` changes it. Videos are streamed,
so the cap bounds the time a file may take, not memory."""
MAX_VIDEO_ENV = "IGFIQA_MAX_VIDEO_MB"
MAX_VIDEO_MB_LIMIT = 1024 * 1024


def max_video_bytes() -> int:
    """The cap on one video file: ``IGFIQA_MAX_VIDEO_MB`` (MiB) if set, else :data:`MAX_VIDEO_BYTES`."""
    return mebibytes_from_env(MAX_VIDEO_ENV, MAX_VIDEO_BYTES, MAX_VIDEO_MB_LIMIT)


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


def _try_flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting: False if another holds it (True
    where the system has no flock; then the PID in the file decides)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks
        return True
    return True


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

    The holder keeps the file open under an exclusive ``flock`` for as long as it holds it, so the
    kernel itself ends the lock when the holder dies, however it dies, and two processes can never
    both hold it (no window between creating the file and writing it). :meth:`acquire` refuses
    with :class:`ConfigError` naming the holder's PID and host while the lock is held, or while
    the file names a live process of this host (or a process of another host, which cannot be
    checked); a file left by a dead process is taken over. :meth:`release` removes it. Usable as a
    context manager.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "run folder") -> None:
        self.path = Path(folder) / LOCK_FILE
        self.what = what
        self.held = False
        self._fd: int | None = None

    def _holder(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _refuse(self, holder: Mapping[str, object]) -> ConfigError:
        pid, host = holder.get("pid", "unknown"), holder.get("host")
        where = "this host" if host in (None, socket.gethostname()) else f"host {host}"
        return ConfigError(
            f"{self.path.parent} ({self.what}) is in use by another igfiqa process (PID {pid} on "
            f"{where}); wait for it to finish or use another folder. If that process is gone, "
            f"delete {self.path}"
        )

    def acquire(self) -> FolderLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(5):
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as error:  # a read-only or missing folder, no permission, a link
                raise output_error(self.path, error, "create the lock file") from None
            try:
                if not _try_flock(fd):
                    raise self._refuse(self._holder())
                try:
                    same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same_file = False
                if not same_file:  # released and removed meanwhile: lock the new file
                    os.close(fd)
                    continue
                holder = self._holder()
                pid, host = holder.get("pid"), holder.get("host")
                foreign = isinstance(pid, int) and pid != me["pid"]
                if foreign and (host != me["host"] or _process_alive(pid)):  # without flock
                    raise self._refuse(holder)
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, json.dumps(me).encode(), 0)
                    os.fsync(fd)
                except OSError as error:  # a full disk
                    raise output_error(self.path, error, "write the lock file") from None
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            self.held = True
            return self
        raise ConfigError(f"could not take the lock {self.path}; another process keeps taking it")

    def release(self) -> None:
        if self.held and self._fd is not None:
            try:
                if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                    self.path.unlink(missing_ok=True)
            except OSError:
                pass
            os.close(self._fd)
        self._fd = None
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
    "MAX_VIDEO_BYTES",
    "MAX_VIDEO_ENV",
    "MAX_VIDEO_MB_LIMIT",
    "FolderLock",
    "ensure_dir",
    "max_file_bytes",
    "max_video_bytes",
    "mebibytes_from_env",
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
def file_signature(
    path: str | os.PathLike[str], *, exclude: tuple[str | os.PathLike[str], ...] = ()
) -> str:
    """What a cache key of data read from ``path`` must change with: for a file, its resolved path,
    size, mtime and ctime; for a folder, its resolved path, the number of files and a digest of the
    relative path, size, mtime and ctime of **every** file below it, at any depth.

    The ctime (inode change time) is set by the kernel on every write, rename or replacement and
    cannot be set back by a user (``touch -d``, ``cp -p``, ``rsync -t`` restore only the mtime), so
    replacing a file under the same name always changes the signature. One ``os.scandir`` walk, no
    file opened, nothing hashed but the listing (about 0.2 s for 20,000 files on a shared 2-core
    machine). Symlinked subfolders are followed once (a link cycle is not); a subfolder that cannot
    be listed, or a file that vanished or whose link is broken, enters as such. Subfolders in
    ``exclude`` (e.g. a cache folder inside the benchmark) are left out."""
    path = Path(path).resolve()
    if not path.is_dir():
        info = path.stat()
        return f"{path}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"
    skip = set()
    for other in exclude:
        with contextlib.suppress(OSError):
            info = os.stat(other)
            skip.add((info.st_dev, info.st_ino))
    top = path.stat()
    seen = {(top.st_dev, top.st_ino)}
    digest = hashlib.blake2b(digest_size=16)
    count = 0
    stack = [("", str(path))]
    while stack:
        relative, folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            digest.update(f"{relative}/\x00unreadable {error.errno}\x00".encode())
            continue
        rows = []
        for entry in entries:
            name = f"{relative}/{entry.name}" if relative else entry.name
            try:
                info = entry.stat()  # follows links: a link enters with its target's stat
                if stat.S_ISDIR(info.st_mode):
                    ident = (info.st_dev, info.st_ino)
                    if ident not in seen and ident not in skip:
                        seen.add(ident)
                        stack.append((name, entry.path))
                    continue
            except OSError as error:  # vanished meanwhile, a broken link, no permission
                rows.append(f"{name}\x00missing {error.errno}\x00")
                continue
            rows.append(f"{name}\x00{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}\x00")
            count += 1
        digest.update("".join(rows).encode("utf-8", "surrogateescape"))
    return f"{path}/:{count} files:{digest.hexdigest()}"


def files_signature(paths: Iterator[str | os.PathLike[str]] | list[Any] | tuple[Any, ...]) -> str:
    """A digest of the absolute path, size, mtime and ctime of each of ``paths`` (in order; a path
    that does not exist or cannot be read enters as missing; a folder with its
    :func:`file_signature`): the cache key part of a list of files a reader read (e.g. every image
    of a benchmark). One ``os.stat`` per path, no file opened."""
    digest = hashlib.blake2b(digest_size=16)
    count = 0
    for item in paths:
        name = os.path.abspath(item)
        try:
            info = os.stat(name)
            if stat.S_ISDIR(info.st_mode):
                row = file_signature(name)
            else:
                row = f"{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"
        except OSError as error:
            row = f"missing {error.errno}"
        digest.update(f"{name}\x00{row}\x00".encode("utf-8", "surrogateescape"))
        count += 1
    return f"{count} files:{digest.hexdigest()}"


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


# ------------------------------------------------------------------------- one writer per output
def open_locked_output(path: str | os.PathLike[str], *, truncate: bool) -> BinaryIO:
    """``path`` opened for appending under an exclusive lock held until it is closed: one writer
    per output file. A second process is refused with :class:`ConfigError`; the lock ends with its
    holder, even a killed one (``flock``). Symbolic links are refused, not followed; ``truncate``
    empties the file once the lock is held. Errors of the file system are :class:`OutputError`."""
    target = Path(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    with writing(target, "open for writing", name_error_file=False):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, flags, 0o666)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ConfigError(
                    f"output {target} is a symbolic link: igfiqa does not write through links; "
                    "give the path of the real file"
                ) from None
            raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"output {target} is not a regular file; give a file name")
        _lock_exclusive(fd, target)
        if truncate:
            with writing(target, name_error_file=False):
                os.ftruncate(fd, 0)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def _lock_exclusive(fd: int, target: Path) -> None:
    if not _try_flock(fd):
        raise ConfigError(
            f"output {target} is being written by another igfiqa process; wait for it to finish "
            "or write to another file"
        )


# ------------------------------------------------------------------------------ settings records
SETTINGS_FORMAT = "igfiqa-output-settings"


def settings_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: was A, now B`` for every setting whose value differs between two records."""
    keys = sorted(set(recorded) | set(current))
    return [
        f"{key}: was {recorded.get(key)!r}, now {current.get(key)!r}"
        for key in keys
        if json_safe(recorded.get(key)) != json_safe(current.get(key))
    ]


def check_or_record_settings(
    record: str | os.PathLike[str],
    output: str | os.PathLike[str],
    command: str,
    settings: Mapping[str, Any],
    *,
    resume: bool,
) -> None:
    """A resumed output continues only with the settings it was started with.

    Without ``resume`` the settings are written (atomically) to ``record``. With it they are
    compared with the recorded ones: a difference, or no record (an output of another program or
    of an older igfiqa), raises :class:`ConfigError` naming the settings, so one output never mixes
    two runs."""
    record = Path(record)
    current = json_safe(dict(settings))
    if not resume:
        from igfiqa import __version__

        payload = {"format": SETTINGS_FORMAT, "command": command, "igfiqa": __version__}
        text = json.dumps({**payload, "settings": current}, indent=2, sort_keys=True)
        atomic_write_text(text + "\n", record, private=False)
        return
    try:
        data = json.loads(read_text_file(record, max_bytes=1 << 20))
        recorded = data["settings"] if data.get("format") == SETTINGS_FORMAT else None
    except (DataError, ValueError, TypeError, KeyError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict) or data.get("command") != command:
        raise ConfigError(
            f"cannot resume {output}: {record} does not record the settings of an `igfiqa "
            f"{command}` run (another program's output, or an older igfiqa's); start again with "
            "--overwrite or use a new output"
        )
    differences = settings_differences(recorded, current)
    if differences:
        raise ConfigError(
            f"cannot resume {output} with other settings than it was started with "
            f"({'; '.join(differences[:4])}); use the first run's options, or a new output"
        )


# ------------------------------------------------------------------------- files inside a folder
def safe_child(folder: Path, relative: str, *, create: bool = True) -> Path:
    """``folder / relative`` after checking that no part of it below ``folder`` is a symbolic link
    or a file where a folder is needed; missing folders are created (with ``create``). Raises
    :class:`DataError` (one item's problem) naming the part, so a write never leaves ``folder``."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise DataError(f"{relative!r} is not a name inside {folder}")
    current = folder
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise DataError(
                f"{current} is a symbolic link: igfiqa never writes through links out of {folder}"
            )
        if current.exists() and not current.is_dir():
            raise DataError(f"cannot write below {current}: it is a file, not a folder")
        if create and not current.exists():
            with writing(current, "create the folder", name_error_file=False):
                current.mkdir()
    return folder.joinpath(*parts)


def write_new_file(data: bytes, target: Path) -> bool:
    """Write ``data`` to ``target`` only if nothing is there (never replacing a file or following a
    link): the bytes go to a temporary file that is then hard-linked to the name, so the file
    appears whole or not at all. Returns False (and writes nothing) when ``target`` exists."""
    with writing(target, name_error_file=False):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        temporary = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
            try:
                os.link(temporary, target, follow_symlinks=False)
            except FileExistsError:
                return False
            except OSError as error:  # no hard links here (some network file systems)
                if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                if os.path.lexists(target):
                    return False
                os.rename(temporary, target)
            return True
        finally:
            temporary.unlink(missing_ok=True)


def save_figure(figure: Any, path: str | os.PathLike[str], **options: Any) -> Path:
    """``figure.savefig`` (matplotlib) to ``path`` atomically, in the format its suffix names: an
    interrupted write leaves the old file, and a link at ``path`` is replaced, not written through."""
    target = Path(path)
    with atomic_output(target, private=False) as temporary:
        figure.savefig(temporary, format=target.suffix.lstrip(".") or "png", **options)
    return target
