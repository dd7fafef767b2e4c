"""The collective operations the maths need, in one small interface over ``torch.distributed``.

Every function works in a single process too (nothing to exchange: the input comes back), so the
guidance EMA, the sharded margin head and the training loop call them without asking whether a
process group exists. This is the one place that asks ``torch.distributed`` for the rank and the
world size (:func:`rank`, :func:`world_size`, :func:`active`); setting up and tearing down process
groups from the ``torchrun`` environment is the trainer's business (``engine.distributed``).
:func:`unwrap` peels the DistributedDataParallel / ``torch.compile`` wrappers off a model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def active(group: Any = None) -> bool:
    """Whether a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (0 without a process group)."""
    return dist.get_rank(group) if active(group) else 0


def world_size(group: Any = None) -> int:
    """Number of processes in ``group`` (1 without a process group)."""
    return dist.get_world_size(group) if active(group) else 1


def gather_sizes(count: int, device: torch.device, group: Any = None) -> list[int]:
    """Every rank's ``count``, in rank order."""
    if not active(group):
        return [int(count)]
    size = torch.tensor([count], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    return [int(s.item()) for s in sizes]


def all_gather_rows(tensor: Tensor, group: Any = None, sizes: list[int] | None = None) -> Tensor:
    """Rows of ``tensor`` (any first dimension, same trailing shape) from every rank, concatenated in
    rank order; no gradient. ``sizes`` (from :func:`gather_sizes`) saves one exchange when known.

    Ranks with fewer rows pad to the largest count for the exchange; the padding is dropped.
    """
    if not active(group):
        return tensor
    sizes = sizes if sizes is not None else gather_sizes(tensor.shape[0], tensor.device, group)
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def all_reduce(tensor: Tensor, op: str = "sum", group: Any = None) -> Tensor:
    """Reduce ``tensor`` in place over ranks with ``sum`` or ``max``; returns it."""
    if active(group):
        reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
        dist.all_reduce(tensor, op=reduce_op, group=group)
    return tensor


def any_rank(flag: bool, device: torch.device | str = "cpu", group: Any = None) -> bool:
    """Whether ``flag`` is true on any rank (every rank gets the same answer); a single process
    gets ``flag`` back. ``device``: where the one-element exchange lives (the rank's CUDA device
    under NCCL)."""
    if not active(group):
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    all_reduce(value, "max", group)
    return bool(value.item() > 0)


def gather_objects(obj: Any, group: Any = None) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` in a single process). Only for
    the processes' own state (RNG and augmentation generators): it unpickles what ranks send."""
    if not active(group):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside its DistributedDataParallel / DataParallel (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, in any nesting; any other module as it is."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


__all__ = [
    "active",
    "all_gather_rows",
    "all_reduce",
    "any_rank",
    "gather_objects",
    "gather_sizes",
    "rank",
    "unwrap",
    "world_size",
]
