"""Stopping a run at a step boundary when SIGTERM or SIGINT arrives (preemption, Ctrl-C).

:class:`StopFlag` only records the signal; the trainer asks it after each optimizer step, saves a
checkpoint and returns. A second Ctrl-C stops at once (``KeyboardInterrupt``). A signal that the
process ignores (``SIG_IGN``: ``igfiqa train &`` in a shell script) is left alone, and the previous
handlers are put back at the end of the run.
"""

from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """``signum``: the first SIGTERM/SIGINT received while installed (None: none arrived)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        """Take SIGTERM and SIGINT (main thread only: Python delivers signals there)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:  # e.g. `igfiqa train &` in a script: not ours to take
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum

    def restore(self) -> None:
        """Put back the handlers found by :meth:`install` (the default where none was set)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def __enter__(self) -> StopFlag:
        self.install()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()


__all__ = ["StopFlag"]
