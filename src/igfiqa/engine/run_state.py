"""Where a training run stands: its step and epoch, its count of skipped (non-finite) steps and
the metrics of its last good step.

These are the run's own counters; the weights, optimizers, schedule and the method's state live in
their objects, and :class:`igfiqa.engine.checkpointer.Checkpointer` puts all of them into one
checkpoint. ``state_dict()`` gives this part's keys of that checkpoint (``step``, ``epoch``,
``nonfinite``, ``metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunState:
    """``step``: optimizer steps taken (skipped ones included); ``epoch``: the epoch being trained
    (0-based); ``nonfinite_total`` / ``nonfinite_in_a_row``: steps skipped for a non-finite loss or
    gradient, in all and since the last good one; ``last_metrics``: the last good step's metrics."""

    step: int = 0
    epoch: int = 0
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)

    def skipped(self) -> int:
        """Count a step skipped for a non-finite loss or gradient; returns the run of them."""
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        return self.nonfinite_in_a_row

    def succeeded(self) -> None:
        """A step was taken: the run of skipped steps ends."""
        self.nonfinite_in_a_row = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "nonfinite": {"total": self.nonfinite_total, "in_a_row": self.nonfinite_in_a_row},
            "metrics": dict(self.last_metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From a checkpoint dict (written by any version: ``nonfinite`` and ``metrics`` may be
        missing)."""
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        nonfinite = state.get("nonfinite") or {}
        self.nonfinite_total = int(nonfinite.get("total", 0))
        self.nonfinite_in_a_row = int(nonfinite.get("in_a_row", 0))
        self.last_metrics = {
            k: float(v) for k, v in (state.get("metrics") or {}).items() if isinstance(v, float)
        }


__all__ = ["RunState"]
