"""What a training run reports while it trains (rank 0 only; every other rank is silent).

* :class:`MetricsLog`: ``metrics.jsonl``, one strict-JSON record per line (an infinity as ``"inf"``,
  NaN as ``null``), flushed as written, optionally mirrored to TensorBoard; a resumed run first drops
  the records after its checkpoint's step (:func:`truncate_metrics`), so no step is logged twice.
* :class:`Speedometer`: images per second over the logging window and over the whole run.
* :class:`RunLog`: the two above, the progress bar on a terminal or, where none is shown, the text
  lines of :mod:`igfiqa.engine.textlog`; the loop calls it once per step and at each event (start,
  epoch end, verification, error, end), as arcface_torch's ``CallBackLogging`` is called.

Records (``kind``): ``start``, ``train`` (every ``logging.every_steps`` steps and at the last),
``nonfinite`` (a skipped step), ``verification`` (one per set), ``error``, ``end``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from igfiqa.config import LoggingConfig
from igfiqa.engine.run_state import RunState
from igfiqa.engine.textlog import TrainingLog
from igfiqa.errors import ConfigError, IgfiqaError
from igfiqa.files import atomic_write_text, json_safe, writing
from igfiqa.progress import ProgressBar

METRICS_FILE = "metrics.jsonl"


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the records after ``step`` (and any torn last line) from a run's ``metrics.jsonl``.

    A run killed after its last checkpoint logged steps that its resumption repeats; without this
    they would appear twice. Returns the number of lines dropped; the file is rewritten atomically.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with writing(path, "read"):
        text = path.read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and int(record.get("step", 0)) <= step
        except (ValueError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text("".join(f"{line}\n" for line in kept), path)
    return dropped


class MetricsLog:
    """``run_dir/metrics.jsonl`` opened for appending (``run_dir`` None: a log that writes nothing).

    ``resume_step``: the step a resumed run continues from; the records after it are dropped first.
    ``tensorboard``: numbers are also written as TensorBoard scalars under ``run_dir/tensorboard``.
    """

    def __init__(
        self, run_dir: Path | None, *, tensorboard: bool = False, resume_step: int | None = None
    ) -> None:
        self.path = None if run_dir is None else run_dir / METRICS_FILE
        self.handle: Any = None
        self.writer: Any = None
        if run_dir is None or self.path is None:
            return
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        with writing(self.path, "open for appending"):
            self.handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            try:
                self.writer = _summary_writer(run_dir / "tensorboard")
            except BaseException:
                self.close()
                raise

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line of strict JSON (infinities as "inf", NaN as null)."""
        if self.handle is None:
            return
        line = json.dumps(json_safe(record, infinite_as_text=True), sort_keys=True, allow_nan=False)
        with writing(self.path):
            self.handle.write(line + "\n")
            self.handle.flush()
        if self.writer is not None:
            step = int(record.get("step", 0))
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            with contextlib.suppress(OSError):  # every record was flushed when written
                handle.close()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()


def _summary_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ConfigError(
            "logging.tensorboard is on but TensorBoard is not installed: "
            "pip install 'igfiqa[tensorboard]' or --set logging.tensorboard=false"
        ) from error
    with writing(folder):
        return SummaryWriter(log_dir=str(folder))


class Speedometer:
    """Images per second over the current logging window (:meth:`lap`) and over the whole run
    (:meth:`run_rate`), from when it was made."""

    def __init__(self) -> None:
        self.start = self.window_start = time.perf_counter()
        self.window_images = self.run_images = 0
        self.last = 0.0

    def add(self, images: int) -> None:
        self.window_images += images
        self.run_images += images

    def lap(self) -> float:
        """The rate since the previous lap (kept as ``last``); starts the next window."""
        now = time.perf_counter()
        self.last = self.window_images / max(now - self.window_start, 1e-9)
        self.window_images, self.window_start = 0, now
        return self.last

    def run_rate(self) -> float:
        return self.run_images / max(time.perf_counter() - self.start, 1e-9)


