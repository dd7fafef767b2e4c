"""Rank correlation of predicted qualities with reference qualities."""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return weighted_average_ranks(values, np.ones_like(values))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks of ``a`` and ``b``.

    Pairs where either value is not finite are left out; NaN when fewer than two remain or when
    either side is constant.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"spearman: arrays differ in length ({a.size} vs {b.size})")
    return float(weighted_spearman(a, b, np.ones_like(a)))


def weighted_average_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` (n,) in the sample that holds item i ``weights[..., i]`` times.

    ``weights`` (..., n) are non-negative multiplicities; each leading index is one sample. A run of
    equal values of total weight ``G`` after weight ``C`` of smaller values gets rank ``C + (G + 1) / 2``,
    the mean of the ranks its copies would take (as :func:`average_ranks` of the repeated sample).
    Items of weight 0 get a rank too, but it carries no weight. Returns (..., n) float64.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[-1:] != values.shape:
        raise ValueError(
            f"weighted_average_ranks: weights {weights.shape} do not end in {values.size}"
        )
    if values.size == 0:
        return np.zeros(weights.shape)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_weight = np.add.reduceat(weights[..., order], starts, axis=-1)
    run_rank = np.cumsum(run_weight, axis=-1) - run_weight + (run_weight + 1.0) / 2.0
    ranks = np.empty(weights.shape, dtype=np.float64)
    ranks[..., order] = np.repeat(run_rank, np.diff(np.r_[starts, values.size]), axis=-1)
    return ranks


def weighted_spearman(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho of ``a`` and ``b`` (n,) in each sample that holds item i ``weights[..., i]`` times.

    Equals :func:`spearman` of ``np.repeat(a, w)`` and ``np.repeat(b, w)`` for integer weights ``w``
    (the weighted Pearson correlation of :func:`weighted_average_ranks`), vectorised over the leading
    axes of ``weights`` (..., n): one row of 0/1 weights per group gives per-group Spearman, one row of
    multiplicities per bootstrap resample gives the bootstrap distribution. Pairs where either value is
    not finite are left out; NaN for a sample of total weight < 2 or where either side is constant.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"weighted_spearman: arrays differ in length ({a.size} vs {b.size})")
    if weights.shape[-1:] != a.shape:
        raise ValueError(f"weighted_spearman: weights {weights.shape} do not end in {a.size}")
    if (weights < 0).any() or not np.isfinite(weights).all():
        raise ValueError("weighted_spearman: weights must be finite and non-negative")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b, weights = a[keep], b[keep], weights[..., keep]
    total = weights.sum(axis=-1)
    ra = weighted_average_ranks(a, weights)
    rb = weighted_average_ranks(b, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        ra -= ((weights * ra).sum(axis=-1) / total)[..., None]
        rb -= ((weights * rb).sum(axis=-1) / total)[..., None]
        covariance = (weights * ra * rb).sum(axis=-1)
        denominator = np.sqrt((weights * ra * ra).sum(axis=-1) * (weights * rb * rb).sum(axis=-1))
        rho = covariance / denominator
    return np.where((total >= 2) & (denominator > 0), rho, np.nan)


__all__ = [
    "average_ranks",
    "spearman",
    "weighted_average_ranks",
    "weighted_spearman",
]
