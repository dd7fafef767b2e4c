"""``synthetic``: a ``synthetic:...`` spec (see :mod:`igfiqa.data.synthetic`) over held-out identities
(``first_identity`` defaults to :data:`~igfiqa.data.benchmarks.pairset.HELD_OUT_FIRST_IDENTITY`), all
pairs as for ``folder``, with the generator's ground-truth qualities."""

from __future__ import annotations

import numpy as np

from igfiqa.data.benchmarks.pairset import (
    DEFAULT_MAX_MATED,
    DEFAULT_MAX_NONMATED,
    HELD_OUT_FIRST_IDENTITY,
    PairSet,
    SyntheticImages,
    sample_pairs,
)
from igfiqa.data.benchmarks.registry import BenchmarkReader, register_benchmark
from igfiqa.errors import ConfigError


def open_synthetic_benchmark(
    spec: str,
    *,
    max_nonmated: int | None = DEFAULT_MAX_NONMATED,
    max_mated: int | None = DEFAULT_MAX_MATED,
    seed: int = 0,
) -> PairSet:
    """All pairs over held-out synthetic identities, with ground-truth qualities."""
    from igfiqa.data.synthetic import synthetic_from_spec

    if "first_identity" not in spec:
        sep = "," if ":" in spec and not spec.rstrip().endswith(":") else ""
        spec = spec + (sep if ":" in spec else ":") + f"first_identity={HELD_OUT_FIRST_IDENTITY}"
    faces = synthetic_from_spec(spec)
    if faces.samples_per_identity < 2:
        raise ConfigError(f"{spec}: a synthetic benchmark needs samples >= 2 per identity")
    labels = faces.labels
    pairs, mated, counts = sample_pairs(
        labels, max_nonmated=max_nonmated, max_mated=max_mated, seed=seed, name=spec
    )
    if not counts["mated_pairs_kept"]:
        raise ConfigError(f"{spec}: max_mated={max_mated} keeps no mated pair; allow at least one")
    quality = np.array(
        [faces.render(*faces.locate(i))[1] for i in range(len(faces))], dtype=np.float64
    )
    names = [
        f"synthetic/{identity}/{sample}"
        for identity, sample in map(faces.locate, range(len(faces)))
    ]
    low = np.array([faces.is_low_variance(int(i)) for i in faces.identities])
    return PairSet(
        "synthetic",
        names,
        pairs,
        mated,
        SyntheticImages(faces),
        sample_labels=labels,
        ground_truth_quality=quality,
        info={
            "identities": faces.num_identities,
            "low_variance_identities": int(low.sum()),
            **counts,
            "pair_seed": seed,
        },
        files=[],
    )


register_benchmark(
    BenchmarkReader(
        "synthetic",
        lambda path, **options: open_synthetic_benchmark(str(path), **options),
        detect=lambda path: path.lower().startswith("synthetic"),
        priority=0,
        options=frozenset({"max_nonmated", "max_mated", "seed"}),
        needs_path=False,
    )
)
