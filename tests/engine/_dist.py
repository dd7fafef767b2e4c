"""Helpers to run a function in N gloo processes on the CPU (tests only).

The processes meet as under ``torchrun``: this process hosts the TCPStore (the elastic agent's
role) on a port the kernel picks and that stays bound until every rank has finished, and each rank
joins through ``env://`` as a client of it (``TORCHELASTIC_USE_AGENT_STORE``). No port is chosen
free and bound later by another process, so no other program can take it in between.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HOST = "127.0.0.1"
# A last-resort bound on meeting and on every collective: a rank that dies makes the others fail
# (mp.spawn ends them) long before it; a hang ends here instead of after gloo's 30 minutes.
TIMEOUT = timedelta(minutes=5)


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR=HOST,
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        TORCHELASTIC_USE_AGENT_STORE="True",  # every rank is a client of the parent's store
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="env://", timeout=TIMEOUT)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_gloo(fn: Callable[..., Any], world: int = 2, *args: Any) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` spawned processes; failures re-raise here."""
    store = dist.TCPStore(HOST, 0, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
    try:
        mp.spawn(_entry, args=(world, store.port, fn, args), nprocs=world, join=True)
    finally:
        del store  # stops serving the port
