"""Learning-rate schedules of the training recipes, as pure functions of the optimizer step.

* ``multistep`` (CR-FIQA): the base rate is multiplied by ``gamma`` once for every milestone reached.
  Milestones are 1-based epoch numbers, as in the CR-FIQA code (``lr * 0.1 ** #{m : m - 1 <= epoch}``
  with the 0-based epoch): with milestones ``[20, 28, 32]`` the rate drops at the start of the 20th,
  28th and 32nd epoch. The factor changes only at epoch boundaries.
* ``poly``: linear warm-up from 0 over ``warmup_steps``, then polynomial decay
  ``(1 - t / T) ** power`` to 0 over the remaining ``T`` steps (``t`` counted after the warm-up).

Both may also take a linear warm-up (``warmup_steps``); CR-FIQA uses none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer


def multistep_factor(
    step: int,
    steps_per_epoch: int,
    milestones: Sequence[int],
    gamma: float = 0.1,
    warmup_steps: int = 0,
) -> float:
    """``gamma ** #{m in milestones : m - 1 <= epoch}`` with ``epoch = step // steps_per_epoch``.

    During a warm-up of ``warmup_steps`` the factor is further multiplied by ``(step + 1) / warmup_steps``.
    """
    epoch = step // max(1, steps_per_epoch)
    factor = gamma ** sum(1 for m in milestones if m - 1 <= epoch)
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return float(factor)


def poly_factor(step: int, total_steps: int, power: float = 2.0, warmup_steps: int = 0) -> float:
    """Warm-up ``(step + 1) / warmup_steps`` then ``(1 - (step - W) / (total - W)) ** power``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return float((1.0 - progress) ** power)


class LRSchedule:
    """Sets every parameter group's ``lr`` to ``base_lr * factor(step)`` (one or several optimizers).

    Stateless apart from the step counter, so a checkpoint holds just ``{"step": n}`` plus the
    arguments (kept for checking on resume).
    """

    def __init__(
        self,
        optimizer: Optimizer | Sequence[Optimizer],
        *,
        kind: str,
        steps_per_epoch: int,
        total_steps: int,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        power: float = 2.0,
        warmup_steps: int = 0,
    ) -> None:
        if kind not in ("multistep", "poly"):
            raise ValueError(f"unknown schedule {kind!r}: use 'multistep' or 'poly'")
        self.optimizers = [optimizer] if isinstance(optimizer, Optimizer) else list(optimizer)
        self.kind = kind
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = int(total_steps)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.base_lrs = [float(group["lr"]) for group in self._groups()]
        self.step_count = 0
        self.apply()

    def _groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def factor(self, step: int | None = None) -> float:
        """The multiplier of the base rate at optimizer step ``step`` (default: the current one)."""
        step = self.step_count if step is None else step
        if self.kind == "multistep":
            return multistep_factor(
                step, self.steps_per_epoch, self.milestones, self.gamma, self.warmup_steps
            )
        return poly_factor(step, self.total_steps, self.power, self.warmup_steps)

    def apply(self) -> None:
        """Write the current rates into the optimizer."""
        factor = self.factor()
        for group, base in zip(self._groups(), self.base_lrs, strict=True):
            group["lr"] = base * factor

    def step(self) -> None:
        """Advance one optimizer step."""
        self.step_count += 1
        self.apply()

    def get_last_lr(self) -> list[float]:
        return [float(group["lr"]) for group in self._groups()]

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step": self.step_count,
            "base_lrs": list(self.base_lrs),
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step; the base rates come from the current config (they scale with world size)."""
        self.step_count = int(state["step"])
        self.apply()