class RunLog:
    """The run's reports from ``step`` (where it starts) to ``limit`` (where it stops).

    ``main``: this is rank 0 (other ranks report nothing); ``progress``: a bar is wanted (shown on a
    terminal only; where it is not, text lines go to standard error every
    ``logging.stderr_every_steps`` steps); ``resumed``: a resumed run, whose records after ``step``
    are dropped."""

    def __init__(
        self,
        run_dir: Path,
        logging: LoggingConfig,
        *,
        main: bool,
        progress: bool,
        step: int,
        limit: int,
        epochs: int,
        steps_per_epoch: int,
        resumed: bool,
    ) -> None:
        self.every = logging.every_steps
        self.limit = limit
        self.first_step = step
        self.metrics = MetricsLog(
            run_dir if main else None,
            tensorboard=logging.tensorboard,
            resume_step=step if resumed else None,
        )
        self.bar = ProgressBar(
            "train",
            limit,
            enabled=progress and main,
            done=step,
            unit="steps",
            fields={"epoch": "epoch {}", "speed": "{:.1f} img/s", "loss": "loss {:.3f}"},
        )
        # Text lines on standard error where no bar is shown: a batch job's log.
        every_line = logging.stderr_every_steps
        self.text = TrainingLog(
            every_line,
            enabled=main and not self.bar.shown and every_line > 0,
            total=limit,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            step=step,
        )
        self.speed = Speedometer()

    # -------------------------------------------------------------------------------- events
    def start(
        self, record: Mapping[str, Any], *, resumed_from: Path | None, batch: int, device: str
    ) -> None:
        """The first line; ``record`` (the ``start`` record) is written by a run from step 0."""
        if resumed_from is not None:
            self.text.resumed(resumed_from)
        else:
            self.text.start(batch=batch, device=device)
        if self.first_step == 0:
            self.metrics.write(record)

    def step(
        self,
        state: RunState,
        *,
        lr: float,
        skipped: bool,
        images: int,
        extra: Mapping[str, float],
    ) -> None:
        """After optimizer step ``state.step``: its learning rate, whether it was skipped, the images
        it took (all processes) and ``extra`` numbers for its ``train`` record."""
        self.speed.add(images)
        loss = None if skipped else state.last_metrics["loss"]
        self.text.step(state.step, loss=loss, lr=lr, images=images)
        if skipped:
            self.metrics.write(
                {
                    "kind": "nonfinite",
                    "step": state.step,
                    "epoch": state.epoch,
                    "in_a_row": state.nonfinite_in_a_row,
                    "total": state.nonfinite_total,
                }
            )
        if state.step % self.every == 0 or state.step == self.limit:
            self.metrics.write(
                {
                    "kind": "train",
                    "step": state.step,
                    "epoch": state.epoch,
                    "lr": lr,
                    "images_per_s": self.speed.lap(),
                    "nonfinite_total": state.nonfinite_total,
                    **state.last_metrics,
                    **extra,
                }
            )
        self.bar.update(
            state.step,
            epoch=state.epoch + 1,
            speed=self.speed.last,
            loss=state.last_metrics.get("loss", float("nan")),
        )

    def epoch_end(self, step: int) -> None:
        self.text.epoch_end(step)

    def verification(self, step: int, results: Mapping[str, Mapping[str, float]]) -> None:
        for name, values in results.items():
            self.metrics.write({"kind": "verification", "set": name, "step": step, **values})
        self.text.verification(step, results)

    def error(self, step: int, message: str) -> None:
        """How the run ended, if the log itself can still be written."""
        with contextlib.suppress(IgfiqaError):
            self.metrics.write({"kind": "error", "step": step, "message": message})

    def end(
        self,
        *,
        step: int,
        epoch: int,
        stopped: str,
        checkpoint: Path | None,
        images_per_second: float,
    ) -> None:
        self.text.finish(step, stopped=stopped, images_per_second=images_per_second)
        self.metrics.write(
            {
                "kind": "end",
                "step": step,
                "epoch": epoch,
                "stopped": stopped,
                "checkpoint": str(checkpoint),
                "images_per_s": images_per_second,
            }
        )

    def close(self) -> None:
        self.bar.close()
        self.metrics.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["METRICS_FILE", "MetricsLog", "RunLog", "Speedometer", "truncate_metrics"]
