"""Plain text lines on standard error for training that no one watches on a terminal.

Under a batch scheduler (Slurm, a ``nohup`` job, a CI log) standard error is a file, so the progress
bar is not shown. :class:`TrainingLog` then writes one greppable line every ``every`` optimizer
steps, and at the start (or resume), at each epoch's end, after each verification and at the end::

    2026-12-06 08:00:00 start step 0/5000 epochs 20 steps/epoch 250 batch 512 device cuda:0
    2026-12-06 08:00:41 step 50/5000 epoch 1/20 loss 45.1234 lr 0.1 img/s 631.2 eta 1:07:52
    2026-12-06 08:03:20 end of epoch 1/20 step 250/5000 loss 44.9876 img/s 640.0 time 0:03:20 eta 1:03:20
    2026-12-06 08:03:31 verification synthetic_val step 250 num_images 400 fnmr_at_fmr 0.1234 pauc_20 0.0123
    2026-12-06 09:06:40 finished completed step 5000/5000 time 1:06:40 img/s 640.2

A step line's loss is the mean over the steps since the previous line (steps skipped for a
non-finite loss are left out and counted as ``skipped N``), its rate the images per second over
the same window (all processes' images), its ETA the remaining steps at this process's mean time per
step so far. Every value is a Python number the trainer already holds: the log adds no device
synchronisation and changes no numbers of the training. A disabled log is silent.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def clock(seconds: float) -> str:
    """``H:MM:SS`` (hours not wrapped at a day; ``-`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _number(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


class _Window:
    """Loss sum, counted steps, skipped steps and images since ``start`` (a perf_counter time)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.loss = 0.0
        self.counted = self.skipped = self.images = 0

    def add(self, loss: float | None, images: int) -> None:
        self.images += images
        if loss is None or not math.isfinite(loss):
            self.skipped += 1
        else:
            self.loss += loss
            self.counted += 1

    def mean_loss(self) -> float:
        return self.loss / self.counted if self.counted else float("nan")

    def rate(self, now: float) -> float:
        return self.images / max(now - self.start, 1e-9)


class TrainingLog:
    """Text lines about a training run on standard error (see the module doc).

    ``every``: a step line every this many steps (0: none; the trainer then disables the whole
    log); ``enabled`` false: no line at all (another rank than 0, or a progress bar shown instead). ``total``: the step the run stops at;
    ``step``: the step it starts from (a resumed run's)."""

    def __init__(
        self,
        every: int,
        *,
        enabled: bool,
        total: int,
        epochs: int,
        steps_per_epoch: int,
        step: int = 0,
    ) -> None:
        self.every = int(every)
        self.enabled = bool(enabled)
        self.total = int(total)
        self.epochs = int(epochs)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.first_step = int(step)
        self.started = time.perf_counter()
        self.window = _Window()
        self.epoch = _Window()

    # ------------------------------------------------------------------------------------ output
    def write(self, text: str) -> None:
        """One line, time-stamped, on standard error (as it is now: a test may have replaced it);
        a closed or broken standard error never stops the training."""
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            print(f"{stamp} {text}", file=sys.stderr, flush=True)

    def _eta(self, step: int, now: float) -> str:
        done = step - self.first_step
        if done <= 0:
            return "-"
        return clock((now - self.started) / done * max(self.total - step, 0))

    def _epoch_of(self, step: int) -> int:
        """The 1-based epoch that ``step`` (1-based, just finished) belongs to."""
        return (max(step, 1) - 1) // self.steps_per_epoch + 1

    # ------------------------------------------------------------------------------------ events
    def start(self, *, batch: int, device: str) -> None:
        self.write(
            f"start step {self.first_step}/{self.total} epochs {self.epochs} "
            f"steps/epoch {self.steps_per_epoch} batch {batch} device {device}"
        )

    def resumed(self, checkpoint: str | Path) -> None:
        step = self.first_step
        self.write(
            f"resumed step {step}/{self.total} epoch {step // self.steps_per_epoch + 1}/"
            f"{self.epochs} from {checkpoint}"
        )

    def step(self, step: int, *, loss: float | None, lr: float, images: int) -> None:
        """After optimizer step ``step`` (1-based): ``loss`` (None for a skipped step), the learning
        rate it used and the images it took (all processes)."""
        if not self.enabled:
            return
        self.window.add(loss, images)
        self.epoch.add(loss, images)
        if not self.every or step % self.every:
            return
        now = time.perf_counter()
        window = self.window
        skipped = f" skipped {window.skipped}" if window.skipped else ""
        self.write(
            f"step {step}/{self.total} epoch {self._epoch_of(step)}/{self.epochs} "
            f"loss {_number(window.mean_loss())} lr {lr:.6g} img/s {window.rate(now):.1f} "
            f"eta {self._eta(step, now)}{skipped}"
        )
        window.reset()

    def epoch_end(self, step: int) -> None:
        """At the end of an epoch (``step`` is its last): the epoch's mean loss, rate and time."""
        if not self.enabled:
            return
        now = time.perf_counter()
        epoch = self.epoch
        skipped = f" skipped {epoch.skipped}" if epoch.skipped else ""
        self.write(
            f"end of epoch {self._epoch_of(step)}/{self.epochs} step {step}/{self.total} "
            f"loss {_number(epoch.mean_loss())} img/s {epoch.rate(now):.1f} "
            f"time {clock(now - epoch.start)} eta {self._eta(step, now)}{skipped}"
        )
        epoch.reset()

    def verification(self, step: int, results: Mapping[str, Mapping[str, float]]) -> None:
        for name, values in results.items():
            shown = " ".join(f"{key} {float(value):.6g}" for key, value in values.items())
            self.write(f"verification {name} step {step} {shown}".rstrip())

    def finish(self, step: int, *, stopped: str, images_per_second: float) -> None:
        self.write(
            f"finished {stopped} step {step}/{self.total} "
            f"time {clock(time.perf_counter() - self.started)} img/s {images_per_second:.1f}"
        )


__all__ = ["TrainingLog", "clock"]
