"""Evaluate quality scores on in-memory comparison scores: EDC, pAUC, references and ERC per FMR.

:func:`evaluate_scores` is the library entry point used by the benchmark runner and the demo. It
takes similarities, mated labels and one quality array per method, and returns a
:class:`BenchmarkResult` that :func:`igfiqa.evaluation.report.write_report` turns into plots and
tables. No model is run here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igfiqa.errors import ConfigError, DataError
from igfiqa.evaluation import edc
from igfiqa.evaluation.verification import tar_at_fmr, ten_fold_accuracy

DEFAULT_FMRS = (1e-3, 1e-4)
DEFAULT_LIMITS = (0.2, 0.3)
TEN_FOLD_MAX_PAIRS = 1_000_000  # the .bin-style 10-fold accuracy is reported up to this size

RANDOM = "random (expected)"
THEORETICAL_BEST = "theoretical best"
ORACLE = "oracle (comparison level)"
SAMPLE_ORACLE = "oracle (sample level, greedy; uses labels)"
REFERENCE_NAMES = (RANDOM, THEORETICAL_BEST, ORACLE, SAMPLE_ORACLE)


@dataclass
class CurveResult:
    """One line of an EDC plot and its pAUC values per discard limit L.

    ``pauc`` raw stepwise pAUC on [0, L]; ``pauc_normalized`` = pAUC / (e0 L); ``pauc_vs_oracle`` =
    (pAUC - oracle) / (e0 L - oracle). ``erc_fnmr``/``erc_auc``: the CR-FIQA ERC (threshold
    recomputed per step) and its trapezoid area, for quality methods only.
    """

    name: str
    kind: str  # "method" or "reference"
    discard_fraction: np.ndarray
    fnmr: np.ndarray
    pauc: dict[float, float]
    pauc_normalized: dict[float, float]
    pauc_vs_oracle: dict[float, float]
    erc_fnmr: np.ndarray | None = None
    erc_auc: float | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for limit in self.pauc:
            out[f"pauc@{limit:g}"] = self.pauc[limit]
            out[f"pauc_normalized@{limit:g}"] = self.pauc_normalized[limit]
            out[f"pauc_vs_oracle@{limit:g}"] = self.pauc_vs_oracle[limit]
        if self.erc_auc is not None:
            out["erc_auc"] = self.erc_auc
        return out


@dataclass
class FmrResult:
    """Everything measured at one target FMR: the fixed EDC threshold, e0 and every curve."""

    threshold: edc.ThresholdInfo
    e0: float
    num_errors: int
    curves: list[CurveResult]

    @property
    def target_fmr(self) -> float:
        return self.threshold.target_fmr

    def curve(self, name: str) -> CurveResult:
        for curve in self.curves:
            if curve.name == name:
                return curve
        raise KeyError(name)


@dataclass
class BenchmarkResult:
    """The evaluation of several quality methods on one benchmark with one FR model."""

    benchmark: str
    fr_model: str
    num_pairs: int
    num_mated: int
    num_nonmated: int
    excluded_pairs: int
    pair_reduce: str
    limits: tuple[float, ...]
    erc_ratios: np.ndarray
    erc_rule: str
    methods: list[str]
    per_fmr: list[FmrResult]
    warnings: list[str] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no curves)."""
        return {
            "benchmark": self.benchmark,
            "fr_model": self.fr_model,
            "num_pairs": self.num_pairs,
            "num_mated": self.num_mated,
            "num_nonmated": self.num_nonmated,
            "excluded_pairs": self.excluded_pairs,
            "pair_quality": self.pair_reduce,
            "limits": list(self.limits),
            "edc_protocol": "EDC (fixed threshold, ISO/IEC 29794-1 style FNM-EDC)",
            "erc_protocol": f"ERC (CR-FIQA protocol, threshold recomputed per step, rule {self.erc_rule})",
            "erc_ratios": [float(r) for r in self.erc_ratios],
            "methods": list(self.methods),
            "warnings": list(self.warnings),
            "verification": self.verification,
            "fmrs": [
                {
                    **fr.threshold.to_dict(),
                    "e0": fr.e0,
                    "num_errors": fr.num_errors,
                    "curves": [c.summary() for c in fr.curves],
                }
                for fr in self.per_fmr
            ],
        }


def _curve(
    name: str,
    kind: str,
    d: np.ndarray,
    f: np.ndarray,
    e0: float,
    limits: Sequence[float],
    oracle: Mapping[float, float] | None,
) -> CurveResult:
    paucs = {limit: edc.pauc(d, f, limit) for limit in limits}
    return CurveResult(
        name=name,
        kind=kind,
        discard_fraction=d,
        fnmr=f,
        pauc=paucs,
        pauc_normalized={L: edc.normalized_pauc(v, e0, L) for L, v in paucs.items()},
        pauc_vs_oracle={
            L: (edc.relative_to_oracle(v, e0, L, oracle[L]) if oracle is not None else math.nan)
            for L, v in paucs.items()
        },
    )


