"""The collective operations the maths need, in one small interface over ``torch.distributed``.

Every function works in a single process too (nothing to exchange: the input comes back), so the
guidance EMA and the sharded margin head call them without asking whether a process group exists.
Setting up and tearing down process groups is the trainer's business (``engine.distributed``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


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


__all__ = ["active", "all_gather_rows", "all_reduce", "gather_sizes", "rank", "world_size"]
