"""Evaluate quality scores on in-memory comparison scores: EDC, pAUC, references and ERC per FMR.

:func:`evaluate_scores` is the library entry point used by the benchmark runner and the demo. It
takes similarities, mated labels and one quality array per method, and returns a
:class:`BenchmarkResult` that :func:`igfiqa.evaluation.report.write_report` turns into plots and
tables. No model is run here.

Starting thresholds: each target FMR (``fmrs``) and, optionally, each initial FNMR (``fnmrs``) fixes
one threshold on the full set; the EDC, the FM-EDC (``fm_edc=True``) and their pAUCs are computed at
it. The ERC (CR-FIQA protocol) exists for the FMR starts only (it recomputes an FMR threshold).

Bootstrap (``bootstrap=N``): 95% percentile intervals of every method's pAUC values and ERC AUC,
from N resamples of *identities* (the subsets bootstrap of Bolle et al., 2004): each comparison
belongs to the identity of its first sample (or template); identities are drawn with replacement
and every comparison of a drawn identity enters the resample as often as its identity was drawn.
The thresholds are recomputed on every resample. Resampling comparisons independently would
understate the variance, because comparisons that share an image (or an identity) are not
independent. Without identity labels the units are the groups of samples joined by mated
comparisons (:func:`bootstrap_units`).
"""

from __future__ import annotations

import math
import time
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

BOOTSTRAP_CONFIDENCE = 0.95
#: a bootstrap interval needs at least this share of resamples where the value is defined
BOOTSTRAP_MIN_DEFINED = 0.5

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
    #: 95% bootstrap intervals (low, high) of the values above, filled with ``bootstrap=N``
    pauc_ci: dict[float, tuple[float, float]] = field(default_factory=dict)
    pauc_normalized_ci: dict[float, tuple[float, float]] = field(default_factory=dict)
    pauc_vs_oracle_ci: dict[float, tuple[float, float]] = field(default_factory=dict)
    erc_auc_ci: tuple[float, float] | None = None
    #: the FM-EDC (false matches, non-mated comparisons) at the same threshold, with ``fm_edc``
    fm_discard_fraction: np.ndarray | None = None
    fm_fmr: np.ndarray | None = None
    fm_pauc: dict[float, float] = field(default_factory=dict)
    fm_pauc_normalized: dict[float, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for limit in self.pauc:
            for key, values, intervals in (
                ("pauc", self.pauc, self.pauc_ci),
                ("pauc_normalized", self.pauc_normalized, self.pauc_normalized_ci),
                ("pauc_vs_oracle", self.pauc_vs_oracle, self.pauc_vs_oracle_ci),
            ):
                out[f"{key}@{limit:g}"] = values[limit]
                if limit in intervals:
                    out[f"{key}@{limit:g}_ci95"] = list(intervals[limit])
        for limit in self.fm_pauc:
            out[f"fm_pauc@{limit:g}"] = self.fm_pauc[limit]
            out[f"fm_pauc_normalized@{limit:g}"] = self.fm_pauc_normalized[limit]
        if self.erc_auc is not None:
            out["erc_auc"] = self.erc_auc
        if self.erc_auc_ci is not None:
            out["erc_auc_ci95"] = list(self.erc_auc_ci)
        return out


@dataclass
class FmrResult:
    """Everything measured at one starting threshold: the fixed EDC threshold, e0 and every curve.

    The threshold is set by a target FMR (``threshold.target_fmr``), or, when ``target_fnmr`` is
    set, by an initial FNMR (:func:`~igfiqa.evaluation.edc.threshold_at_fnmr`); then
    ``threshold.target_fmr`` is NaN, ``threshold.achieved_fmr`` the FMR at that threshold, and no
    curve has an ERC.
    """

    threshold: edc.ThresholdInfo
    e0: float
    num_errors: int
    curves: list[CurveResult]
    target_fnmr: float | None = None

    @property
    def target_fmr(self) -> float:
        return self.threshold.target_fmr

    @property
    def start(self) -> str:
        """``"FMR"`` or ``"FNMR"``: what set the threshold."""
        return "FMR" if self.target_fnmr is None else "FNMR"

    @property
    def target(self) -> float:
        """The target FMR or initial FNMR that set the threshold."""
        return self.threshold.target_fmr if self.target_fnmr is None else self.target_fnmr

    @property
    def label(self) -> str:
        """``FMR 0.001`` or ``FNMR 0.1``."""
        return f"{self.start} {self.target:g}"

    @property
    def tag(self) -> str:
        """File-name part: ``fmr1e-03`` or ``fnmr1e-01``."""
        return f"{self.start.lower()}{self.target:.0e}".replace("+", "")

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
    #: thresholds set by an initial FNMR (``fnmrs``), after the FMR ones in :attr:`starts`
    per_fnmr: list[FmrResult] = field(default_factory=list)
    #: how the bootstrap intervals were drawn (empty without ``bootstrap``)
    bootstrap: dict[str, Any] = field(default_factory=dict)

    @property
    def starts(self) -> list[FmrResult]:
        """Every starting threshold: the FMR ones, then the FNMR ones."""
        return [*self.per_fmr, *self.per_fnmr]

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
            "bootstrap": dict(self.bootstrap),
            "fmrs": [_start_summary(fr) for fr in self.per_fmr],
            "fnmrs": [_start_summary(fr) for fr in self.per_fnmr],
        }