def resolution_warning(benchmark: str, info: edc.ThresholdInfo) -> str:
    """The warning text for an FMR below a benchmark's resolution."""
    return (
        f"{benchmark}: FMR {info.target_fmr:g} is below this benchmark's resolution "
        f"({info.num_nonmated} non-mated pairs, smallest measurable FMR {info.resolution:.2g}); "
        "the threshold lies above every non-mated score, so this FMR is not actually measured"
    )


def evaluate_scores(
    similarity: np.ndarray,
    mated: np.ndarray,
    qualities: Mapping[str, np.ndarray],
    fmrs: Sequence[float] = DEFAULT_FMRS,
    limits: Sequence[float] = DEFAULT_LIMITS,
    *,
    pairs: np.ndarray | None = None,
    erc_ratios: np.ndarray = edc.DEFAULT_ERC_RATIOS,
    erc_rule: edc.ErcRule = "crfiqa",
    pair_reduce: edc.PairReduce = "min",
    benchmark: str = "benchmark",
    fr_model: str = "FR model",
    sample_oracle: bool = True,
) -> BenchmarkResult:
    """Evaluate quality methods on one set of comparisons.

    ``similarity`` (P,) and ``mated`` (P,) describe the comparisons. Each ``qualities[name]`` is one
    quality per pair when ``pairs`` is None, otherwise one per sample (or template) indexed by
    ``pairs`` (P, 2) and combined with ``pair_reduce``. Pairs whose similarity or any method's pair
    quality is not finite (a failed image) are excluded from every method and counted in
    ``excluded_pairs``.

    For each target FMR: the EDC threshold is fixed on all non-mated similarities
    (:func:`~igfiqa.evaluation.edc.threshold_at_fmr`); every method gets its FNM-EDC, raw and
    normalised pAUC at each limit, the pAUC relative to the comparison-level oracle, and its CR-FIQA
    ERC and ERC AUC at the same target FMR. Reference curves: random discarding, theoretical best,
    the comparison-level oracle, and (when ``pairs`` are given and ``sample_oracle``) the greedy
    sample-level oracle. FMRs below the benchmark's resolution produce warnings. The FR model's
    TAR at each FMR (and, up to 1M pairs, the insightface 10-fold accuracy) go in ``verification``.
    """
    similarity, mated, limits, pairs = _check_inputs(similarity, mated, qualities, limits, pairs)
    pair_q = _pair_qualities(qualities, similarity, pairs, pair_reduce)
    similarity, mated, pair_q, pairs, excluded = _exclude_failed_pairs(
        similarity, mated, pair_q, pairs
    )
    warnings: list[str] = []
    if excluded:
        warnings.append(
            f"{benchmark}: {excluded} of {excluded + len(similarity)} pairs excluded (an image "
            "failed to embed or to get a quality score)"
        )
    num_mated = int(np.count_nonzero(mated))
    if num_mated == 0 or num_mated == len(mated):
        raise DataError(f"{benchmark}: need both mated and non-mated pairs, got {num_mated} mated")
    prepared = edc.SortedComparisons(similarity, mated)
    erc_all = {
        name: edc.erc_curves(
            similarity, mated, q, list(fmrs), erc_ratios, rule=erc_rule, prepared=prepared
        )
        for name, q in pair_q.items()
    }
    per_fmr: list[FmrResult] = []
    for row, fmr in enumerate(fmrs):
        info = edc.threshold_info(similarity[~mated], fmr)
        if info.below_resolution:
            warnings.append(resolution_warning(benchmark, info))
        result = _curves_at_threshold(
            similarity, mated, pair_q, pairs if sample_oracle else None, info, limits
        )
        for curve in result.curves:
            if curve.kind == "method":
                curve.erc_fnmr = erc_all[curve.name][row]
                curve.erc_auc = edc.erc_auc(erc_ratios, curve.erc_fnmr)
        per_fmr.append(result)
    verification: dict[str, Any] = {"tar_at_fmr": tar_at_fmr(similarity, mated, list(fmrs))}
    if len(similarity) <= TEN_FOLD_MAX_PAIRS and len(similarity) >= 10:
        verification["ten_fold_accuracy"] = ten_fold_accuracy(similarity, mated).to_dict()
    return BenchmarkResult(
        benchmark=benchmark,
        fr_model=fr_model,
        num_pairs=len(similarity),
        num_mated=num_mated,
        num_nonmated=len(similarity) - num_mated,
        excluded_pairs=excluded,
        pair_reduce=pair_reduce,
        limits=limits,
        erc_ratios=np.asarray(erc_ratios, dtype=np.float64),
        erc_rule=erc_rule,
        methods=list(pair_q),
        per_fmr=per_fmr,
        warnings=warnings,
        verification=verification,
    )


