"""Fit and check the expected-FNMR calibration of a quality measure (docs/scoring.md, "Expected FNMR").

Definitions, on a labelled benchmark with per-sample (or per-template) quality q and FR comparison
scores s of its pairs:

- the threshold t is the FR model's threshold for the target FMR on all non-mated pairs
  (:func:`igfiqa.evaluation.edc.threshold_at_fmr`);
- a *good reference* is a sample whose quality is at or above the median quality of the samples
  in the benchmark's pairs; every mated pair (a, b) gives the comparison "probe a against reference
  b" when b is a good reference, and "probe b against reference a" when a is one;
- a comparison is a false non-match when s < t; the expected FNMR at quality q is the isotonic
  (non-increasing) regression of the false non-match indicator on the probe's quality;
- the 95% band: the same fit on bootstrap resamples of identities (the probes' identities, or each
  comparison on its own when the benchmark has no identity labels) with the threshold recomputed on
  a resample of the non-mated pairs, and the 2.5 / 97.5 percentiles at each knot.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from igfiqa.errors import ConfigError, DataError
from igfiqa.evaluation import edc
from igfiqa.inference.expected_fnmr import ExpectedFnmr

MAX_BOOTSTRAP_NONMATED = 200_000
"""Non-mated pairs drawn per bootstrap resample for its threshold (the point estimate uses all)."""


def check_fmr(fmr: float) -> float:
    """A target FMR strictly between 0 and 1, or a ConfigError (checked before any scoring)."""
    if not (isinstance(fmr, (int, float)) and 0.0 < float(fmr) < 1.0):
        raise ConfigError(f"--fmr must lie strictly between 0 and 1 (e.g. 1e-3), got {fmr}")
    return float(fmr)


@dataclass(frozen=True)
class MatedComparisons:
    """Probe-against-good-reference comparisons: the probe's unit, its quality, the score."""

    probe: np.ndarray
    quality: np.ndarray
    score: np.ndarray
    reference_floor: float


