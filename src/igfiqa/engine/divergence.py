"""Telling a diverged run from a bad step.

A step whose loss or gradient is not finite is skipped (the trainer undoes it); too many in a row,
or weights that are themselves no longer finite, mean the run diverged: it stops with
:class:`NonFiniteLossError` and no checkpoint of such weights is written, so the newest checkpoint is
always one a run can continue from. This module finds the non-finite tensors and words the errors;
combining the answer over processes is the trainer's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from igfiqa.errors import IgfiqaError


class NonFiniteLossError(IgfiqaError):
    """The run diverged: too many optimizer steps in a row had a non-finite loss or gradient, or
    the weights themselves became non-finite (NaN or infinity). No checkpoint of such weights is
    written; the last one written stays the newest."""


def training_tensors(
    model: nn.Module,
    head: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    *,
    with_state: bool,
) -> list[tuple[str, torch.Tensor]]:
    """The weights of ``model`` and ``head`` (``with_state``: also the model's buffers and the
    optimizers' momentum), named; only non-empty floating-point tensors."""
    named: list[tuple[str, Any]] = [
        *((f"model.{n}", t) for n, t in model.named_parameters()),
        *((f"head.{n}", t) for n, t in head.named_parameters()),
    ]
    if with_state:
        named += [(f"model.{n}", t) for n, t in model.named_buffers()]
        for part, optimizer in optimizers.items():
            for index, state in enumerate(optimizer.state.values()):
                named += [(f"optimizer.{part}.{index}.{k}", v) for k, v in state.items()]
    return [
        (n, t)
        for n, t in named
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0
    ]


def nonfinite_names(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """The names of the tensors holding a NaN or an infinity, in order.

    One min/max pass per tensor on its device (NaN propagates through both, an infinity is the
    minimum or the maximum; no copy, no change to any value) and one synchronisation."""
    named = list(named)
    if not named:
        return []
    with torch.no_grad():
        ends = torch.stack([torch.stack(torch.aminmax(t.detach())).float() for _, t in named])
        finite = torch.isfinite(ends).all(dim=1)
        if bool(finite.all()):
            return []
        flags = finite.tolist()
    return [name for (name, _), ok in zip(named, flags, strict=True) if not ok]


def diverged_error(
    *, step: int, where: str, latest: Path | None, lr: float, scaled_lr: float, global_batch: int
) -> NonFiniteLossError:
    """The weights are no longer finite (first in ``where``); ``latest``: the newest checkpoint."""
    todo = (
        f"{latest} is the last good checkpoint: resume it with a lower optim.lr or start again"
        if latest
        else "no checkpoint was written: start again with a lower optim.lr"
    )
    return NonFiniteLossError(
        f"step {step}: the weights are no longer finite (NaN or infinity, first in "
        f"{where}): the run diverged, most likely because the learning rate is too high "
        f"(optim.lr={lr:g}, {scaled_lr:g} for the global batch of {global_batch}); these "
        f"weights were not saved, {todo}"
    )


def too_many_skipped_error(
    *, in_a_row: int, step: int, loss: float, limit: int, checkpoints: Path
) -> NonFiniteLossError:
    """``in_a_row`` steps (``train.max_nonfinite_in_a_row`` = ``limit``) were skipped."""
    return NonFiniteLossError(
        f"{in_a_row} steps in a row had a non-finite loss or gradient "
        f"(last at step {step}, loss {loss}): the run diverged. "
        "Lower optim.lr, use train.amp=bf16 instead of fp16, check the data, or raise "
        f"train.max_nonfinite_in_a_row (now {limit}); resume from the last checkpoint "
        f"in {checkpoints}"
    )


__all__ = [
    "NonFiniteLossError",
    "diverged_error",
    "nonfinite_names",
    "too_many_skipped_error",
    "training_tensors",
]
