"""Process-group helpers for ``torchrun``: nothing happens at import; :func:`setup` initialises.

One process per device. :func:`launch_env` is the one reader of the ``torchrun`` environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``): it validates them together and
refuses a stray or malformed variable with a :class:`ConfigError`. ``setup()`` uses it and initialises
``env://`` with NCCL on GPUs and gloo on CPUs when ``WORLD_SIZE > 1``; in a single process it does
nothing and everything below degrades to the identity. The rank and world size of a running group
come from one place, :mod:`igfiqa.collective` (``rank``, ``world_size``, ``active``, ``any_rank``,
``gather_objects``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from igfiqa import collective
from igfiqa.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class LaunchEnv:
    """This process's place as ``torchrun`` describes it (a single process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _launch_error(message: str) -> ConfigError:
    return ConfigError(
        f"{message}; these variables are set by torchrun: launch with torchrun or unset it"
    )


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """The validated ``torchrun`` environment (``os.environ`` unless ``environ`` is given).

    ``RANK`` and ``WORLD_SIZE`` are set together or not at all; ``LOCAL_RANK`` (required when
    ``WORLD_SIZE > 1``) and ``LOCAL_WORLD_SIZE`` only with them. All are integers with
    ``0 <= RANK < WORLD_SIZE`` and ``0 <= LOCAL_RANK < LOCAL_WORLD_SIZE <= WORLD_SIZE``. Anything
    else raises :class:`ConfigError` naming the variable. None set: a single process (0 of 1).
    """
    env = os.environ if environ is None else environ
    values: dict[str, int] = {}
    for name in TORCHRUN_VARIABLES:
        text = env.get(name)
        if text is None:
            continue
        try:
            values[name] = int(text.strip(), 10)
        except ValueError:
            raise _launch_error(f"{name}={text!r} is not an integer") from None
    if not values:
        return LaunchEnv()
    missing = [name for name in ("RANK", "WORLD_SIZE") if name not in values]
    if missing:
        given = ", ".join(f"{name}={values[name]}" for name in values)
        raise _launch_error(f"{given} is set without {' and '.join(missing)}")
    world, rank = values["WORLD_SIZE"], values["RANK"]
    if world < 1:
        raise _launch_error(f"WORLD_SIZE={world} must be at least 1")
    if not 0 <= rank < world:
        raise _launch_error(f"RANK={rank} must be in 0..{world - 1} (WORLD_SIZE={world})")
    if world > 1 and "LOCAL_RANK" not in values:
        raise _launch_error(f"WORLD_SIZE={world} is set without LOCAL_RANK")
    local_world = values.get("LOCAL_WORLD_SIZE", world)
    if not 1 <= local_world <= world:
        raise _launch_error(f"LOCAL_WORLD_SIZE={local_world} must be in 1..{world} (WORLD_SIZE)")
    local_rank = values.get("LOCAL_RANK", 0)
    if not 0 <= local_rank < local_world:
        raise _launch_error(
            f"LOCAL_RANK={local_rank} must be in 0..{local_world - 1} (LOCAL_WORLD_SIZE "
            f"{local_world})"
        )
    return LaunchEnv(rank, world, local_rank, local_world)


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
    """Initialise the process group from the ``torchrun`` environment when ``WORLD_SIZE > 1``
    (:func:`launch_env`; a group initialised already is used as it is)."""
    env = launch_env()
    local_rank = env.local_rank
    if is_initialized():
        rank, world_size = collective.rank(), collective.world_size()
        return DistInfo(rank, world_size, local_rank, resolve_device(device, local_rank), False)
    if env.world_size <= 1:
        return DistInfo(0, 1, 0, resolve_device(device, 0), False)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name, "").strip():
            raise _launch_error(f"WORLD_SIZE={env.world_size} is set without {name}")
    target = resolve_device(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(collective.rank(), collective.world_size(), local_rank, target, True)


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
    if not collective.active():
        return
    world = collective.world_size()
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
    if not collective.active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src)
