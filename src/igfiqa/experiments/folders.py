"""The experiment's output folder: one writer at a time, run folders cleared only when they hold
nothing but an igfiqa training run's files, never through a symbolic link, and the settings record
a resumed experiment must match."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from igfiqa.errors import ConfigError
from igfiqa.files import LOCK_FILE, FolderLock, ensure_dir, settings_differences, writing

TENSORBOARD_DIR = "tensorboard"
_CHECKPOINT_FILE = re.compile(r"step_\d{8,}\.pt")
_CHECKPOINT_TEMP = re.compile(r"\.step_\d{8,}\.pt\..+\.tmp")
_EVENTS_FILE = re.compile(r"events\.out\.tfevents\..+")


def _temp_of(name: str, targets: Collection[str]) -> bool:
    """Whether ``name`` is the temporary file an atomic write of one of ``targets`` leaves
    (``.<target>.<random>.tmp``, :func:`igfiqa.files.atomic_output`)."""
    return any(re.fullmatch(rf"\.{re.escape(t)}\..+\.tmp", name) for t in targets)


def _written_by_training(parts: tuple[str, ...], is_dir: bool, extra: Collection[str]) -> bool:
    """Whether the entry ``parts`` (relative to a run folder) is one that an igfiqa training run
    writes there (config, metrics, lock, checkpoints, TensorBoard events, their atomic writes'
    temporary files), or one of the ``extra`` top-level files of the caller."""
    from igfiqa.engine.trainer import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE

    top = {CONFIG_FILE, METRICS_FILE, *extra}
    if len(parts) == 1:
        name = parts[0]
        if is_dir:
            return name in (CHECKPOINT_DIR, TENSORBOARD_DIR)
        return name in top or name == LOCK_FILE or _temp_of(name, top)
    if len(parts) == 2 and not is_dir:
        folder, name = parts
        if folder == CHECKPOINT_DIR:
            return bool(_CHECKPOINT_FILE.fullmatch(name) or _CHECKPOINT_TEMP.fullmatch(name))
        if folder == TENSORBOARD_DIR:
            return bool(_EVENTS_FILE.fullmatch(name))
    return False


def _run_folder_entries(
    run_dir: Path, extra: Collection[str]
) -> tuple[list[Path], list[Path], list[Path]]:
    """Files and folders (deepest first) of a run folder that igfiqa wrote, and the entries it
    did not (symbolic links, FIFOs and unknown names included), without following any link."""
    files: list[Path] = []
    folders: list[Path] = []
    foreign: list[Path] = []

    def visit(folder: Path, parts: tuple[str, ...]) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path, here = Path(entry.path), (*parts, entry.name)
                is_dir = entry.is_dir(follow_symlinks=False)
                ours = (
                    not entry.is_symlink()
                    and (is_dir or entry.is_file(follow_symlinks=False))
                    and _written_by_training(here, is_dir, extra)
                )
                if not ours:
                    foreign.append(path)
                elif is_dir:
                    visit(path, here)
                    folders.append(path)
                else:
                    files.append(path)

    with writing(run_dir, "read"):
        visit(run_dir, ())
    return files, folders, foreign


def refuse_symlinks(root: Path, path: Path, option: str = "--out") -> None:
    """Refuse (:class:`ConfigError`) when ``path`` or a folder between it and ``root`` is a
    symbolic link: igfiqa never writes or deletes through a link out of its output folder."""
    relative = Path(path).relative_to(root)
    current = Path(root)
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            raise ConfigError(
                f"{current} is a symbolic link; igfiqa does not write or delete through a link "
                f"in its output folder: remove the link or choose another {option}"
            )


def check_run_folder(
    run_dir: Path, root: Path, *, extra: Collection[str] = (), option: str = "--out"
) -> bool:
    """Check that ``run_dir`` (inside the output folder ``root``) may be deleted to train afresh;
    returns whether it exists. Refuses (:class:`ConfigError`, nothing deleted) a symbolic link on
    the way, something that is not a folder, a folder holding anything an igfiqa training run
    does not write (named in the message), and a folder whose lock a live process holds."""
    run_dir = Path(run_dir)
    refuse_symlinks(root, run_dir, option)
    if not os.path.lexists(run_dir):
        return False
    if not run_dir.is_dir():
        raise ConfigError(
            f"{run_dir} exists and is not a folder; igfiqa trains a run there: move it elsewhere "
            f"or choose another {option}"
        )
    _, _, foreign = _run_folder_entries(run_dir, extra)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise ConfigError(
            f"{foreign[0]}{more} was not written by igfiqa; it is in the run folder {run_dir} "
            f"that igfiqa would delete to train afresh: move it elsewhere or choose another "
            f"{option}"
        )
    lock_file = run_dir / LOCK_FILE
    if lock_file.exists():  # a live writer refuses; a dead one's lock is taken over and removed
        with writing(lock_file, "replace the stale lock file"), FolderLock(run_dir):
            pass
    return True


def clear_run_folder(
    run_dir: Path, root: Path, *, extra: Collection[str] = (), option: str = "--out"
) -> None:
    """Delete an earlier igfiqa run folder to train afresh, after :func:`check_run_folder`:
    while holding its lock, only the files igfiqa wrote are removed, one by one (never a whole
    tree), so a file that appears meanwhile stops it with an error instead of being deleted."""
    run_dir = Path(run_dir)
    if not check_run_folder(run_dir, root, extra=extra, option=option):
        return
    with writing(run_dir, "remove an earlier run's file"):
        lock = FolderLock(run_dir).acquire()
        try:
            files, folders, foreign = _run_folder_entries(run_dir, extra)
            if foreign:
                raise ConfigError(f"{foreign[0]} appeared in {run_dir} while igfiqa cleared it")
            for path in files:
                if path.name != LOCK_FILE or path.parent != run_dir:
                    path.unlink()
            for folder in folders:
                folder.rmdir()
        finally:
            lock.release()
        run_dir.rmdir()


def take_over_stale_lock(run_dir: Path) -> None:
    """Refuse (:class:`ConfigError`) a run folder whose lock a live process holds; a dead one's
    lock is taken over and removed."""
    if (run_dir / LOCK_FILE).exists():
        with FolderLock(run_dir):
            pass


@contextmanager
def holding(out_dir: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Create the output folder and hold its lock (``.igfiqa.lock``) while inside: a second
    experiment (or training) there is refused before any work."""
    out = ensure_dir(out_dir, "--out")
    lock = FolderLock(out, what).acquire()
    try:
        yield out
    finally:
        lock.release()


