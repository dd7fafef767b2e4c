"""``folder``: every pair of a labelled folder ``root/<identity>/<image>`` (mated: same identity),
with the non-mated pairs capped (see :func:`~igfiqa.data.benchmarks.pairset.all_pairs`); what
``auto`` falls back to."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from igfiqa.data.benchmarks.pairset import DEFAULT_MAX_NONMATED, FileImages, PairSet, all_pairs
from igfiqa.data.benchmarks.registry import BenchmarkReader, register_benchmark
from igfiqa.errors import DataError


def open_labelled_folder(
    path: str | os.PathLike[str], *, max_nonmated: int | None = DEFAULT_MAX_NONMATED, seed: int = 0
) -> PairSet:
    """All pairs of an aligned identity folder ``root/<identity>/<image>``."""
    from igfiqa.data.datasets import scan_identity_folder

    paths, owners, identities = scan_identity_folder(path)
    ids = {name: i for i, name in enumerate(identities)}
    labels = np.asarray([ids[o] for o in owners], dtype=np.int64)
    pairs, mated = all_pairs(labels, max_nonmated=max_nonmated, seed=seed)
    if not mated.any():
        raise DataError(f"{path}: no identity has two images, so there is no mated pair")
    names = [str(p) for p in paths]
    return PairSet(
        Path(path).name,
        names,
        pairs,
        mated,
        FileImages(names),
        sample_labels=labels,
        info={"identities": len(identities)},
    )


register_benchmark(
    BenchmarkReader(
        "folder",
        open_labelled_folder,
        detect=lambda path: True,
        priority=99,
        options=frozenset({"max_nonmated", "seed"}),
    )
)
