"""Error versus discard characteristic (EDC), the CR-FIQA error versus reject curve (ERC), pAUC.

Terms used throughout (docs/evaluation.md):

* **comparison** / **pair**: two samples (images or templates) compared by a face recognition (FR)
  model; its **similarity** (comparison score) is higher for more similar faces.
* **mated**: both samples show the same identity; **non-mated**: different identities.
* **threshold** t: a comparison is a *match* iff similarity >= t (ISO convention), so a mated pair
  with similarity < t is a **false non-match** and a non-mated pair with similarity >= t a
  **false match**.
* **FNMR** = false non-matches / mated pairs; **FMR** = false matches / non-mated pairs.
* **pair quality**: one quality value per comparison, combined from its two samples' qualities
  (minimum by default): discarding a sample discards all of its comparisons.
* **discard fraction** d = discarded comparisons / all comparisons considered.
* **e0**: the error (FNMR) at zero discard.
* **starting threshold**: fixed at a target FMR (:func:`threshold_at_fmr`, on the non-mated
  comparisons) or at an initial FNMR (:func:`threshold_at_fnmr`, on the mated ones).

Two protocols are implemented and must never be confused:

* :func:`edc` -- the canonical ISO/IEC 29794-1 style FNM-EDC: the threshold is fixed once, on the
  full set, and only mated comparisons are discarded and counted.
  :func:`fm_edc` is its false-match counterpart (non-mated comparisons only, FMR).
* :func:`erc` -- the CR-FIQA protocol: a fraction of *all* comparisons is dropped and the threshold
  is recomputed on the remaining non-mated comparisons at every step. Which comparisons of a group
  of tied pair qualities are dropped depends on the rule (:func:`erc_quality_order`).

Everything here is pure numpy, vectorised (one sort plus cumulative counts), and raises
:class:`~igfiqa.errors.DataError` for malformed arrays and :class:`~igfiqa.errors.ConfigError` for
invalid parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from igfiqa.errors import ConfigError, DataError

PairReduce = Literal["min", "mean", "product"]
#: ERC rule: ``"crfiqa"`` (CR-FIQA's threshold rule and numpy's default argsort of the pair
#: qualities, as its ``ERC/erc.py``) or ``"iso"`` (ISO threshold rule, stable order); see :func:`erc`.
ErcRule = Literal["crfiqa", "iso"]

#: CR-FIQA's discard ratios: 0, 0.05, ..., 0.95 (20 steps), computed exactly as in its code.
DEFAULT_ERC_RATIOS = np.arange(0.0, 0.98, 0.05)


# --------------------------------------------------------------------------------------------------
# input checks


def as_1d(name: str, values: object, dtype: type = np.float64) -> np.ndarray:
    """``values`` as a 1-d array of ``dtype`` (bool: only booleans or 0/1); NaN is refused with the
    positions named."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-d array, got shape {array.shape}")
    if dtype is bool:
        if array.dtype != bool:
            if array.size and not np.isin(array, (0, 1)).all():
                raise DataError(f"{name} must be booleans (or 0/1), got other values")
            array = array.astype(bool)
        return array
    array = array.astype(dtype, copy=False)
    if array.size and not np.isfinite(array).all() and np.isnan(array).any():
        bad = np.flatnonzero(np.isnan(array))[:5].tolist()
        raise DataError(f"{name} contains NaN (first positions {bad}); remove or score those items")
    return array


def same_length(**arrays: np.ndarray) -> int:
    """The common length of the named arrays; a DataError naming every length otherwise."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"arrays must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value}")
    return value


# --------------------------------------------------------------------------------------------------
# pair and template quality


def combine_pair_quality(
    first: np.ndarray, second: np.ndarray, reduce: PairReduce = "min"
) -> np.ndarray:
    """Pair quality from the two samples' qualities: ``min`` (default), ``mean`` or ``product``."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if reduce == "min":
        return np.minimum(first, second)
    if reduce == "mean":
        return (first + second) / 2.0
    if reduce == "product":
        return first * second
    raise ConfigError(f"pair quality reduce must be 'min', 'mean' or 'product', got {reduce!r}")


