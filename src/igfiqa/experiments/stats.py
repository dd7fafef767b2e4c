"""Statistics over seeds: the mean with its 95% t-interval, and paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_quantile_95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (1.96 beyond 120)."""
    if df < 1:
        return math.nan
    if df <= len(_T95):
        return _T95[df - 1]
    if df >= 120:
        return 1.96
    return 1.96 + (2.042 - 1.96) * (120 - df) / 90  # linear between df 30 and 120


def mean_ci(values: Sequence[float | None]) -> dict[str, float | int]:
    """Mean and 95% t-interval ``mean +- t(n-1) s / sqrt(n)`` of the finite values (None and NaN,
    a failed value, are left out)."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float(data.mean())
    if n == 1:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1}
    half = t_quantile_95(n - 1) * float(data.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def paired_difference(values: Sequence[float], baseline: Sequence[float]) -> dict[str, float | int]:
    """:func:`mean_ci` of ``values - baseline`` pair by pair (the same seed and data), and
    ``better_seeds``: how many differences are negative (lower is better)."""
    diffs = [a - b for a, b in zip(values, baseline, strict=True)]
    stats = mean_ci(diffs)
    stats["better_seeds"] = int(sum(d < 0 for d in diffs if math.isfinite(d)))
    return stats


def excludes_zero(stats: dict[str, float | int]) -> int:
    """-1 when the interval lies below zero (better), +1 above (worse), 0 otherwise or undefined."""
    low, high = stats.get("low"), stats.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return 0
    return -1 if high < 0 else 1 if low > 0 else 0
