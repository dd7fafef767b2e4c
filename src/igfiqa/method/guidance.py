"""IG-FIQA's intra-class variance guidance (docs/method.md, "Intra-class variance guidance").

For every class c a running statistic ``v_c`` approximates its intra-class variance: the EMA of the
per-sample distance to the class prototype ``d_i = 1 - CCS_i`` (``statistic="distance"``, the
paper's text) or of ``CCS_i`` itself (``statistic="similarity"``, the official pseudo-code, which is
the mirror image). The quality loss of a sample of class c is weighted by
``w_c = 1 + clip(z_c, -1, 0)`` with ``z_c = (v_c - mean(v)) / (std(v) + 1e-6)``: classes at or above
the mean get 1, the weight falls linearly to 0 at one standard deviation below the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from igfiqa import collective
from igfiqa.errors import CheckpointError, ConfigError

STATISTICS = ("distance", "similarity")
INITS = ("constant", "first")
STD_EPS = 1e-6
STATE_FORMAT = "igfiqa.guidance"
STATE_VERSION = 1


@dataclass
class GuidanceConfig:
    """Options of the intra-class variance guidance.

    Attributes:
        enabled: ``False`` = all quality-loss weights 1 (CR-FIQA).
        statistic: ``distance`` (EMA of 1 - CCS, the paper) or ``similarity`` (EMA of CCS, the
            official pseudo-code).
        init: ``constant`` (every class starts at distance 0 = CCS 1) or ``first`` (each class
            starts at its first observed value).
        momentum_start, momentum_end: the EMA momentum of epoch e of E is
            ``start + (end - start) * e / E``.
    """

    enabled: bool = True
    statistic: str = "distance"
    init: str = "constant"
    momentum_start: float = 0.9
    momentum_end: float = 1.0

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ConfigError(
                f"guidance.statistic must be one of {STATISTICS}, got {self.statistic!r}"
            )
        if self.init not in INITS:
            raise ConfigError(f"guidance.init must be one of {INITS}, got {self.init!r}")
        for name in ("momentum_start", "momentum_end"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"guidance.{name} must be in [0, 1], got {value}")

    def build(self, num_classes: int) -> IntraClassGuidance | None:
        """The guidance object for ``num_classes`` classes, or None when disabled."""
        if not self.enabled:
            return None
        return IntraClassGuidance(
            num_classes,
            statistic=self.statistic,
            init=self.init,
            momentum_start=self.momentum_start,
            momentum_end=self.momentum_end,
        )


class IntraClassGuidance:
    """Per-class EMA of the distance (or similarity) to the prototype, and the loss weights.

    Args:
        num_classes: C (>= 2).
        statistic: ``distance`` or ``similarity`` (see :class:`GuidanceConfig`).
        init: ``constant`` or ``first``.
        momentum_start, momentum_end: the per-epoch momentum schedule (see :meth:`set_epoch`).
        device: where the state lives; :meth:`update` moves it to the device of its inputs.
        distributed: gather the (label, value) pairs of all processes before each update;
            ``None`` = whenever ``torch.distributed`` is initialised.
        process_group: the group to gather over (default: the world).
    """

    def __init__(
        self,
        num_classes: int,
        statistic: str = "distance",
        init: str = "constant",
        momentum_start: float = 0.9,
        momentum_end: float = 1.0,
        *,
        device: torch.device | str | None = None,
        distributed: bool | None = None,
        process_group: Any = None,
    ) -> None:
        GuidanceConfig(
            statistic=statistic, init=init, momentum_start=momentum_start, momentum_end=momentum_end
        )
        if int(num_classes) < 2:
            raise ConfigError(f"guidance needs at least 2 classes, got {num_classes}")
        self.num_classes = int(num_classes)
        self.statistic = statistic
        self.init = init
        self.momentum_start = float(momentum_start)
        self.momentum_end = float(momentum_end)
        self.distributed = distributed
        self.process_group = process_group
        self.epoch = 0
        self.num_epochs = 1
        self.momentum = self.momentum_start
        initial = 0.0 if statistic == "distance" else 1.0
        self._values = torch.full((self.num_classes,), initial, dtype=torch.float32, device=device)
        self._seen = torch.zeros(self.num_classes, dtype=torch.bool, device=device)
        self._class_weights: Tensor | None = None

    # ----------------------------------------------------------------------------------- state
    @property
    def values(self) -> Tensor:
        """The per-class statistic v, (C,) float32 (a view; do not modify)."""
        return self._values

    @property
    def seen(self) -> Tensor:
        """(C,) bool: which classes have been updated at least once."""
        return self._seen

    @property
    def device(self) -> torch.device:
        return self._values.device

    def to(self, device: torch.device | str) -> IntraClassGuidance:
        """Move the state to ``device`` (in place); returns self."""
        self._values = self._values.to(device)
        self._seen = self._seen.to(device)
        if self._class_weights is not None:
            self._class_weights = self._class_weights.to(device)
        return self

    def set_epoch(self, epoch: int, num_epochs: int) -> float:
        """Set the momentum of epoch ``epoch`` (0-based) of ``num_epochs``; returns it.

        ``alpha_e = momentum_start + (momentum_end - momentum_start) * e / E``, i.e. 0.9 + 0.1 e/E by
        default: it rises from 0.9 towards, and never reaches, 1.0.
        """
        if int(num_epochs) < 1:
            raise ConfigError(f"num_epochs must be >= 1, got {num_epochs}")
        if not 0 <= int(epoch) < int(num_epochs):
            raise ConfigError(f"epoch must be in [0, {int(num_epochs) - 1}], got {epoch}")
        self.epoch, self.num_epochs = int(epoch), int(num_epochs)
        span = self.momentum_end - self.momentum_start
        self.momentum = self.momentum_start + span * self.epoch / self.num_epochs
        return self.momentum

    # ----------------------------------------------------------------------------------- update
    def sample_statistic(self, ccs: Tensor) -> Tensor:
        """The per-sample quantity averaged into v: ``1 - CCS`` (distance) or ``CCS``."""
        ccs = ccs.detach().float()
        return 1.0 - ccs if self.statistic == "distance" else ccs

    @torch.no_grad()
    def update(self, labels: Tensor, ccs: Tensor) -> None:
        """One EMA step ``v_c <- alpha v_c + (1 - alpha) mean_{i: y_i = c} d_i`` for each class c in
        the batch (gathered over all processes when distributed); other classes are unchanged.

        With ``init="first"`` a class seen for the first time takes its batch mean directly.
        """
        labels = labels.detach().reshape(-1)
        ccs = ccs.detach().reshape(-1)
        if labels.shape != ccs.shape:
            raise ValueError(
                f"labels and ccs must have the same length, got {labels.numel()} and {ccs.numel()}"
            )
        if ccs.device != self._values.device:
            self.to(ccs.device)
        labels = labels.to(self._values.device, torch.long)
        values = self.sample_statistic(ccs)
        if self._use_distributed():
            labels, values = _all_gather_pairs(labels, values, self.process_group)
        # Dense O(C) scatter: no host synchronisation, one pass however often a class repeats.
        sums = torch.zeros_like(self._values).index_add_(0, labels, values)
        counts = torch.zeros_like(self._values).index_add_(0, labels, torch.ones_like(values))
        present = counts > 0
        means = sums / counts.clamp(min=1.0)
        alpha = self.momentum
        updated = alpha * self._values + (1.0 - alpha) * means
        if self.init == "first":
            updated = torch.where(self._seen, updated, means)
        self._values = torch.where(present, updated, self._values)
        self._seen |= present
        self._class_weights = None

    def _use_distributed(self) -> bool:
        if self.distributed is not None:
            return bool(self.distributed)
        return collective.active()

    # ----------------------------------------------------------------------------------- weights
    def class_weights(self) -> Tensor:
        """(C,) weights ``1 + clip(z, -1, 0)`` from the current state.

        Mean and unbiased std run over all C classes; with ``init="first"`` over the classes seen
        so far (an unseen class has no value yet and gets weight 1).
        """
        if self._class_weights is None:
            self._class_weights = self._compute_class_weights()
        return self._class_weights

    def _compute_class_weights(self) -> Tensor:
        values = self._values
        if self.init == "first":
            mask = self._seen
            count = mask.sum().clamp(min=1).to(values.dtype)
            mean = (values * mask).sum() / count
            var = (((values - mean) * mask) ** 2).sum() / (count - 1).clamp(min=1)
            std = var.sqrt()
        else:
            mean = values.mean()
            std = values.std(unbiased=True)
        z = (values - mean) / (std + STD_EPS)
        weights = 1.0 + z.clamp(-1.0, 0.0)
        if self.init == "first":
            weights = torch.where(self._seen, weights, torch.ones_like(weights))
        return weights

    def weights(self, labels: Tensor) -> Tensor:
        """(B,) quality-loss weights ``w_{y_i}`` of the samples' classes."""
        class_weights = self.class_weights()
        return class_weights[labels.detach().reshape(-1).to(class_weights.device, torch.long)]

    def zero_weight_share(self) -> Tensor:
        """Share of all C classes whose weight is 0 (a 0-d tensor)."""
        return (self.class_weights() <= 0.0).float().mean()

    # ----------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors/str/numbers, loadable with ``torch.load(weights_only=True)``."""
        return {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "num_classes": self.num_classes,
            "statistic": self.statistic,
            "init": self.init,
            "momentum_start": self.momentum_start,
            "momentum_end": self.momentum_end,
            "epoch": self.epoch,
            "num_epochs": self.num_epochs,
            "momentum": self.momentum,
            "values": self._values.detach().cpu().clone(),
            "seen": self._seen.detach().cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; raises :class:`CheckpointError` naming what does not fit."""
        if not isinstance(state, dict):
            raise CheckpointError(f"guidance state must be a dict, got {type(state).__name__}")
        required = ("num_classes", "statistic", "init", "values", "seen", "momentum")
        missing = [key for key in required if key not in state]
        if missing:
            raise CheckpointError(f"guidance state lacks {missing}; is this a guidance state?")
        if state.get("format", STATE_FORMAT) != STATE_FORMAT:
            raise CheckpointError(f"guidance state has format {state['format']!r}")
        if int(state["num_classes"]) != self.num_classes:
            raise CheckpointError(
                f"guidance state has num_classes={state['num_classes']} but this run has "
                f"{self.num_classes} classes: the checkpoint belongs to another training set"
            )
        for key in ("statistic", "init"):
            if state[key] != getattr(self, key):
                raise CheckpointError(
                    f"guidance state was saved with {key}={state[key]!r} but this run uses "
                    f"{key}={getattr(self, key)!r}: set guidance.{key} to match or start afresh"
                )
        values, seen = state["values"], state["seen"]
        if not isinstance(values, Tensor) or tuple(values.shape) != (self.num_classes,):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise CheckpointError(
                f"guidance 'values' must be a ({self.num_classes},) tensor, got {shape}"
            )
        if not isinstance(seen, Tensor) or tuple(seen.shape) != (self.num_classes,):
            raise CheckpointError(f"guidance 'seen' must be a ({self.num_classes},) tensor")
        if not torch.isfinite(values).all():
            raise CheckpointError("guidance 'values' contains NaN or infinite entries")
        momentum = float(state["momentum"])
        if not 0.0 <= momentum <= 1.0:
            raise CheckpointError(f"guidance 'momentum' must be in [0, 1], got {momentum}")
        device = self._values.device
        self._values = values.detach().to(device, torch.float32).clone()
        self._seen = seen.detach().to(device, torch.bool).clone()
        self.momentum = momentum
        self.epoch = int(state.get("epoch", 0))
        self.num_epochs = int(state.get("num_epochs", 1))
        self.momentum_start = float(state.get("momentum_start", self.momentum_start))
        self.momentum_end = float(state.get("momentum_end", self.momentum_end))
        self._class_weights = None


def _all_gather_pairs(labels: Tensor, values: Tensor, group: Any) -> tuple[Tensor, Tensor]:
    """Concatenate the (label, value) pairs of every process, in rank order (local batches may
    differ in size)."""
    packed = torch.stack([labels.to(torch.float64), values.to(torch.float64)], dim=1)
    rows = collective.all_gather_rows(packed, group)
    return rows[:, 0].to(torch.long), rows[:, 1].to(values.dtype)


__all__ = ["INITS", "STATISTICS", "GuidanceConfig", "IntraClassGuidance"]