def _check_inputs(
    similarity: Any,
    mated: Any,
    qualities: Mapping[str, np.ndarray],
    limits: Sequence[float],
    pairs: Any,
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray | None]:
    similarity = np.asarray(similarity, dtype=np.float64)  # NaN allowed: excluded later
    if similarity.ndim != 1:
        raise DataError(f"similarity must be 1-d, got shape {similarity.shape}")
    mated = edc.as_1d("mated", mated, bool)
    edc.same_length(similarity=similarity, mated=mated)
    if not qualities:
        raise ConfigError("no quality methods to evaluate")
    limits = tuple(float(L) for L in limits)
    for limit in limits:
        if not 0 < limit <= 1:
            raise ConfigError(f"discard limit must be in (0, 1], got {limit}")
    if pairs is not None:
        pairs = np.asarray(pairs, dtype=np.int64)
        if pairs.shape != (len(similarity), 2):
            raise DataError(f"pairs must have shape ({len(similarity)}, 2), got {pairs.shape}")
    return similarity, mated, limits, pairs


def _pair_qualities(
    qualities: Mapping[str, np.ndarray],
    similarity: np.ndarray,
    pairs: np.ndarray | None,
    pair_reduce: edc.PairReduce,
) -> dict[str, np.ndarray]:
    """One quality per pair for every method: given per pair, or combined from per-sample values."""
    pair_q: dict[str, np.ndarray] = {}
    for name, values in qualities.items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1:
            raise DataError(f"quality {name!r} must be 1-d, got shape {values.shape}")
        if pairs is None:
            if len(values) != len(similarity):
                raise DataError(
                    f"quality {name!r} has {len(values)} values for {len(similarity)} pairs "
                    "(pass pairs=... for per-sample qualities)"
                )
            pair_q[name] = values
        else:
            if pairs.size and pairs.max() >= len(values):
                raise DataError(
                    f"quality {name!r} has {len(values)} values but pairs index up to {pairs.max()}"
                )
            pair_q[name] = edc.combine_pair_quality(
                values[pairs[:, 0]], values[pairs[:, 1]], pair_reduce
            )
    return pair_q


def _exclude_failed_pairs(
    similarity: np.ndarray,
    mated: np.ndarray,
    pair_q: dict[str, np.ndarray],
    pairs: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray | None, int]:
    """Drop pairs whose similarity or any method's quality is not finite; returns the count."""
    valid = np.isfinite(similarity)
    for values in pair_q.values():
        valid &= np.isfinite(values)
    excluded = int(len(valid) - np.count_nonzero(valid))
    if not excluded:
        return similarity, mated, pair_q, pairs, 0
    pair_q = {name: q[valid] for name, q in pair_q.items()}
    return (
        similarity[valid],
        mated[valid],
        pair_q,
        None if pairs is None else pairs[valid],
        excluded,
    )


def _curves_at_threshold(
    similarity: np.ndarray,
    mated: np.ndarray,
    pair_q: Mapping[str, np.ndarray],
    pairs: np.ndarray | None,
    info: edc.ThresholdInfo,
    limits: tuple[float, ...],
) -> FmrResult:
    """Every method's FNM-EDC and the reference curves at one fixed threshold (the sample-level
    oracle only with ``pairs``)."""
    mated_sim = similarity[mated]
    num_mated = len(mated_sim)
    error = mated_sim < info.threshold
    num_errors = int(np.count_nonzero(error))
    e0 = num_errors / num_mated
    oracle = {L: edc.oracle_pauc(num_errors, num_mated, L) for L in limits}
    curves: list[CurveResult] = []
    for name, q in pair_q.items():
        d, f = edc.edc(similarity, mated, q, info.threshold)
        curves.append(_curve(name, "method", d, f, e0, limits, oracle))
    flat = np.array([0.0, 1.0])
    curves.append(_curve(RANDOM, "reference", flat, np.array([e0, e0]), e0, limits, oracle))
    grid = np.linspace(0.0, 1.0, 2001)
    best = _curve(
        THEORETICAL_BEST, "reference", grid, edc.theoretical_best_fnmr(e0, grid), e0, limits, oracle
    )
    best.pauc = {L: edc.theoretical_best_pauc(e0, L) for L in limits}  # exact line integral
    best.pauc_normalized = {L: edc.normalized_pauc(v, e0, L) for L, v in best.pauc.items()}
    best.pauc_vs_oracle = {
        L: edc.relative_to_oracle(v, e0, L, oracle[L]) for L, v in best.pauc.items()
    }
    curves.append(best)
    od, of = edc.oracle_edc(num_errors, num_mated)
    curves.append(_curve(ORACLE, "reference", od, of, e0, limits, oracle))
    if pairs is not None:
        mated_pairs = pairs[mated]
        num_units = int(mated_pairs.max()) + 1
        sq = edc.greedy_sample_oracle(mated_pairs, error, num_units)
        sd, sf = edc.edc(
            mated_sim, np.ones(num_mated, bool), edc.pair_quality(sq, mated_pairs), info.threshold
        )
        curves.append(_curve(SAMPLE_ORACLE, "reference", sd, sf, e0, limits, oracle))
    return FmrResult(info, e0, num_errors, curves)
