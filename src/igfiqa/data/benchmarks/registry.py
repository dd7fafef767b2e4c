"""The benchmark readers, registered by kind; ``open_benchmark(kind, path)`` dispatches to them and
``detect_kind(path)`` picks one for ``auto``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from igfiqa.data.benchmarks.pairset import PairSet
from igfiqa.errors import ConfigError, DataError
from igfiqa.registry import Registry


@dataclass(frozen=True)
class BenchmarkReader:
    """How to open one kind of benchmark: ``open(path, **options)``, the ``options`` it takes,
    ``detect(path)`` for ``auto`` (tried in ascending ``priority``), and whether ``path`` must exist
    (a ``synthetic:...`` spec is not a path)."""

    kind: str
    open: Callable[..., PairSet]
    detect: Callable[[str], bool] | None = None
    priority: int = 50
    options: frozenset[str] = frozenset()
    needs_path: bool = True


def benchmark_spelling(kind: str) -> str:
    """How a benchmark kind is compared: case-insensitive, ``-`` and ``_`` dropped (``IJB-C``)."""
    return kind.strip().lower().replace("-", "").replace("_", "")


BENCHMARK_READERS: Registry[BenchmarkReader] = Registry(
    "benchmark kind", normalise=benchmark_spelling, also=("auto",)
)
"""Kind -> reader, in registration order."""


def register_benchmark(reader: BenchmarkReader) -> BenchmarkReader:
    """Make ``reader`` available to :func:`open_benchmark` under its kind."""
    return BENCHMARK_READERS.add(reader.kind, reader)


def list_benchmark_kinds() -> list[str]:
    """Names of the benchmark formats :func:`open_benchmark` reads (``bin``, ``xqlfw``, ``ijbb``,
    ``ijbc``, ``folder``, ``synthetic``), in registration order; ``auto`` detects one of them."""
    return BENCHMARK_READERS.names()


def benchmark_kinds() -> tuple[str, ...]:
    """:func:`list_benchmark_kinds` as a tuple."""
    return tuple(BENCHMARK_READERS)


def detect_kind(path: str | os.PathLike[str]) -> str:
    """The kind of the benchmark at ``path``: the first reader (by priority) that recognises it."""
    text = os.fspath(path)
    for reader in sorted(BENCHMARK_READERS.values(), key=lambda r: r.priority):
        if reader.detect is not None and reader.detect(text):
            return reader.kind
    raise DataError(
        f"{path}: not a benchmark any reader recognises ({', '.join(benchmark_kinds())})"
    )


def open_benchmark(kind: str, path: str | os.PathLike[str], **options: Any) -> PairSet:
    """Open a verification benchmark of ``kind`` (or ``auto``) at ``path``; ``options`` as the
    reader takes them (``max_mated``, ``max_nonmated`` and ``seed`` for ``folder`` and
    ``synthetic``)."""
    if benchmark_spelling(kind) == "auto":
        kind = detect_kind(path)
    reader = BENCHMARK_READERS.lookup(kind)
    kind = reader.kind
    unknown = set(options) - reader.options
    if unknown:
        raise ConfigError(f"open_benchmark({kind!r}): unknown option(s) {sorted(unknown)}")
    if reader.needs_path and not Path(path).exists():
        raise DataError(f"{path}: benchmark not found")
    return reader.open(path, **options)
