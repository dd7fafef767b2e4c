"""Statistics over seeds by hand: the t-interval and paired differences."""

from __future__ import annotations

import itertools
import math

import pytest

from igfiqa.experiments.stats import excludes_zero, mean_ci, paired_difference, t_quantile_95


def test_mean_ci_is_the_t_interval_by_hand() -> None:
    stats = mean_ci([1.0, 2.0, 3.0, float("nan"), None])  # NaN and None (failed) are left out
    half = 4.303 * 1.0 / math.sqrt(3)  # t(2) = 4.303, s = 1
    assert stats["n"] == 3 and stats["mean"] == pytest.approx(2.0)
    assert stats["low"] == pytest.approx(2.0 - half) and stats["high"] == pytest.approx(2.0 + half)
    single = mean_ci([0.5])
    assert single["mean"] == 0.5 and math.isnan(single["low"])
    assert mean_ci([])["n"] == 0


def test_t_quantiles_fall_towards_the_normal_one() -> None:
    values = [t_quantile_95(df) for df in (1, 2, 5, 10, 30, 60, 119, 120, 1000)]
    assert values[0] == pytest.approx(12.706) and values[3] == pytest.approx(2.228)
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[-1] == 1.96 and math.isnan(t_quantile_95(0))


def test_paired_difference_is_the_interval_of_the_differences_seed_by_seed() -> None:
    variant, baseline = [0.50, 0.40, 0.45], [0.55, 0.50, 0.44]
    stats = paired_difference(variant, baseline)
    diffs = [a - b for a, b in zip(variant, baseline, strict=True)]
    assert stats == {**mean_ci(diffs), "better_seeds": 2}
    assert excludes_zero(stats) == 0  # the interval holds zero
    assert excludes_zero(paired_difference([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])) == -1  # better
    assert excludes_zero(paired_difference([0.4, 0.5, 0.6], [0.1, 0.3, 0.2])) == 1  # worse
    assert excludes_zero(mean_ci([0.3])) == 0  # one seed: no interval
