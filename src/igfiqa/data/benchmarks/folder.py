"""``folder``: the pairs of a labelled folder ``root/<identity>/<image>`` (mated: same identity),
at most ``max_mated`` mated and ``max_nonmated`` non-mated ones (see
:func:`~igfiqa.data.benchmarks.pairset.sample_pairs`); what ``auto`` falls back to."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from igfiqa.data.benchmarks.pairset import (
    DEFAULT_MAX_MATED,
    DEFAULT_MAX_NONMATED,
    FileImages,
    PairSet,
    sample_pairs,
)
from igfiqa.data.benchmarks.registry import BenchmarkReader, register_benchmark
from igfiqa.errors import ConfigError, DataError


def open_labelled_folder(
    path: str | os.PathLike[str],
    *,
    max_nonmated: int | None = DEFAULT_MAX_NONMATED,
    max_mated: int | None = DEFAULT_MAX_MATED,
    seed: int = 0,
) -> PairSet:
    """The pairs of an aligned identity folder ``root/<identity>/<image>``: all of them up to the
    caps, beyond a uniform random sample reproducible from ``seed`` (``info`` says how many)."""
    from igfiqa.data.datasets import scan_identity_folder

    paths, owners, identities = scan_identity_folder(path)
    ids = {name: i for i, name in enumerate(identities)}
    labels = np.asarray([ids[o] for o in owners], dtype=np.int64)
    pairs, mated, counts = sample_pairs(
        labels, max_nonmated=max_nonmated, max_mated=max_mated, seed=seed, name=str(path)
    )
    if not counts["mated_pairs_available"]:
        raise DataError(f"{path}: no identity has two images, so there is no mated pair")
    if not counts["mated_pairs_kept"]:
        raise ConfigError(f"{path}: max_mated={max_mated} keeps no mated pair; allow at least one")
    names = [str(p) for p in paths]
    return PairSet(
        Path(path).name,
        names,
        pairs,
        mated,
        FileImages(names),
        sample_labels=labels,
        info={"identities": len(identities), **counts, "pair_seed": seed},
        files=names,
    )


register_benchmark(
    BenchmarkReader(
        "folder",
        open_labelled_folder,
        detect=lambda path: True,
        priority=99,
        options=frozenset({"max_nonmated", "max_mated", "seed"}),
    )
)
