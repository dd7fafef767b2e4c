"""The one benchmark structure, :class:`PairSet`: samples, and pairs of samples (or templates) with
mated / non-mated labels; the sample loaders the readers use; every pair of a labelled set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igfiqa.data.decode import decode_image
from igfiqa.errors import ConfigError, DataError

HELD_OUT_FIRST_IDENTITY = 1_000_000
"""First identity of the synthetic benchmark unless its spec says otherwise (far from training ids)."""

DEFAULT_MAX_NONMATED = 2_000_000
"""Default cap on non-mated pairs for ``folder`` / ``synthetic`` benchmarks."""

DEFAULT_MAX_MATED = 2_000_000
"""Default cap on mated pairs for ``folder`` / ``synthetic`` benchmarks (one identity of 30,000 images
alone has 450 million)."""

MAX_PAIRS = 20_000_000
"""Most pairs :func:`all_pairs` forms (more than IJB-C's 15.6 M; at most about 0.65 GB while forming
them, 0.33 GB kept)."""

_CHUNK = 1 << 20


@dataclass
class PairSet:
    """Samples, and pairs of samples (or of templates) with mated / non-mated labels.

    - ``sample_names`` (N,): a name per sample (file name or ``<file>[i]``).
    - ``pairs`` (P, 2) int64: indices into the samples, or, when ``sample_template`` is set, into the
      templates ``0 .. num_templates - 1`` (the original ids are in ``template_ids``).
    - ``mated`` (P,) bool.
    - ``sample_template`` / ``sample_media`` (N,) int64: template and media *index* of each sample
      (template benchmarks only).
    - ``sample_labels`` (N,) int64: identity of each sample, when known.
    - ``ground_truth_quality`` (N,) float: synthetic benchmarks only.
    - ``files``: every file the reader read or the sample loader will read (list files, landmark
      files, each image), which the evaluation caches are keyed on (their size, mtime and ctime);
      ``None`` when unknown: the cache key then covers every file below the benchmark path.
    """

    name: str
    sample_names: list[str]
    pairs: np.ndarray
    mated: np.ndarray
    images: Any  # an object with .load(i) -> RGB uint8 (picklable)
    sample_template: np.ndarray | None = None
    sample_media: np.ndarray | None = None
    template_ids: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    ground_truth_quality: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    files: list[str] | None = None

    def __post_init__(self) -> None:
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        self.mated = np.asarray(self.mated, dtype=bool).reshape(-1)
        if len(self.pairs) != len(self.mated):
            raise DataError(
                f"{self.name}: {len(self.pairs)} pairs but {len(self.mated)} mated labels"
            )
        limit = self.num_templates if self.sample_template is not None else self.num_samples
        if self.pairs.size and (self.pairs.min() < 0 or self.pairs.max() >= limit):
            raise DataError(f"{self.name}: pair indices outside 0..{limit - 1}")

    @property
    def num_samples(self) -> int:
        """Number of samples (images)."""
        return len(self.sample_names)

    @property
    def num_templates(self) -> int:
        """Number of templates (0 when pairs index samples)."""
        if self.sample_template is None:
            return 0
        return int(self.sample_template.max()) + 1 if len(self.sample_template) else 0

    def load_sample(self, index: int) -> np.ndarray:
        """Sample ``index`` as an aligned RGB uint8 image."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"{self.name}: sample {index} out of range 0..{self.num_samples - 1}")
        return self.images.load(int(index))

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "name": self.name,
            "samples": self.num_samples,
            "pairs": len(self.pairs),
            "mated_pairs": int(self.mated.sum()),
            "templates": self.num_templates,
            **self.info,
        }


# -- sample loaders (top-level classes so that PairSets pickle into workers) ------------------------


class EncodedImages:
    """Samples held as encoded bytes (``.bin``)."""

    def __init__(self, encoded: list, source: str) -> None:
        self.encoded = encoded
        self.source = source

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.encoded[index], name=f"{self.source}[{index}]")