def _version() -> str:
    from igfiqa import __version__

    return __version__


def _difference_text(differences: list[str], options: dict[str, str]) -> str:
    """``files.settings_differences`` lines with the command-line option of each setting."""
    named = []
    for line in differences:
        key, _, rest = line.partition(":")
        named.append(f"{key} ({options[key]}):{rest}" if key in options else line)
    return "; ".join(named)


def resume_settings(
    out: Path, file: str, kind: str, record: dict[str, Any], *, options: dict[str, str]
) -> bool:
    """Whether ``out`` holds an experiment of ``kind`` to continue: its recorded settings
    (``out/file``) must equal ``record`` (else :class:`ConfigError` lists the differences, in one
    line, before any work). False when nothing is recorded there."""
    path = out / file
    refuse_symlinks(out, path)
    if not path.exists():
        return False
    remedy = (
        "rerun with the same options, or choose another --out"
        if kind == "study"
        else "resume with the same options, or drop --resume to start afresh there (its runs "
        "are deleted), or choose another --out"
    )
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"cannot resume from {path} ({type(error).__name__}): {remedy}") from None
    if isinstance(stored, dict) and "kind" not in stored and kind == "study":
        stored = {"kind": f"igfiqa {kind}", "settings": stored}  # a study of igfiqa <= 0.1.0
    if not (
        isinstance(stored, dict)
        and stored.get("kind") == f"igfiqa {kind}"
        and isinstance(stored.get("settings"), dict)
    ):
        raise ConfigError(f"{path} is not the settings file of an igfiqa {kind}: {remedy}")
    differences = settings_differences(stored["settings"], record)
    if differences:
        raise ConfigError(
            f"{out} holds a {kind} with other settings: "
            f"{_difference_text(differences, options)}; {remedy}"
        )
    return True


def write_settings(out: Path, file: str, kind: str, record: dict[str, Any]) -> None:
    """Record the settings a later run must share to resume this one."""
    from igfiqa.experiments.report import write_json

    data = {"kind": f"igfiqa {kind}", "igfiqa_version": _version(), "settings": record}
    write_json(out / file, data, private=False)