def _start_summary(fr: FmrResult) -> dict[str, Any]:
    out: dict[str, Any] = {**fr.threshold.to_dict()}
    if fr.target_fnmr is not None:
        out = {"target_fnmr": fr.target_fnmr, **out}
        del out["target_fmr"]
    return {
        **out,
        "e0": fr.e0,
        "num_errors": fr.num_errors,
        "curves": [c.summary() for c in fr.curves],
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
    fnmrs: Sequence[float] = (),
    fm_edc: bool = False,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    unit_identity: np.ndarray | None = None,
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
    ERC and ERC AUC at the same target FMR. Each initial FNMR in ``fnmrs`` fixes one more threshold
    (:func:`~igfiqa.evaluation.edc.threshold_at_fnmr` on all mated similarities) with the same EDC
    values and no ERC (:attr:`BenchmarkResult.per_fnmr`). ``fm_edc`` adds every method's FM-EDC
    (:func:`~igfiqa.evaluation.edc.fm_edc`) and its pAUC, raw and over FMR0 L, at every threshold.
    Reference curves: random discarding, theoretical best, the comparison-level oracle, and (when
    ``pairs`` are given and ``sample_oracle``) the greedy sample-level oracle. FMRs below the
    benchmark's resolution produce warnings. The FR model's TAR at each FMR (and, up to 1M pairs,
    the insightface 10-fold accuracy) go in ``verification``.

    ``bootstrap`` = N > 0 adds 95% intervals to every method's pAUC values and ERC AUC, from N
    resamples of identities seeded by ``bootstrap_seed`` (:func:`bootstrap_intervals`).
    ``unit_identity`` is the identity of each sample (or template) that ``pairs`` index; without it
    the identities are recovered from the mated pairs (:func:`bootstrap_units`).
    """
    similarity, mated, limits, pairs = _check_inputs(similarity, mated, qualities, limits, pairs)
    fmrs = tuple(float(f) for f in fmrs)
    fnmrs = tuple(float(f) for f in fnmrs)
    for value in fnmrs:
        if not 0.0 < value < 1.0:
            raise ConfigError(f"an initial fnmr must lie in (0, 1), got {value}")
    if bootstrap < 0 or (0 < bootstrap < 20):
        raise ConfigError(f"bootstrap needs 0 (off) or at least 20 resamples, got {bootstrap}")
    clash = sorted(set(qualities) & set(REFERENCE_NAMES))
    if clash:
        raise ConfigError(
            f"quality method {clash[0]!r} has the name of a reference curve; name it otherwise"
        )
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
    sample_pairs = pairs if sample_oracle else None
    per_fmr: list[FmrResult] = []
    for row, fmr in enumerate(fmrs):
        info = edc.threshold_info(similarity[~mated], fmr)
        if info.below_resolution:
            warnings.append(resolution_warning(benchmark, info))
        result = _curves_at_threshold(
            similarity, mated, pair_q, sample_pairs, info, limits, fm_edc=fm_edc
        )
        for curve in result.curves:
            if curve.kind == "method":
                curve.erc_fnmr = erc_all[curve.name][row]
                curve.erc_auc = edc.erc_auc(erc_ratios, curve.erc_fnmr)
        per_fmr.append(result)
    per_fnmr: list[FmrResult] = []
    for fnmr in fnmrs:
        info = fnmr_threshold_info(similarity, mated, fnmr)
        if fnmr < 1.0 / num_mated:
            warnings.append(
                f"{benchmark}: initial FNMR {fnmr:g} is below this benchmark's resolution "
                f"({num_mated} mated pairs, smallest measurable FNMR {1.0 / num_mated:.2g}); the "
                "threshold lies at the lowest mated score, so nothing starts as an error"
            )
        result = _curves_at_threshold(
            similarity, mated, pair_q, sample_pairs, info, limits, fm_edc=fm_edc
        )
        result.target_fnmr = fnmr
        per_fnmr.append(result)
    verification: dict[str, Any] = {"tar_at_fmr": tar_at_fmr(similarity, mated, list(fmrs))}
    if len(similarity) <= TEN_FOLD_MAX_PAIRS and len(similarity) >= 10:
        verification["ten_fold_accuracy"] = ten_fold_accuracy(similarity, mated).to_dict()
    result = BenchmarkResult(
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
        per_fnmr=per_fnmr,
    )
    if bootstrap:
        groups, unit = bootstrap_units(mated, pairs, unit_identity)
        bootstrap_intervals(
            result, similarity, mated, pair_q, groups, bootstrap, seed=bootstrap_seed, unit=unit
        )
    return result


def fnmr_threshold_info(
    similarity: np.ndarray, mated: np.ndarray, fnmr: float
) -> edc.ThresholdInfo:
    """The threshold at an initial FNMR (:func:`~igfiqa.evaluation.edc.threshold_at_fnmr` on the
    mated similarities) described as a :class:`~igfiqa.evaluation.edc.ThresholdInfo`:
    ``target_fmr`` NaN, ``achieved_fmr`` / ``false_matches`` the FMR at that threshold."""
    threshold = edc.threshold_at_fnmr(similarity[mated], fnmr)
    nonmated = similarity[~mated]
    false_matches = int(np.count_nonzero(nonmated >= threshold))
    return edc.ThresholdInfo(
        target_fmr=math.nan,
        threshold=threshold,
        achieved_fmr=false_matches / len(nonmated),
        false_matches=false_matches,
        num_nonmated=len(nonmated),
        resolution=1.0 / len(nonmated),
        below_resolution=False,
    )


# --------------------------------------------------------------------------------------------------
# bootstrap


def bootstrap_units(
    mated: np.ndarray, pairs: np.ndarray | None, unit_identity: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """The resampling group of every comparison and what the groups are.

    Each comparison belongs to the identity of its first sample (or template), as in the subsets
    bootstrap of Bolle et al. (2004):

    * ``unit_identity`` given (one identity per sample / template that ``pairs`` index): that
      identity (``"identity"``);
    * otherwise the samples joined by mated comparisons are one identity (connected components of
      the graph whose edges are the mated pairs; ``"identity (from mated pairs)"``). On an
      insightface ``.bin`` file every pair has its own two images, so each comparison is its own
      group there: the identities are not in the file;
    * no ``pairs`` (qualities per comparison): every comparison is its own group
      (``"comparison"``).

    Returns ``(group index per comparison, description)``.
    """
    mated = np.asarray(mated, dtype=bool)
    if pairs is None:
        return np.arange(len(mated)), "comparison"
    pairs = np.asarray(pairs, dtype=np.int64)
    if unit_identity is not None:
        identity = np.asarray(unit_identity)
        if identity.ndim != 1 or (pairs.size and pairs.max() >= len(identity)):
            raise DataError(
                f"unit_identity has {identity.shape} values but pairs index up to {pairs.max()}"
            )
        _, groups = np.unique(identity[pairs[:, 0]], return_inverse=True)
        return groups.reshape(-1), "identity"
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    size = int(pairs.max()) + 1 if pairs.size else 0
    edges = pairs[mated]
    graph = coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(size, size)
    )
    _, component = connected_components(graph, directed=False)
    _, groups = np.unique(component[pairs[:, 0]], return_inverse=True)
    return groups.reshape(-1), "identity (from mated pairs)"


def _scalar_metrics(
    similarity: np.ndarray,
    mated: np.ndarray,
    pair_q: Mapping[str, np.ndarray],
    starts: Sequence[tuple[str, float]],
    limits: Sequence[float],
    erc_ratios: np.ndarray,
    erc_rule: edc.ErcRule,
) -> dict[tuple, float]:
    """Every method's pAUC values and ERC AUC as :func:`evaluate_scores` computes them, keyed
    ``(start index, method, metric, limit)``; the thresholds are set on the given comparisons."""
    out: dict[tuple, float] = {}
    num_mated = int(np.count_nonzero(mated))
    if num_mated == 0 or num_mated == len(mated):
        return out
    nonmated_sim = similarity[~mated]
    mated_sim = similarity[mated]
    limit_array = np.asarray(limits, dtype=np.float64)
    thresholds = [
        edc.threshold_info(nonmated_sim, target).threshold
        if kind == "FMR"
        else edc.threshold_at_fnmr(mated_sim, target)
        for kind, target in starts
    ]
    for name, q in pair_q.items():
        # the EDC of every start from one sort: edc.edc_counts with the order shared
        quality = q[mated]
        order = np.argsort(quality, kind="stable")
        sorted_quality, sorted_sim = quality[order], mated_sim[order]
        group_starts = np.flatnonzero(sorted_quality[1:] != sorted_quality[:-1]) + 1
        discard = np.concatenate(([0], group_starts))
        d = np.append(discard / num_mated, 1.0)
        # width of each step on [0, L] for every limit: (limits, points)
        ends = np.minimum(np.append(d[1:], math.inf)[None, :], limit_array[:, None])
        widths = np.clip(ends - d[None, :], 0.0, None)
        for s, threshold in enumerate(thresholds):
            errors_before = np.concatenate(([0], np.cumsum(sorted_sim < threshold)))
            num_errors = int(errors_before[-1])
            e0 = num_errors / num_mated
            f = np.append((num_errors - errors_before[discard]) / (num_mated - discard), 0.0)
            for limit, value in zip(limits, widths @ f, strict=True):
                value = float(value)
                oracle = edc.oracle_pauc(num_errors, num_mated, limit)
                out[(s, name, "pauc", limit)] = value
                out[(s, name, "pauc_normalized", limit)] = edc.normalized_pauc(value, e0, limit)
                out[(s, name, "pauc_vs_oracle", limit)] = edc.relative_to_oracle(
                    value, e0, limit, oracle
                )
    fmr_rows = [(s, target) for s, (kind, target) in enumerate(starts) if kind == "FMR"]
    if fmr_rows:
        prepared = edc.SortedComparisons(similarity, mated)
        for name, q in pair_q.items():
            curves = edc.erc_curves(
                similarity,
                mated,
                q,
                [target for _, target in fmr_rows],
                erc_ratios,
                rule=erc_rule,
                prepared=prepared,
            )
            for (s, _), curve in zip(fmr_rows, curves, strict=True):
                out[(s, name, "erc_auc", None)] = edc.erc_auc(erc_ratios, curve)
    return out


def bootstrap_intervals(
    result: BenchmarkResult,
    similarity: np.ndarray,
    mated: np.ndarray,
    pair_q: Mapping[str, np.ndarray],
    groups: np.ndarray,
    resamples: int,
    *,
    seed: int = 0,
    unit: str = "identity",
) -> None:
    """Fill the 95% intervals of every method curve of ``result`` (in place).

    ``similarity``, ``mated`` and ``pair_q`` are the comparisons ``result`` was computed from (after
    exclusions) and ``groups`` the resampling group of each (:func:`bootstrap_units`). Each of the
    ``resamples`` draws G groups with replacement (G = number of groups; ``numpy`` generator seeded
    by ``seed``), repeats every comparison as often as its group was drawn, and recomputes the
    thresholds, EDCs, pAUCs and ERCs on that set with the same vectorised code as the estimate (a
    loop over resamples, none over comparisons or thresholds). The interval is the 2.5 and 97.5
    percentiles of the defined resampled values (NaN when fewer than half are defined), widened
    where needed to contain the estimate (as the expected-FNMR band). ``result.bootstrap`` records
    the settings and the time taken.
    """
    started = time.perf_counter()
    groups = np.asarray(groups, dtype=np.int64)
    num_groups = int(groups.max()) + 1 if groups.size else 0
    starts = [(fr.start, fr.target) for fr in result.starts]
    # comparisons ordered by group: a resample is np.repeat over group blocks
    order = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups, minlength=num_groups)
    sim_sorted, mated_sorted = similarity[order], mated[order]
    q_sorted = {name: q[order] for name, q in pair_q.items()}
    rng = np.random.default_rng(seed)
    draws: dict[tuple, np.ndarray] = {}
    for r in range(resamples):
        counts = np.bincount(rng.integers(0, num_groups, num_groups), minlength=num_groups)
        index = np.repeat(np.arange(len(order)), np.repeat(counts, sizes))
        values = _scalar_metrics(
            sim_sorted[index],
            mated_sorted[index],
            {name: q[index] for name, q in q_sorted.items()},
            starts,
            result.limits,
            result.erc_ratios,
            result.erc_rule,  # type: ignore[arg-type]
        )
        for key, value in values.items():
            draws.setdefault(key, np.full(resamples, np.nan))[r] = value
    alpha = (1.0 - BOOTSTRAP_CONFIDENCE) / 2.0

    def interval(key: tuple, estimate: float | None) -> tuple[float, float]:
        values = draws.get(key)
        if estimate is None or not math.isfinite(estimate) or values is None:
            return (math.nan, math.nan)
        finite = values[np.isfinite(values)]
        if len(finite) < BOOTSTRAP_MIN_DEFINED * resamples:
            return (math.nan, math.nan)
        low, high = np.quantile(finite, [alpha, 1.0 - alpha])
        return (float(min(low, estimate)), float(max(high, estimate)))

    for s, fr in enumerate(result.starts):
        for curve in fr.curves:
            if curve.kind != "method":
                continue
            for limit in result.limits:
                curve.pauc_ci[limit] = interval((s, curve.name, "pauc", limit), curve.pauc[limit])
                curve.pauc_normalized_ci[limit] = interval(
                    (s, curve.name, "pauc_normalized", limit), curve.pauc_normalized[limit]
                )
                curve.pauc_vs_oracle_ci[limit] = interval(
                    (s, curve.name, "pauc_vs_oracle", limit), curve.pauc_vs_oracle[limit]
                )
            if curve.erc_auc is not None:
                curve.erc_auc_ci = interval((s, curve.name, "erc_auc", None), curve.erc_auc)
    result.bootstrap = {
        "resamples": int(resamples),
        "seed": int(seed),
        "unit": unit,
        "num_units": num_groups,
        "confidence": BOOTSTRAP_CONFIDENCE,
        "interval": "percentile, widened to contain the estimate",
        "seconds": round(time.perf_counter() - started, 3),
    }


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
    *,
    fm_edc: bool = False,
) -> FmrResult:
    """Every method's FNM-EDC (and FM-EDC with ``fm_edc``) and the reference curves at one fixed
    threshold (the sample-level oracle only with ``pairs``)."""
    mated_sim = similarity[mated]
    num_mated = len(mated_sim)
    error = mated_sim < info.threshold
    num_errors = int(np.count_nonzero(error))
    e0 = num_errors / num_mated
    oracle = {L: edc.oracle_pauc(num_errors, num_mated, L) for L in limits}
    curves: list[CurveResult] = []
    fmr0 = info.achieved_fmr
    for name, q in pair_q.items():
        d, f = edc.edc(similarity, mated, q, info.threshold)
        curve = _curve(name, "method", d, f, e0, limits, oracle)
        if fm_edc:
            curve.fm_discard_fraction, curve.fm_fmr = edc.fm_edc(
                similarity, mated, q, info.threshold
            )
            curve.fm_pauc = {
                L: edc.pauc(curve.fm_discard_fraction, curve.fm_fmr, L) for L in limits
            }
            curve.fm_pauc_normalized = {
                L: edc.normalized_pauc(v, fmr0, L) for L, v in curve.fm_pauc.items()
            }
        curves.append(curve)
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