class FileImages:
    """Samples held as image files (aligned already)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.paths[index])


class LandmarkAlignedImages:
    """Samples held as loose crops plus five landmarks; aligned to 112x112 on load."""

    def __init__(self, paths: list[str], landmarks: np.ndarray) -> None:
        self.paths = paths
        self.landmarks = landmarks

    def load(self, index: int) -> np.ndarray:
        from igfiqa.data.align import align_face

        return align_face(decode_image(self.paths[index]), self.landmarks[index])


class SyntheticImages:
    """Samples rendered by a :class:`~igfiqa.data.synthetic.SyntheticFaces` generator."""

    def __init__(self, faces: Any) -> None:
        self.faces = faces

    def load(self, index: int) -> np.ndarray:
        return self.faces.render(*self.faces.locate(index))[0]


def all_pairs(
    labels: np.ndarray,
    *,
    max_nonmated: int | None = DEFAULT_MAX_NONMATED,
    max_mated: int | None = DEFAULT_MAX_MATED,
    seed: int = 0,
    name: str = "benchmark",
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of a labelled set, mated iff ``labels[i] == labels[j]``, sorted by (i, j),
    with at most ``max_mated`` mated and ``max_nonmated`` non-mated pairs (see :func:`sample_pairs`,
    which also says how many there were)."""
    pairs, mated, _ = sample_pairs(
        labels, max_nonmated=max_nonmated, max_mated=max_mated, seed=seed, name=name
    )
    return pairs, mated


