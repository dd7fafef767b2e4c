"""Keep the model fed: decode (and align) images in a thread pool while the network runs.

:func:`ordered_map` runs a preparation function on items in worker threads, a bounded window ahead of
the consumer, and yields results in input order; :func:`batched` groups the successes into batches.
Decoding (OpenCV/Pillow) and the network (PyTorch/onnxruntime) release the GIL, so they overlap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from igfiqa.errors import ConfigError, IgfiqaError
from igfiqa.machine import available_cores, machine_memory

T = TypeVar("T")
R = TypeVar("R")


WORKERS_PER_CORE = 4
"""Most decode threads per CPU core: more only wait for one another (a few cover slow reads)."""


def max_workers() -> int:
    """Most decode threads allowed here: :data:`WORKERS_PER_CORE` per core, and no more than half
    of the machine's memory can hold as decoded images of the largest size allowed (each thread
    keeps the image it works on; the peaks of decoding are bounded by
    :func:`igfiqa.data.decode.memory_gate`)."""
    from igfiqa.data.decode import BYTES_PER_PIXEL_BUDGET, MAX_PIXELS

    by_memory = machine_memory() // 2 // (BYTES_PER_PIXEL_BUDGET * MAX_PIXELS)
    return max(1, min(WORKERS_PER_CORE * available_cores(), by_memory))


def check_workers(workers: int | None, option: str = "--workers") -> int | None:
    """``workers`` if it is None or in [0, :func:`max_workers`]; ConfigError naming ``option``."""
    if workers is None:
        return None
    workers = int(workers)
    if workers < 0:
        raise ConfigError(f"{option} must be >= 0 (0 decodes in the main thread), got {workers}")
    bound = max_workers()
    if workers > bound:
        raise ConfigError(
            f"{option} {workers} is more than this machine can use: at most {bound} decode threads "
            f"({WORKERS_PER_CORE} per CPU core, {available_cores()} cores available, within half "
            "of its memory); leave it out for the default"
        )
    return workers


def default_workers() -> int:
    """Decode threads used when none are asked for: the number of CPU cores, at most 8 (and at
    most :func:`max_workers`)."""
    return max(1, min(8, available_cores(), max_workers()))


class Outcome(Generic[T, R]):
    """The result of preparing one item: ``value`` on success, ``error`` (an IgfiqaError) otherwise."""

    __slots__ = ("error", "item", "value")

    def __init__(self, item: T, value: R | None = None, error: IgfiqaError | None = None) -> None:
        self.item = item
        self.value = value
        self.error = error


def _attempt(function: Callable[[T], R], item: T) -> Outcome[T, R]:
    try:
        return Outcome(item, value=function(item))
    except IgfiqaError as error:
        return Outcome(item, error=error)


def ordered_map(
    function: Callable[[T], R], items: Iterable[T], *, workers: int | None = None, window: int = 256
) -> Iterator[Outcome[T, R]]:
    """Apply ``function`` to ``items`` in ``workers`` threads, at most ``window`` ahead; yield in order.

    User errors (:class:`IgfiqaError`) become failed outcomes; other exceptions propagate. With
    ``workers=0`` everything runs in the calling thread; more than :func:`max_workers` raise
    ConfigError before any item is prepared.
    """
    if workers is not None:
        check_workers(workers)
    workers = default_workers() if workers is None else int(workers)
    if workers <= 0:
        for item in items:
            yield _attempt(function, item)
        return
    pending: deque[Future[Outcome[T, R]]] = deque()
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="igfiqa-decode")
    finished = False
    try:
        for item in iterator:
            pending.append(pool.submit(_attempt, function, item))
            if len(pending) >= window:
                break
        while pending:
            outcome = pending.popleft().result()
            for item in iterator:
                pending.append(pool.submit(_attempt, function, item))
                break
            yield outcome
        finished = True
    finally:
        # Stopped early (consumer error, Ctrl-C): drop queued work and do not wait for a worker
        # that may be stuck on a hung file read.
        for future in pending:
            future.cancel()
        pool.shutdown(wait=finished, cancel_futures=True)


def batched(outcomes: Iterable[Outcome[T, R]], batch_size: int) -> Iterator[list[Outcome[T, R]]]:
    """Group outcomes into lists holding at most ``batch_size`` successes each (failures ride along).

    Every outcome appears exactly once and in order; a group ends right after its ``batch_size``-th
    success, so failures never delay a full batch.
    """
    group: list[Outcome[T, R]] = []
    successes = 0
    for outcome in outcomes:
        group.append(outcome)
        if outcome.error is None:
            successes += 1
            if successes == batch_size:
                yield group
                group, successes = [], 0
    if group:
        yield group


__all__ = [
    "WORKERS_PER_CORE",
    "Outcome",
    "batched",
    "check_workers",
    "default_workers",
    "max_workers",
    "ordered_map",
]