def mated_comparisons(
    unit_quality: np.ndarray,
    pairs: np.ndarray,
    mated: np.ndarray,
    similarity: np.ndarray,
    *,
    floor: float | None = None,
) -> MatedComparisons:
    """Every probe-against-good-reference comparison of the mated pairs (module docstring).

    Pairs with a NaN quality or score on either side are left out; a good reference has a quality
    of at least ``floor``, by default the median over the units that appear in a usable pair.
    """
    q = np.asarray(unit_quality, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    mated = np.asarray(mated, dtype=bool)
    scores = np.asarray(similarity, dtype=np.float64)
    usable = np.isfinite(q[pairs]).all(axis=1) & np.isfinite(scores)
    in_pairs = np.unique(pairs[usable])
    if in_pairs.size == 0:
        raise DataError("no pair with a finite quality and comparison score on both sides")
    floor = float(np.median(q[in_pairs])) if floor is None else float(floor)
    a, b = pairs[usable & mated, 0], pairs[usable & mated, 1]
    s = scores[usable & mated]
    forward, backward = q[b] >= floor, q[a] >= floor
    probe = np.concatenate([a[forward], b[backward]])
    score = np.concatenate([s[forward], s[backward]])
    return MatedComparisons(probe, q[probe], score, floor)


def isotonic_decreasing(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares non-increasing fit of y on x: ``(knots, values)`` with the knots at
    the first and last x of each constant block, so that linear interpolation through them is
    the fit (constant within a block, linear across the gap between blocks)."""
    from scipy.optimize import isotonic_regression

    keep = weight > 0
    x, y, weight = x[keep], y[keep], weight[keep]
    unique, inverse = np.unique(x, return_inverse=True)
    totals = np.bincount(inverse, weights=weight)
    means = np.bincount(inverse, weights=weight * y) / totals
    fitted = isotonic_regression(means, weights=totals, increasing=False).x
    change = np.flatnonzero(np.diff(fitted) != 0)
    starts = np.concatenate([[0], change + 1])
    ends = np.concatenate([change, [len(fitted) - 1]])
    index = np.unique(np.concatenate([starts, ends]))
    return unique[index], np.clip(fitted[index], 0.0, 1.0)


def fit_expected_fnmr(
    unit_quality: np.ndarray,
    pairs: np.ndarray,
    mated: np.ndarray,
    similarity: np.ndarray,
    *,
    fmr: float = 1e-3,
    identities: np.ndarray | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    info: dict[str, Any] | None = None,
) -> ExpectedFnmr:
    """The expected-FNMR calibration of ``unit_quality`` (module docstring).

    ``pairs`` index the units, ``similarity`` holds the FR comparison score of each pair,
    ``identities`` the identity of each unit (None: each comparison is its own bootstrap unit).
    """
    check_fmr(fmr)
    if bootstrap < 20:
        raise ConfigError(f"the band needs at least 20 bootstrap resamples, got {bootstrap}")
    mated = np.asarray(mated, dtype=bool)
    scores = np.asarray(similarity, dtype=np.float64)
    nonmated = scores[~mated & np.isfinite(scores)]
    if nonmated.size == 0:
        raise DataError("no non-mated comparisons: the FMR threshold cannot be set")
    if edc.is_below_resolution(fmr, nonmated.size):
        raise DataError(
            f"FMR {fmr:g} is below this benchmark's resolution ({nonmated.size} non-mated pairs, "
            f"1/N = {1 / nonmated.size:.2g}): pick a larger --fmr or a larger benchmark"
        )
    comparisons = mated_comparisons(unit_quality, pairs, mated, scores)
    if comparisons.score.size < 20:
        raise DataError(
            f"only {comparisons.score.size} mated comparisons against a good reference: too few "
            "to calibrate; use a benchmark with more mated pairs"
        )
    threshold = edc.threshold_at_fmr(nonmated, fmr)
    error = (comparisons.score < threshold).astype(np.float64)
    knots, values = isotonic_decreasing(comparisons.quality, error, np.ones_like(error))

    if identities is not None:
        labels = np.asarray(identities)[comparisons.probe]
        groups, group_of = np.unique(labels, return_inverse=True)
        num_groups = groups.size
    else:
        group_of, num_groups = np.arange(error.size), error.size
    rng = np.random.default_rng(seed)
    draws = np.empty((bootstrap, knots.size))
    # enough non-mated pairs that each resample still resolves the FMR (20 false matches allowed)
    sample_size = min(nonmated.size, max(MAX_BOOTSTRAP_NONMATED, math.ceil(20 / fmr)))
    for b in range(bootstrap):  # one resample per iteration; the fit itself is vectorised
        picked = rng.integers(0, nonmated.size, sample_size)
        threshold_b = edc.threshold_at_fmr(nonmated[picked], fmr)
        multiplicity = np.bincount(rng.integers(0, num_groups, num_groups), minlength=num_groups)
        weight = multiplicity[group_of].astype(np.float64)
        error_b = (comparisons.score < threshold_b).astype(np.float64)
        knots_b, values_b = isotonic_decreasing(comparisons.quality, error_b, weight)
        draws[b] = np.interp(knots, knots_b, values_b)
    low = np.minimum(np.percentile(draws, 2.5, axis=0), values)
    high = np.maximum(np.percentile(draws, 97.5, axis=0), values)
    # percentiles of non-increasing curves are non-increasing; guard the rounding
    low, high = np.minimum.accumulate(low), np.minimum.accumulate(high)
    low, high = np.minimum(low, values), np.maximum(high, values)

    q = np.asarray(unit_quality, dtype=np.float64)
    used = np.unique(np.asarray(pairs, dtype=np.int64)[np.isfinite(scores)])
    used_q = q[used][np.isfinite(q[used])]
    details = {
        "fr_model": None,
        "benchmark": None,
        "num_units": int(used_q.size),
        "num_identities": int(num_groups) if identities is not None else None,
        "num_mated_comparisons": int(error.size),
        "num_nonmated_comparisons": int(nonmated.size),
        "reference_quality_floor": comparisons.reference_floor,
        "observed_fnmr": float(error.mean()),
        "bootstrap": {"resamples": int(bootstrap), "seed": int(seed),
                      "unit": "identity" if identities is not None else "comparison"},
        "date": datetime.date.today().isoformat(),
    }  # fmt: skip
    details.update(info or {})
    return ExpectedFnmr(
        quality=tuple(knots.tolist()),
        fnmr=tuple(values.tolist()),
        low=tuple(low.tolist()),
        high=tuple(high.tolist()),
        sample_quantiles=tuple(np.quantile(used_q, np.linspace(0, 1, 101)).tolist()),
        fmr=float(fmr),
        threshold=float(threshold),
        info=details,
    )


@dataclass(frozen=True)
class Reliability:
    """Predicted against observed FNMR per quality decile of held-out comparisons."""

    decile_edges: np.ndarray
    predicted: np.ndarray
    low: np.ndarray
    high: np.ndarray
    observed: np.ndarray
    count: np.ndarray
    threshold: float
    observed_low: np.ndarray | None = None
    observed_high: np.ndarray | None = None

    @property
    def within(self) -> np.ndarray:
        """Per decile: the observed FNMR inside the predicted band, or within 0.03 of the
        prediction (the strict target: the observation's own sampling noise is not allowed for)."""
        inside = (self.observed >= self.low - 1e-12) & (self.observed <= self.high + 1e-12)
        return inside | (np.abs(self.observed - self.predicted) <= 0.03)

    @property
    def consistent(self) -> np.ndarray:
        """Per decile: |observed - predicted| <= 1.96 sqrt(se_predicted^2 + se_observed^2), the
        standard errors read off the two 95% intervals (the prediction's band, the observation's
        bootstrap over held-out identities), or within 0.03; the strict target where the held-out
        set has no identities."""
        if self.observed_low is None or self.observed_high is None:
            return self.within
        se = np.hypot(
            (self.high - self.low) / 3.92, (self.observed_high - self.observed_low) / 3.92
        )
        gap = np.abs(self.observed - self.predicted)
        return (gap <= 1.96 * se + 1e-12) | (gap <= 0.03)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "deciles": [
                {
                    "quality_from": float(self.decile_edges[i]),
                    "quality_to": float(self.decile_edges[i + 1]),
                    "comparisons": int(self.count[i]),
                    "predicted_fnmr": float(self.predicted[i]),
                    "band": [float(self.low[i]), float(self.high[i])],
                    "observed_fnmr": float(self.observed[i]),
                    "observed_interval": None
                    if self.observed_low is None or self.observed_high is None
                    else [float(self.observed_low[i]), float(self.observed_high[i])],
                    "within": bool(self.within[i]),
                    "consistent": bool(self.consistent[i]),
                }
                for i in range(len(self.predicted))
            ],
            "all_within": bool(self.within.all()),
            "all_consistent": bool(self.consistent.all()),
        }


def reliability(
    calibration: ExpectedFnmr,
    unit_quality: np.ndarray,
    pairs: np.ndarray,
    mated: np.ndarray,
    similarity: np.ndarray,
    *,
    bins: int = 10,
    identities: np.ndarray | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> Reliability:
    """Predicted (mean expected FNMR and band of the probes) against observed FNMR (share of
    false non-matches at the calibration's own threshold) per quality decile of the
    probe-against-good-reference comparisons of another set of identities.

    The good references of the held-out set are chosen with the calibration's reference floor,
    so the comparisons are the kind the calibration describes. With ``identities`` (of the units)
    the observed FNMR also gets a 95% interval from a bootstrap over the held-out identities.
    """
    floor = float(calibration.info.get("reference_quality_floor", np.nan))
    comparisons = mated_comparisons(
        unit_quality, pairs, mated, similarity, floor=floor if np.isfinite(floor) else -np.inf
    )
    probe, probe_q, score = comparisons.probe, comparisons.quality, comparisons.score
    if probe_q.size < bins:
        raise DataError(f"only {probe_q.size} held-out comparisons for {bins} deciles")
    edges = np.quantile(probe_q, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, probe_q, side="right") - 1, 0, bins - 1)
    fnmr, low, high = calibration(probe_q)
    error = (score < calibration.threshold).astype(np.float64)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    safe = np.maximum(count, 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.where(
            count > 0, np.bincount(which, weights=values, minlength=bins) / safe, np.nan
        )

    observed_low = observed_high = None
    if identities is not None:
        _, group = np.unique(np.asarray(identities)[probe], return_inverse=True)
        groups = int(group.max()) + 1
        cell = group * bins + which  # per identity and decile: comparisons and errors
        counts = np.bincount(cell, minlength=groups * bins).reshape(groups, bins)
        errors = np.bincount(cell, weights=error, minlength=groups * bins).reshape(groups, bins)
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(groups, np.full(groups, 1.0 / groups), size=bootstrap)
        with np.errstate(invalid="ignore", divide="ignore"):
            resampled = (draws @ errors) / (draws @ counts)  # (bootstrap, bins)
        observed_low = np.nanpercentile(resampled, 2.5, axis=0)
        observed_high = np.nanpercentile(resampled, 97.5, axis=0)
    return Reliability(
        edges, mean(fnmr), mean(low), mean(high), mean(error), count.astype(np.int64),
        calibration.threshold, observed_low, observed_high,
    )  # fmt: skip


@dataclass(frozen=True)
class CalibrationRun:
    """A calibration and, when identities were held out, its reliability on them."""

    calibration: ExpectedFnmr
    reliability: Reliability | None
    split: dict[str, Any]


def split_identities(
    identities: np.ndarray, pairs: np.ndarray, holdout: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the pairs whose two units both belong to the fitting / held-out
    identities, a random ``holdout`` share of the identities (seeded) being held out."""
    labels = np.asarray(identities)
    unique = np.unique(labels)
    if unique.size < 4:
        raise DataError(f"only {unique.size} identities: too few to hold some out")
    rng = np.random.default_rng(seed)
    held = np.zeros(unique.size, dtype=bool)
    held[rng.permutation(unique.size)[: max(1, round(holdout * unique.size))]] = True
    unit_held = held[np.searchsorted(unique, labels)]
    pair_held = unit_held[np.asarray(pairs, dtype=np.int64)]
    return ~pair_held.any(axis=1), pair_held.all(axis=1)


def calibrate_model(
    model: Any,
    pairset: Any,
    fr_model: Any,
    *,
    fmr: float = 1e-3,
    kind: str | None = None,
    sha256: str | None = None,
    options: str | None = None,
    holdout: float = 0.0,
    bootstrap: int = 200,
    seed: int = 0,
    flip: str = "auto",
    source: Any = None,
    name: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    cache_dir: Any = None,
    progress: bool = False,
) -> CalibrationRun:
    """Score ``pairset`` (a :class:`igfiqa.data.benchmarks.PairSet`) with the quality ``model``
    (a path of any kind ``score`` accepts) and the FR model ``fr_model`` (anything ``evaluate``
    accepts), and fit the expected-FNMR calibration; with ``holdout`` in (0, 1) that share of the
    identities is left out of the fit and the reliability is measured on it."""
    from pathlib import Path

    from igfiqa.evaluation.quality.quality_model import ModelQuality
    from igfiqa.evaluation.runner import BenchmarkRunner

    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout must lie in [0, 1), got {holdout}")
    check_fmr(fmr)
    path = Path(model)
    template = getattr(pairset, "sample_template", None)
    labels = getattr(pairset, "sample_labels", None)
    identities = None if template is not None or labels is None else np.asarray(labels)
    if holdout > 0 and identities is None:  # refused before any image is scored
        raise ConfigError(
            f"{name or pairset.name} has no identity labels per image: --holdout needs a "
            "benchmark that has them (folder, synthetic)"
        )
    settings = {"kind": kind, "sha256": sha256, "model_options": options}
    method = ModelQuality(path.name, options={k: v for k, v in settings.items() if v}, path=path)
    runner = BenchmarkRunner(
        pairset, name=name, source=source, cache_dir=cache_dir, batch_size=batch_size, workers=workers,
        device=device, progress=progress,
    )  # fmt: skip
    output = runner.run(fr_model, [method], flip=flip, fmrs=[fmr])  # type: ignore[arg-type]
    info = {
        "model": path.name,
        "fr_model": output.result.fr_model,
        "benchmark": runner.name,
        "benchmark_source": None if source is None else str(source),
    }
    return fit_and_check(
        runner.unit_qualities(output.qualities)[method.name], pairset.pairs, pairset.mated,
        output.similarity, identities=identities, fmr=fmr, holdout=holdout,
        bootstrap=bootstrap, seed=seed, info=info,
    )  # fmt: skip


def fit_and_check(
    unit_quality: np.ndarray,
    pairs: np.ndarray,
    mated: np.ndarray,
    similarity: np.ndarray,
    *,
    identities: np.ndarray | None,
    fmr: float,
    holdout: float = 0.0,
    bootstrap: int = 200,
    seed: int = 0,
    info: dict[str, Any] | None = None,
) -> CalibrationRun:
    """:func:`fit_expected_fnmr` on all pairs, or, with ``holdout`` > 0, on the pairs of the
    identities not held out (:func:`split_identities`) and :func:`reliability` on the others."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    mated = np.asarray(mated, dtype=bool)
    similarity = np.asarray(similarity, dtype=np.float64)
    split: dict[str, Any] = {"holdout": holdout}
    fit_mask, held_mask = np.ones(len(pairs), dtype=bool), None
    if holdout > 0:
        if identities is None:
            raise ConfigError("holding identities out needs the identity of every sample")
        fit_mask, held_mask = split_identities(identities, pairs, holdout, seed)
        split.update({"fit_pairs": int(fit_mask.sum()), "held_out_pairs": int(held_mask.sum())})
    calibration = fit_expected_fnmr(
        unit_quality, pairs[fit_mask], mated[fit_mask], similarity[fit_mask], fmr=fmr,
        identities=identities, bootstrap=bootstrap, seed=seed, info=info,
    )  # fmt: skip
    check = None
    if held_mask is not None:
        check = reliability(
            calibration, unit_quality, pairs[held_mask], mated[held_mask], similarity[held_mask],
            identities=identities, seed=seed,
        )  # fmt: skip
    return CalibrationRun(calibration, check, split)


__all__ = [
    "CalibrationRun",
    "MatedComparisons",
    "Reliability",
    "calibrate_model",
    "fit_and_check",
    "fit_expected_fnmr",
    "isotonic_decreasing",
    "mated_comparisons",
    "reliability",
    "split_identities",
]