def sample_pairs(
    labels: np.ndarray,
    *,
    max_nonmated: int | None = DEFAULT_MAX_NONMATED,
    max_mated: int | None = DEFAULT_MAX_MATED,
    seed: int = 0,
    name: str = "benchmark",
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Every pair ``i < j`` of a labelled set, mated iff ``labels[i] == labels[j]``; when there are
    more than ``max_mated`` mated (or ``max_nonmated`` non-mated) pairs, a uniform random subset of
    exactly that many, without repetition and reproducible from ``seed`` (mated and non-mated pairs
    from separate streams, so one cap does not change the other sample). ``None`` = no cap.

    Returns (pairs (P, 2) int64 sorted by (i, j), mated (P,) bool, counts) with counts =
    ``{"mated_pairs_available", "nonmated_pairs_available", "mated_pairs_kept",
    "nonmated_pairs_kept"}``. Memory is O(samples + kept pairs), never O(available pairs): pairs
    are drawn as ranks among the pairs of each kind and mapped to (i, j) through the labels sorted
    by class, vectorised (no Python loop over pairs or classes). More than :data:`MAX_PAIRS` kept
    pairs (caps of ``None`` or too high) is a :class:`DataError` naming ``name``.
    """
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    changes = np.flatnonzero(sorted_labels[1:] != sorted_labels[:-1]) + 1
    bounds = np.r_[0, changes, n].astype(np.int64) if n else np.zeros(1, np.int64)
    group_end = np.repeat(bounds[1:], np.diff(bounds))  # end of each sorted position's class
    position = np.arange(n, dtype=np.int64)
    mated_after = group_end - position - 1  # same-class partners after each sorted position
    other_after = n - group_end  # other-class partners after it (classes are contiguous)
    available = {"mated": int(mated_after.sum()), "nonmated": int(other_after.sum())}
    caps = {"mated": max_mated, "nonmated": max_nonmated}
    for kind, cap in caps.items():
        if cap is not None and cap < 0:
            raise ConfigError(f"{name}: max_{kind} must be >= 0 or None, got {cap}")
    keep = {
        kind: available[kind] if caps[kind] is None else min(available[kind], int(caps[kind]))
        for kind in caps
    }
    if keep["mated"] + keep["nonmated"] > MAX_PAIRS:
        raise DataError(
            f"{name}: {n:,} samples give {keep['mated']:,} mated and {keep['nonmated']:,} non-mated "
            f"pairs, more than the {MAX_PAIRS:,} an evaluation holds; lower max_mated / "
            "max_nonmated (sampled pairs) or use fewer images"
        )
    # Each kept pair as one int64 key i * n + j, filled in chunks so that the temporaries stay small;
    # sorting the keys sorts the pairs by (i, j) (n * n fits in int64).
    width = max(n, 1)
    keys = np.empty(keep["mated"] + keep["nonmated"], dtype=np.int64)
    filled = 0
    for stream, (kind, after) in enumerate((("mated", mated_after), ("nonmated", other_after))):
        count = keep[kind]
        rng = np.random.default_rng([int(seed), stream])
        ranks = None if count == available[kind] else _distinct_ranks(rng, available[kind], count)
        first = np.cumsum(after) - after  # rank of each sorted position's first pair
        for begin in range(0, count, _CHUNK):
            end = min(begin + _CHUNK, count)
            rank = np.arange(begin, end, dtype=np.int64) if ranks is None else ranks[begin:end]
            p = np.searchsorted(first, rank, side="right") - 1
            offset = rank - first[p]
            q = (p + 1 + offset) if kind == "mated" else (group_end[p] + offset)
            a, b = order[p], order[q]
            keys[filled + begin : filled + end] = np.minimum(a, b) * width + np.maximum(a, b)
        filled += count
        del ranks
    keys.sort()
    pairs = np.empty((len(keys), 2), dtype=np.int64)
    np.floor_divide(keys, width, out=pairs[:, 0])
    np.remainder(keys, width, out=pairs[:, 1])
    del keys
    mated = np.empty(len(pairs), dtype=bool)
    for begin in range(0, len(pairs), _CHUNK):
        chunk = pairs[begin : begin + _CHUNK]
        mated[begin : begin + _CHUNK] = labels[chunk[:, 0]] == labels[chunk[:, 1]]
    counts = {f"{kind}_pairs_available": available[kind] for kind in available} | {
        f"{kind}_pairs_kept": keep[kind] for kind in keep
    }
    return pairs, mated, counts


def _distinct_ranks(rng: np.random.Generator, population: int, k: int) -> np.ndarray:
    """``k`` distinct integers of ``0 .. population - 1``, a uniform random subset (all of them when
    ``k >= population``), sorted; memory O(k) however large ``population`` is."""
    if k >= population:
        return np.arange(population, dtype=np.int64)
    if k > population // 2:  # all but a uniform subset of the others: O(population) = O(k)
        keep = np.ones(population, dtype=bool)
        keep[_distinct_ranks(rng, population, population - k)] = False
        return np.flatnonzero(keep).astype(np.int64)
    # Independent uniform draws, duplicates dropped and topped up: a uniform subset given its size
    # (k <= population / 2, so few rounds); then k of those, uniformly.
    chosen = _sorted_unique(rng.integers(0, population, size=k + k // 8 + 64, dtype=np.int64))
    while len(chosen) < k:
        more = rng.integers(0, population, size=2 * (k - len(chosen)) + 64, dtype=np.int64)
        chosen = _sorted_unique(np.r_[chosen, more])
    if len(chosen) > k:
        chosen = np.sort(chosen[rng.permutation(len(chosen))[:k]])
    return chosen


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of an int64 array by one in-place sort (numpy 2's hashing unique is ~30x slower
    on millions of values)."""
    values.sort()
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _triangle_index(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major linear index of the strict upper triangle of an n x n matrix -> (i, j)."""
    k = k.astype(np.int64)
    i = (n - 2 - np.floor(np.sqrt(-8.0 * k + 4.0 * n * (n - 1) - 7) / 2.0 - 0.5)).astype(np.int64)
    row_start = i * n - i * (i + 1) // 2  # linear index of (i, i + 1)
    # Guard the float rounding at row boundaries.
    too_far = k < row_start
    i[too_far] -= 1
    row_start = i * n - i * (i + 1) // 2
    next_start = (i + 1) * n - (i + 1) * (i + 2) // 2
    too_short = k >= next_start
    i[too_short] += 1
    row_start = i * n - i * (i + 1) // 2
    j = k - row_start + i + 1
    return i, j