def pair_quality(quality: np.ndarray, pairs: np.ndarray, reduce: PairReduce = "min") -> np.ndarray:
    """Quality of each comparison ``pairs[i] = (a, b)``: ``reduce(quality[a], quality[b])``.

    ``quality`` holds one value per sample (or per template, when ``pairs`` index templates).
    """
    quality = as_1d("quality", quality)
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise DataError(f"pairs must have shape (P, 2), got {pairs.shape}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= len(quality)):
        raise DataError(
            f"pairs index samples 0..{len(quality) - 1} but contain {pairs.min()}..{pairs.max()}"
        )
    return combine_pair_quality(quality[pairs[:, 0]], quality[pairs[:, 1]], reduce)


def template_quality(
    sample_quality: np.ndarray, sample_template: np.ndarray, num_templates: int | None = None
) -> np.ndarray:
    """Quality of each template = the minimum quality over its images.

    ``sample_template[i]`` is the template index (0 .. T-1) of sample i. Templates without images
    get NaN.
    """
    sample_quality = as_1d("sample_quality", sample_quality)
    sample_template = np.asarray(sample_template, dtype=np.int64)
    same_length(sample_quality=sample_quality, sample_template=sample_template)
    if sample_template.size and sample_template.min() < 0:
        raise DataError("sample_template must hold template indices >= 0")
    count = int(sample_template.max()) + 1 if sample_template.size else 0
    if num_templates is None:
        num_templates = count
    elif num_templates < count:
        raise DataError(f"sample_template refers to template {count - 1} >= {num_templates}")
    result = np.full(num_templates, np.inf)
    np.minimum.at(result, sample_template, sample_quality)
    result[np.bincount(sample_template, minlength=num_templates) == 0] = np.nan
    return result


# --------------------------------------------------------------------------------------------------
# thresholds


@dataclass(frozen=True)
class ThresholdInfo:
    """A threshold chosen at a target FMR on a set of non-mated similarities.

    ``false_matches`` / ``num_nonmated`` = ``achieved_fmr`` <= ``target_fmr``. ``resolution`` =
    1 / ``num_nonmated`` is the smallest non-zero FMR the set can measure; ``below_resolution`` is
    True when 0 < target < resolution: then no non-mated comparison may match and the threshold
    lies just above the highest non-mated similarity, so the requested FMR is not actually measured.
    """

    target_fmr: float
    threshold: float
    achieved_fmr: float
    false_matches: int
    num_nonmated: int
    resolution: float
    below_resolution: bool

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return asdict(self)


def allowed_false_matches(num_nonmated: int, fmr: float) -> int:
    """The largest count k with k / num_nonmated <= fmr (evaluated in float64, as the definition)."""
    if num_nonmated <= 0:
        raise DataError("no non-mated comparisons: an FMR threshold needs at least one")
    fmr = _check_rate("fmr", fmr)
    k = min(math.floor(fmr * num_nonmated), num_nonmated)
    while k < num_nonmated and (k + 1) / num_nonmated <= fmr:
        k += 1
    while k > 0 and k / num_nonmated > fmr:
        k -= 1
    return k


def fmr_resolution(num_nonmated: int) -> float:
    """The smallest non-zero FMR measurable with ``num_nonmated`` comparisons: 1 / num_nonmated."""
    if num_nonmated <= 0:
        raise DataError("no non-mated comparisons")
    return 1.0 / num_nonmated


def is_below_resolution(fmr: float, num_nonmated: int) -> bool:
    """True when 0 < fmr < 1 / num_nonmated (the FMR cannot be measured on this many comparisons)."""
    return 0.0 < float(fmr) < fmr_resolution(num_nonmated)


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest value (k = 1 is the maximum), counting ties with multiplicity."""
    position = len(values) - k
    return float(np.partition(values, position)[position])


def threshold_info(nonmated_similarity: np.ndarray, fmr: float) -> ThresholdInfo:
    """Threshold at a target FMR with its achieved FMR and resolution flag (see :func:`threshold_at_fmr`)."""
    scores = as_1d("nonmated_similarity", nonmated_similarity)
    n = len(scores)
    k = allowed_false_matches(n, fmr)
    threshold = -math.inf if k >= n else float(np.nextafter(_kth_largest(scores, k + 1), math.inf))
    false_matches = int(np.count_nonzero(scores >= threshold))
    return ThresholdInfo(
        target_fmr=float(fmr),
        threshold=threshold,
        achieved_fmr=false_matches / n,
        false_matches=false_matches,
        num_nonmated=n,
        resolution=1.0 / n,
        below_resolution=is_below_resolution(fmr, n),
    )


def threshold_at_fmr(nonmated_similarity: np.ndarray, fmr: float) -> float:
    """The smallest threshold t (in float64) with count(nonmated >= t) / N <= fmr.

    With the k-th largest non-mated similarity written s_(k) and K the largest count allowed by the
    target (K / N <= fmr), the condition holds exactly for t > s_(K+1): ties at s_(K+1) all stay
    below t, so the achieved FMR may be lower than K / N. The returned t is the next float64 above
    s_(K+1) (``-inf`` when K = N). When 0 < fmr < 1/N (below the set's resolution) K = 0 and t lies
    just above the highest non-mated similarity; use :func:`threshold_info` or
    :func:`is_below_resolution` to detect and report that case.
    """
    return threshold_info(nonmated_similarity, fmr).threshold


def threshold_at_fnmr(mated_similarity: np.ndarray, fnmr: float) -> float:
    """The largest threshold t with count(mated < t) / G <= fnmr (a starting FNMR).

    With s_(j) the j-th smallest mated similarity and K the largest count with K / G <= fnmr,
    t = s_(K+1) (``+inf`` when K = G): exactly the mated pairs below s_(K+1) are non-matches.
    """
    scores = as_1d("mated_similarity", mated_similarity)
    g = len(scores)
    if g == 0:
        raise DataError("no mated comparisons: a starting-FNMR threshold needs at least one")
    k = allowed_false_matches(g, fnmr)  # same counting rule, on the mated side
    if k >= g:
        return math.inf
    return float(np.partition(scores, k)[k])


# --------------------------------------------------------------------------------------------------
# EDC (fixed threshold)


def _mated_arrays(
    similarity: np.ndarray, mated: np.ndarray, pair_quality_: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    similarity = as_1d("similarity", similarity)
    mated = as_1d("mated", mated, bool)
    pair_quality_ = as_1d("pair_quality", pair_quality_)
    same_length(similarity=similarity, mated=mated, pair_quality=pair_quality_)
    if not mated.any():
        raise DataError("no mated comparisons: the FNM-EDC needs at least one")
    return similarity[mated], pair_quality_[mated]


def edc_counts(
    similarity: np.ndarray, mated: np.ndarray, pair_quality: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """The FNM-EDC as integer counts: ``(discard_counts, error_counts, num_mated)``.

    ``discard_counts[j]`` = mated comparisons with pair quality below the j-th distinct quality
    value (0 first), ``error_counts[j]`` = false non-matches (similarity < threshold) among the
    remaining ones.
    """
    scores, quality = _mated_arrays(similarity, mated, pair_quality)
    return _discard_counts(quality, scores < threshold)


def _discard_counts(quality: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(discard_counts, error_counts, n)`` of comparisons discarded by ascending ``quality``,
    one point per distinct quality value (ties discarded together)."""
    n = len(quality)
    order = np.argsort(quality, kind="stable")
    sorted_quality = quality[order]
    errors_before = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(errors[order], out=errors_before[1:])
    starts = np.flatnonzero(sorted_quality[1:] != sorted_quality[:-1]) + 1
    discard = np.concatenate(([0], starts)).astype(np.int64)
    remaining_errors = errors_before[n] - errors_before[discard]
    return discard, remaining_errors, n


def edc(
    similarity: np.ndarray, mated: np.ndarray, pair_quality: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """FNM-EDC with a fixed threshold: ``(discard_fraction, fnmr)``.

    Only mated comparisons count. With G mated comparisons sorted by ascending pair quality, the
    curve has one point per distinct pair-quality value q: k = number of mated comparisons with
    quality < q (tied comparisons are discarded together, so the curve does not depend on sort
    order), discard fraction k / G and FNMR = (false non-matches among the other G - k) / (G - k),
    a false non-match being similarity < threshold. The first point is (0, e0). A final point
    (1, 0) is appended (nothing left, nothing wrong) unless the last point already is at 1.
    """
    discard, errors, n = edc_counts(similarity, mated, pair_quality, threshold)
    discard_fraction = discard / n
    fnmr = errors / (n - discard)
    return np.append(discard_fraction, 1.0), np.append(fnmr, 0.0)


def fm_edc_counts(
    similarity: np.ndarray, mated: np.ndarray, pair_quality: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """The FM-EDC as integer counts: ``(discard_counts, false_match_counts, num_nonmated)``.

    The mirror of :func:`edc_counts` on the non-mated side: ``discard_counts[j]`` = non-mated
    comparisons with pair quality below the j-th distinct value, ``false_match_counts[j]`` = false
    matches (similarity >= threshold) among the remaining ones.
    """
    similarity = as_1d("similarity", similarity)
    mated = as_1d("mated", mated, bool)
    pair_quality_ = as_1d("pair_quality", pair_quality)
    same_length(similarity=similarity, mated=mated, pair_quality=pair_quality_)
    if mated.all():
        raise DataError("no non-mated comparisons: the FM-EDC needs at least one")
    return _discard_counts(pair_quality_[~mated], similarity[~mated] >= threshold)


def fm_edc(
    similarity: np.ndarray, mated: np.ndarray, pair_quality: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """FM-EDC with a fixed threshold: ``(discard_fraction, fmr)``.

    The false-match EDC (the FMR error mode of the EDC in Schlett et al., "Considerations on the
    evaluation of biometric quality assessment algorithms", 2023): only non-mated comparisons
    count. With M of them sorted by ascending pair
    quality, one point per distinct pair-quality value q: k = non-mated comparisons with quality
    < q, discard fraction k / M and FMR = (false matches among the other M - k) / (M - k), a false
    match being similarity >= threshold. It starts at (0, FMR at the threshold) and ends with
    (1, 0). A curve that stays flat (or rises) says that discarding low quality does not lower the
    false matches: that is the usual finding, and the reason the FNM-EDC is the main one.
    """
    discard, errors, n = fm_edc_counts(similarity, mated, pair_quality, threshold)
    return np.append(discard / n, 1.0), np.append(errors / (n - discard), 0.0)


def pauc(discard_fraction: np.ndarray, error: np.ndarray, limit: float) -> float:
    """Stepwise partial area under an EDC on [0, limit].

    The curve is the step function error[i] on [d[i], d[i+1]) (d = discard_fraction, starting at 0,
    non-decreasing); the last step is cut at ``limit`` (and extended to it if the curve ends before).
    """
    d = as_1d("discard_fraction", discard_fraction)
    e = as_1d("error", error)
    same_length(discard_fraction=d, error=e)
    limit = _check_rate("limit", limit)
    if len(d) == 0 or d[0] != 0.0:
        raise DataError("discard_fraction must start at 0")
    if np.any(np.diff(d) < 0):
        raise DataError("discard_fraction must be non-decreasing")
    ends = np.minimum(np.append(d[1:], math.inf), limit)
    widths = np.clip(ends - d, 0.0, None)
    return float(np.dot(e, widths))


def normalized_pauc(pauc_value: float, e0: float, limit: float) -> float:
    """pAUC / (e0 * limit): 1.0 = no better than not discarding; NaN when e0 = 0 (nothing to fix)."""
    denominator = e0 * limit
    return float(pauc_value / denominator) if denominator > 0 else math.nan


# --------------------------------------------------------------------------------------------------
# reference lines


def theoretical_best_fnmr(e0: float, discard_fraction: np.ndarray) -> np.ndarray:
    """Theoretical-best line (Olsen et al.): max(0, e0 - d), from (0, e0) to (e0, 0)."""
    return np.maximum(0.0, e0 - np.asarray(discard_fraction, dtype=np.float64))


def theoretical_best_pauc(e0: float, limit: float) -> float:
    """Area under the theoretical-best line on [0, L]: e0^2/2 - max(0, e0 - L)^2/2."""
    return float(e0 * e0 / 2.0 - max(0.0, e0 - limit) ** 2 / 2.0)


def oracle_fnmr(e0: float, discard_fraction: np.ndarray) -> np.ndarray:
    """Comparison-level oracle curve max(0, (e0 - d) / (1 - d)) (0 at d = 1).

    It is the FNMR after discarding the erroneous mated comparisons first, at a fixed threshold.
    """
    d = np.asarray(discard_fraction, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(d < 1.0, (e0 - d) / (1.0 - d), 0.0)
    return np.maximum(0.0, value)


def oracle_edc(num_errors: int, num_mated: int) -> tuple[np.ndarray, np.ndarray]:
    """The discrete comparison-level oracle EDC on ``num_mated`` comparisons with ``num_errors``
    false non-matches: points (k / G, (E - k) / (G - k)) for k = 0..E, then (1, 0).

    This is exactly the EDC reached by a pair quality that ranks every erroneous comparison below
    every correct one (and gives the errors distinct values); its points lie on :func:`oracle_fnmr`.
    """
    if num_mated <= 0 or not 0 <= num_errors <= num_mated:
        raise DataError(
            f"need 0 <= num_errors <= num_mated, num_mated > 0; got {num_errors}, {num_mated}"
        )
    k = np.arange(num_errors + 1, dtype=np.int64)
    if num_errors == num_mated:
        k = k[:-1]
    d = k / num_mated
    f = (num_errors - k) / (num_mated - k)
    return np.append(d, 1.0), np.append(f, 0.0)


def oracle_pauc(num_errors: int, num_mated: int, limit: float) -> float:
    """Stepwise pAUC of the discrete comparison-level oracle (:func:`oracle_edc`) on [0, L]."""
    return pauc(*oracle_edc(num_errors, num_mated), limit)


def relative_to_oracle(pauc_value: float, e0: float, limit: float, oracle_value: float) -> float:
    """(pAUC - oracle) / (e0 * L - oracle): 0 = as good as the oracle, 1 = no better than random.

    NaN when the denominator is 0 (e0 = 0, or every comparison is an error so the oracle cannot do
    better than random).
    """
    denominator = e0 * limit - oracle_value
    return float((pauc_value - oracle_value) / denominator) if denominator > 1e-15 else math.nan


def greedy_sample_oracle(pairs: np.ndarray, error: np.ndarray, num_samples: int) -> np.ndarray:
    """Greedy sample-level oracle quality (a reference, not a FIQA method; it uses the labels).

    ``pairs`` (P, 2) are the mated comparisons (sample or template indices) and ``error`` marks the
    false non-matches among them at a fixed threshold. Repeatedly discard the sample that takes part
    in the most remaining false non-matches (ties: the fewest remaining correct comparisons, then the
    lowest index) until none remain. The i-th discarded sample gets quality i; the others share the
    highest quality. With min pair quality its EDC is the greedy sample-level oracle curve.
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    error = as_1d("error", error, bool)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) != len(error):
        raise DataError(
            f"pairs must be (P, 2) with one error flag each; got {pairs.shape}, {error.shape}"
        )
    quality = np.full(num_samples, np.nan)
    err_pairs = pairs[error]
    ok_pairs = pairs[~error]
    err_count = np.bincount(err_pairs.ravel(), minlength=num_samples).astype(np.int64)
    ok_count = np.bincount(ok_pairs.ravel(), minlength=num_samples).astype(np.float64)

    def _csr(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ends = np.concatenate([edges[:, 0], edges[:, 1]])
        partners = np.concatenate([edges[:, 1], edges[:, 0]])
        edge_id = np.concatenate([np.arange(len(edges)), np.arange(len(edges))])
        order = np.argsort(ends, kind="stable")
        offsets = np.zeros(num_samples + 1, dtype=np.int64)
        np.cumsum(np.bincount(ends, minlength=num_samples), out=offsets[1:])
        return offsets, partners[order], edge_id[order]

    err_off, err_partner, err_id = _csr(err_pairs)
    ok_off, ok_partner, ok_id = _csr(ok_pairs)
    err_alive = np.ones(len(err_pairs), dtype=bool)
    ok_alive = np.ones(len(ok_pairs), dtype=bool)
    removed = np.zeros(num_samples, dtype=bool)
    scale = 1.0 / (ok_count.max(initial=0.0) + 1.0)
    rank = 0
    while True:
        key = np.where(removed, -np.inf, err_count - ok_count * scale)
        best = int(np.argmax(key))
        if removed[best] or err_count[best] <= 0:
            break
        removed[best] = True
        quality[best] = rank
        rank += 1
        for offsets, partner, ids, alive, counts in (
            (err_off, err_partner, err_id, err_alive, err_count),
            (ok_off, ok_partner, ok_id, ok_alive, ok_count),
        ):
            sl = slice(offsets[best], offsets[best + 1])
            live = alive[ids[sl]]
            edge = ids[sl][live]
            alive[np.unique(edge)] = False
            # each live edge loses one count at both ends (best and its partner)
            np.subtract.at(counts, partner[sl][live], 1)
            counts[best] = 0
    quality[np.isnan(quality)] = rank
    return quality


# --------------------------------------------------------------------------------------------------
# ERC (CR-FIQA protocol)


def _erc_threshold_crfiqa(
    nonmated_sorted: np.ndarray, mated_sorted: np.ndarray, fmr: float
) -> float:
    """CR-FIQA's rule on one remaining set; both inputs ascending, non-empty non-mated.

    Candidates are all remaining similarities (mated and non-mated); each has FMR(t) =
    count(non-mated >= t) / M; the candidate with |FMR(t) - target| smallest wins, the smallest
    such t on ties (``np.argmin`` over ascending candidates).
    """
    x = nonmated_sorted
    m = len(x)
    # Attainable counts are M - b for b a start of a group of equal values in x (plus 0 if a mated
    # similarity exceeds max(x)). The best b lies next to p = M (1 - fmr).
    p = m * (1.0 - fmr)
    lo_index = min(math.floor(p), m - 1)
    b_low = int(np.searchsorted(x, x[lo_index], "left"))
    hi_index = math.ceil(p)
    b_high = 0 if hi_index <= 0 else int(np.searchsorted(x, x[min(hi_index, m) - 1], "right"))
    candidates = [b_low]
    if b_high != b_low and (
        b_high < m or np.searchsorted(mated_sorted, x[m - 1], "right") < len(mated_sorted)
    ):
        candidates.append(b_high)
    # smallest |FMR - target|, ties -> larger count = smaller threshold = smaller b
    best = min(candidates, key=lambda b: (abs((m - b) / m - fmr), b))
    lower = x[best - 1] if best > 0 else -math.inf
    first_mated = int(np.searchsorted(mated_sorted, lower, "right"))
    mated_in_gap = first_mated < len(mated_sorted) and (
        best == m or mated_sorted[first_mated] <= x[best]
    )
    return float(mated_sorted[first_mated]) if mated_in_gap else float(x[best])


def erc_quality_order(pair_quality: np.ndarray, rule: ErcRule = "crfiqa") -> np.ndarray:
    """The order in which the ERC discards comparisons: indices by ascending pair quality.

    Pair qualities are often tied (the minimum of two image qualities), and which of the tied
    comparisons fall on the dropped side of floor(u N) changes the curve, so each rule fixes it:

    * ``"crfiqa"``: ``np.argsort`` with numpy's default kind (``"quicksort"``: introsort, or the
      SIMD sort numpy dispatches to on the CPU) over the float64 pair qualities of *all*
      comparisons, mated and non-mated, in the order they are given -- exactly what CR-FIQA's
      ``ERC/erc.py`` (``getFNMRFixedTH``, ``desc=True``) does with its ``pair_list.txt``. Tied
      comparisons therefore come out in an order that is not by position and that depends on the
      numpy version and CPU; the result equals CR-FIQA's when the comparisons are given in the order
      of its pair list (igfiqa's ``.bin`` benchmarks give pair i = images 2i, 2i+1 in ``issame``
      order, the layout of CR-FIQA's pair list) and both run on the same numpy and CPU. (For an
      uncertainty score, PFE, CR-FIQA reverses that argsort, ``desc=False``; igfiqa expects higher
      = better, and the argsort of a negated score may order its ties differently.)
    * ``"iso"``: a stable sort, ties by position (the earlier comparison is dropped first), so the
      curve is that of the qualities made distinct by position and does not depend on the platform.

    Comparisons excluded beforehand (e.g. failed images in
    :func:`~igfiqa.evaluation.results.evaluate_scores`) are simply absent: the order is that of a
    pair list without them.
    """
    quality = as_1d("pair_quality", pair_quality)
    if rule == "crfiqa":
        # CR-FIQA: qlts = np.array(list of floats); np.argsort(qlts) -- same dtype, layout and kind
        return np.argsort(np.ascontiguousarray(quality, dtype=np.float64))
    if rule == "iso":
        return np.argsort(quality, kind="stable")
    raise ConfigError(f"erc rule must be 'crfiqa' or 'iso', got {rule!r}")


class SortedComparisons:
    """Similarities split into non-mated and mated, each sorted ascending, with their pair indices.

    Built once per (benchmark, FR model) and shared by the ERCs of all quality methods.
    """

    def __init__(self, similarity: np.ndarray, mated: np.ndarray) -> None:
        similarity = as_1d("similarity", similarity)
        mated = as_1d("mated", mated, bool)
        self.num_pairs = same_length(similarity=similarity, mated=mated)
        if self.num_pairs == 0:
            raise DataError("no comparisons")
        sides = []
        for side in (~mated, mated):
            index = np.flatnonzero(side)
            values = similarity[index]
            order = np.argsort(values)  # order among equal similarities does not matter
            sides.append((values[order], index[order]))
        (self.nonmated_sorted, self.nonmated_index), (self.mated_sorted, self.mated_index) = sides


def erc_curves(
    similarity: np.ndarray,
    mated: np.ndarray,
    pair_quality: np.ndarray,
    fmrs: list[float] | tuple[float, ...] | np.ndarray,
    ratios: np.ndarray = DEFAULT_ERC_RATIOS,
    *,
    rule: ErcRule = "crfiqa",
    prepared: SortedComparisons | None = None,
) -> np.ndarray:
    """ERCs at several target FMRs at once: array (len(fmrs), len(ratios)); see :func:`erc`.

    ``prepared`` (a :class:`SortedComparisons` of the same similarity/mated) skips the sorting.
    """
    if prepared is None:
        prepared = SortedComparisons(similarity, mated)
    n = prepared.num_pairs
    quality = as_1d("pair_quality", pair_quality)
    if len(quality) != n:
        raise DataError(f"pair_quality has {len(quality)} values for {n} comparisons")
    ratios = as_1d("ratios", ratios)
    if rule not in ("crfiqa", "iso"):
        raise ConfigError(f"erc rule must be 'crfiqa' or 'iso', got {rule!r}")
    fmrs = [_check_rate("fmr", f) for f in fmrs]
    if ratios.size and (ratios.min() < 0 or ratios.max() > 1):
        raise ConfigError("erc ratios must lie in [0, 1]")
    # position of every comparison in the quality order; a step keeps positions >= floor(u N)
    rank_type = np.int32 if n < 2**31 else np.int64
    quality_rank = np.empty(n, dtype=rank_type)
    quality_rank[erc_quality_order(quality, rule)] = np.arange(n, dtype=rank_type)
    x_all, x_rank = prepared.nonmated_sorted, quality_rank[prepared.nonmated_index]
    g_all, g_rank = prepared.mated_sorted, quality_rank[prepared.mated_index]
    del quality_rank
    drops = np.floor(ratios * n).astype(np.int64)
    fnmr = np.full((len(fmrs), len(ratios)), np.nan)
    for step, drop in enumerate(drops):
        x = x_all[x_rank >= drop]
        g = g_all[g_rank >= drop]
        if len(x) == 0 or len(g) == 0:
            continue
        for row, fmr in enumerate(fmrs):
            if rule == "crfiqa":
                t = _erc_threshold_crfiqa(x, g, fmr)
                fnmr[row, step] = np.searchsorted(g, t, "right") / len(g)
            else:
                k = allowed_false_matches(len(x), fmr)
                t = -math.inf if k >= len(x) else float(np.nextafter(x[len(x) - 1 - k], math.inf))
                fnmr[row, step] = np.searchsorted(g, t, "left") / len(g)
    return fnmr


def erc(
    similarity: np.ndarray,
    mated: np.ndarray,
    pair_quality: np.ndarray,
    fmr: float,
    ratios: np.ndarray = DEFAULT_ERC_RATIOS,
    *,
    rule: ErcRule = "crfiqa",
    prepared: SortedComparisons | None = None,
) -> np.ndarray:
    """FNMR per discard ratio under the CR-FIQA ERC protocol (threshold recomputed per step).

    For each ratio u: order all N comparisons (mated and non-mated) by ascending pair quality and
    drop the first floor(u * N); on the remaining ones choose a threshold at the target FMR from the
    remaining non-mated similarities, then report the FNMR of the remaining mated ones (NaN when
    none remain).

    ``rule="crfiqa"`` (default) reproduces CR-FIQA's ``ERC/erc.py`` and ``ERC/roc.py``. Tied pair
    qualities are ordered as its code orders them: numpy's default (unstable) ``np.argsort`` over
    the pair qualities of all comparisons in the given order (:func:`erc_quality_order`), so the
    ERC equals CR-FIQA's when the comparisons come in the order of its pair list. Candidate
    thresholds are all remaining similarities, the one whose FMR (non-mated >= t) is closest to the
    target is used (smallest on ties), and a mated comparison is accepted only if its similarity is
    strictly above it (CR-FIQA compares distances with ``<``).

    ``rule="iso"`` orders tied pair qualities by position (a stable sort: the earlier comparison is
    dropped first), uses :func:`threshold_at_fmr` on the remaining non-mated similarities and counts
    similarity < t as a non-match.

    This protocol moves the threshold; it is not the ISO EDC (:func:`edc`).
    """
    return erc_curves(similarity, mated, pair_quality, [fmr], ratios, rule=rule, prepared=prepared)[
        0
    ]


def erc_auc(ratios: np.ndarray, fnmr: np.ndarray) -> float:
    """Trapezoid area under the ERC over the given ratios (CR-FIQA: [0, 0.95]); not normalised."""
    x = as_1d("ratios", ratios)
    y = np.asarray(fnmr, dtype=np.float64)
    same_length(ratios=x, fnmr=y)
    if len(x) < 2:
        return 0.0
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
