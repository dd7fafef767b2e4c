"""What this machine gives the process: CPU cores and memory, the bounds of every resource a user
can set (decode threads, data loader workers, network threads, model and batch sizes)."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def machine_memory() -> int:
    """Bytes of memory this process may use: the physical memory, or its cgroup's limit where
    that is lower (8 GiB where the system says neither)."""
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        total = 8 << 30
    for limit_file in CGROUP_MEMORY_LIMITS:
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            total = min(total, int(text))
    return total


__all__ = ["available_cores", "machine_memory"]
