"""Process-group helpers for ``torchrun``: nothing happens at import; :func:`setup` initialises.

One process per device. ``setup()`` reads the ``torchrun`` environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and initialises ``env://`` with NCCL on GPUs and gloo
on CPUs when ``WORLD_SIZE > 1``; in a single process it does nothing and everything below degrades
to the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from igfiqa.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"train.device: {requested!r} requested but CUDA is not available on this machine "
                "(no GPU or a CPU build of torch); use --set train.device=cpu or auto"
            )
        if requested == "cuda":
            return torch.device("cuda", local_rank)
        index = torch.device(requested).index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: {requested!r} but this machine has {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    return torch.device(requested)


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group from the ``torchrun`` environment when ``WORLD_SIZE > 1``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        return DistInfo(rank, world_size, local_rank, resolve_device(device, local_rank), False)
    if world_size <= 1:
        return DistInfo(0, 1, 0, resolve_device(device, 0), False)
    target = resolve_device(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, target, True)


def teardown(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.initialised_here and is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_gradients(
    parameters: list[torch.nn.Parameter], bucket_bytes: int = 25 << 20
) -> None:
    """Average ``.grad`` of replicated parameters over ranks, in flat buckets (few collectives)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    grads = [p.grad for p in parameters if p.grad is not None]
    bucket: list[Tensor] = []
    size = 0

    def flush() -> None:
        if not bucket:
            return
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in bucket:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n
        bucket.clear()

    for grad in grads:
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
        if size >= bucket_bytes:
            flush()
            size = 0
    flush()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every rank (identical start)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src)
