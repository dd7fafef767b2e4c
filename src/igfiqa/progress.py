"""Progress bars for long commands: rich, on standard error, only for a person watching.

Standard output carries data (CSV, JSON Lines, JSON) that may be piped into another program, so a
bar never goes there. A bar shows only when it is asked for and standard error is a terminal;
otherwise every method is a no-op, so callers need no conditions of their own.
"""

from __future__ import annotations

import sys
from typing import Any


def stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgressBar:
    """``label [bar] done/total rate elapsed ETA`` on standard error; ``fields`` are extra columns
    given as ``{name: format}`` (e.g. ``{"loss": "loss {:.3f}"}``) and updated by :meth:`update`."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        enabled: bool = True,
        done: int = 0,
        unit: str = "images",
        fields: dict[str, str] | None = None,
    ) -> None:
        self.fields = dict(fields or {})
        self._progress: Any = None
        if not enabled or not stderr_is_terminal():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        extra = [TextColumn(f"{{task.fields[{name}]}}") for name in self.fields]
        self._progress = Progress(
            TextColumn(f"[bold]{label}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(f"{{task.fields[rate]}} {unit}/s"),
            *extra,
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._progress.start()
        blank = dict.fromkeys(self.fields, "")
        self._task = self._progress.add_task(label, total=total, completed=done, rate="-", **blank)

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def update(self, done: int, total: int | None = None, **values: Any) -> None:
        """Set the count done (and the total, and extra fields' values)."""
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        speed = task.speed
        shown = {name: self.fields[name].format(value) for name, value in values.items()}
        rate = f"{speed:.1f}" if speed else "-"
        extra = {"total": total} if total is not None else {}
        self._progress.update(self._task, completed=done, rate=rate, **extra, **shown)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ProgressBar", "stderr_is_terminal"]
