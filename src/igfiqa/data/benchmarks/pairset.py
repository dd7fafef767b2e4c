"""The one benchmark structure, :class:`PairSet`: samples, and pairs of samples (or templates) with
mated / non-mated labels; the sample loaders the readers use; every pair of a labelled set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igfiqa.data.decode import decode_image
from igfiqa.errors import DataError

HELD_OUT_FIRST_IDENTITY = 1_000_000
"""First identity of the synthetic benchmark unless its spec says otherwise (far from training ids)."""

DEFAULT_MAX_NONMATED = 2_000_000
"""Default cap on non-mated pairs for ``folder`` / ``synthetic`` benchmarks."""


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
    labels: np.ndarray, *, max_nonmated: int | None = DEFAULT_MAX_NONMATED, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of a labelled set, mated iff ``labels[i] == labels[j]``.

    All mated pairs are kept. If there are more than ``max_nonmated`` non-mated pairs, a uniform
    random subset of about that many (without repetition, reproducible from ``seed``) is kept instead.
    Pairs come sorted by (i, j). Vectorised; no Python loop over pairs.
    """
    labels = np.asarray(labels)
    n = len(labels)
    total = n * (n - 1) // 2
    counts = np.unique(labels, return_counts=True)[1]
    num_mated = int((counts * (counts - 1) // 2).sum())
    num_nonmated = total - num_mated
    if max_nonmated is None or num_nonmated <= max_nonmated:
        i, j = np.triu_indices(n, k=1)
        return np.stack([i, j], 1).astype(np.int64), labels[i] == labels[j]
    # Mated pairs: within each class (grouped by a stable sort of the labels).
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, n])
    mated_parts = []
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        a, b = np.triu_indices(int(size), k=1)
        mated_parts.append(np.stack([order[start + a], order[start + b]], 1))
    mated_pairs = np.concatenate(mated_parts) if mated_parts else np.empty((0, 2), np.int64)
    mated_pairs = np.sort(mated_pairs, axis=1)
    # Non-mated pairs: sample linear upper-triangle indices, keep those with different labels.
    rng = np.random.default_rng(seed)
    share = num_nonmated / total
    draw = min(total, int(max_nonmated / share * 1.05) + 16)
    linear = rng.choice(total, size=draw, replace=False)  # in random order
    i, j = _triangle_index(linear, n)
    keep = labels[i] != labels[j]
    i, j = i[keep][:max_nonmated], j[keep][:max_nonmated]
    pairs = np.concatenate([mated_pairs, np.stack([i, j], 1)]).astype(np.int64)
    mated = np.r_[np.ones(len(mated_pairs), bool), np.zeros(len(i), bool)]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], mated[order]


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
