"""EDC, ERC, pAUC and reference lines: hand-computed cases, brute-force references, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igfiqa.errors import ConfigError, DataError
from igfiqa.evaluation import edc as E

# --------------------------------------------------------------------------------------------------
# plain reference implementations (loops, written independently of the module)


def reference_edc(similarity, mated, quality, threshold):
    s = [float(v) for v, m in zip(similarity, mated, strict=False) if m]
    q = [float(v) for v, m in zip(quality, mated, strict=False) if m]
    g = len(s)
    xs, ys = [], []
    for value in sorted(set(q)):
        kept = [i for i in range(g) if q[i] >= value]
        errors = sum(1 for i in kept if s[i] < threshold)
        xs.append((g - len(kept)) / g)
        ys.append(errors / len(kept))
    if xs[-1] != 1.0:
        xs.append(1.0)
        ys.append(0.0)
    return np.array(xs), np.array(ys)


def official_order(quality):
    """CR-FIQA ``ERC/erc.py`` (desc=True): ``np.argsort(np.array(qlts))``, qlts the list of pair
    qualities (floats) in pair-list order; numpy's default kind."""
    return [int(i) for i in np.argsort(np.array([float(v) for v in quality]))]


def stable_order(quality):
    """Ascending quality, ties by position."""
    return sorted(range(len(quality)), key=lambda i: (quality[i], i))


def reference_erc(similarity, mated, quality, fmr, ratios, order=None):
    """CR-FIQA threshold rule in similarity space; pairs dropped in ``order`` (official by default)."""
    n = len(similarity)
    order = official_order(quality) if order is None else order
    result = []
    for u in ratios:
        kept = order[math.floor(u * n) :]
        nm = [similarity[i] for i in kept if not mated[i]]
        gen = [similarity[i] for i in kept if mated[i]]
        if not nm or not gen:
            result.append(math.nan)
            continue
        best_t, best_gap = None, None
        for t in sorted({similarity[i] for i in kept}):  # ascending candidates, first minimum wins
            rate = sum(1 for v in nm if v >= t) / len(nm)
            gap = abs(rate - fmr)
            if best_gap is None or gap < best_gap:
                best_t, best_gap = t, gap
        result.append(sum(1 for v in gen if v <= best_t) / len(gen))
    return np.array(result)


def reference_official_erc(similarity, mated, quality, fmr):
    """CR-FIQA ``getFNMRFixedTH`` + ``ERC/roc.py`` written out with loops, on dissimilarities
    d = -similarity (any decreasing map; CR-FIQA uses arccos(cos) / pi).

    Per ratio u in arange(0, 0.98, 0.05): keep ``order[int(u * N):]``; thresholds are the distinct
    remaining distances, visited as ``roc.py`` lists them (descending distance); FMR(t) = impostor
    distances <= t over impostors; the first minimum of |FMR - target| wins; FNMR = 1 - (genuine
    distances < t) / genuine. Returns (curve, AUC with sklearn's trapezoid over x = 100 u / 100).
    """
    n = len(similarity)
    order = official_order(quality)
    rates = np.arange(0, 0.98, 0.05)
    curve = []
    for u in rates:
        kept = order[int(u * n) :]
        gen = [-float(similarity[i]) for i in kept if mated[i]]
        imp = [-float(similarity[i]) for i in kept if not mated[i]]
        if not gen or not imp:
            curve.append(math.nan)
            continue
        best_t, best_gap = None, None
        for t in sorted(set(gen + imp), reverse=True):
            gap = abs(sum(1 for v in imp if v <= t) / len(imp) - fmr)
            if best_gap is None or gap < best_gap:
                best_t, best_gap = t, gap
        curve.append(1 - sum(1 for v in gen if v < best_t) / len(gen))
    x = 100 * rates / 100  # as CR-FIQA's save_pdf
    auc = sum((x[i + 1] - x[i]) * (curve[i] + curve[i + 1]) / 2 for i in range(len(x) - 1))
    return np.array(curve), auc


def reference_iso_erc(similarity, mated, quality, fmr, ratios):
    """ISO rule, ties by position: a mated pair is a non-match iff a threshold at its similarity
    would exceed the target FMR on the remaining non-mated pairs (count(nm >= s) / M > fmr)."""
    n = len(similarity)
    order = stable_order(quality)
    result = []
    for u in ratios:
        kept = order[math.floor(u * n) :]
        nm = [similarity[i] for i in kept if not mated[i]]
        gen = [similarity[i] for i in kept if mated[i]]
        if not nm or not gen:
            result.append(math.nan)
            continue
        misses = sum(1 for g in gen if sum(1 for v in nm if v >= g) / len(nm) > fmr)
        result.append(misses / len(gen))
    return np.array(result)


def reference_pauc(d, e, limit):
    area = 0.0
    for i in range(len(d)):
        right = d[i + 1] if i + 1 < len(d) else math.inf
        if d[i] >= limit:
            break
        area += e[i] * (min(right, limit) - d[i])
    return area


# --------------------------------------------------------------------------------------------------
# pair and template quality


def test_pair_quality_reductions():
    q = np.array([0.2, 0.9, 0.5])
    pairs = np.array([[0, 1], [1, 2], [2, 2]])
    assert np.allclose(E.pair_quality(q, pairs), [0.2, 0.5, 0.5])
    assert np.allclose(E.pair_quality(q, pairs, "mean"), [0.55, 0.7, 0.5])
    assert np.allclose(E.pair_quality(q, pairs, "product"), [0.18, 0.45, 0.25])
    with pytest.raises(ConfigError):
        E.pair_quality(q, pairs, "max")
    with pytest.raises(DataError, match="index samples"):
        E.pair_quality(q, np.array([[0, 3]]))


def test_template_quality_is_min_over_images_and_nan_when_empty():
    sample_q = np.array([0.3, 0.7, 0.1, 0.9, 0.5])
    sample_t = np.array([0, 0, 2, 2, 0])
    tq = E.template_quality(sample_q, sample_t, num_templates=4)
    assert tq[0] == 0.3 and tq[2] == 0.1
    assert np.isnan(tq[1]) and np.isnan(tq[3])


# --------------------------------------------------------------------------------------------------
# thresholds


def test_threshold_at_fmr_with_ties():
    nm = np.array([0.1, 0.5, 0.9, 0.5])
    t = E.threshold_at_fmr(nm, 0.25)  # K = 1: must exclude both 0.5s
    assert 0.5 < t <= np.nextafter(0.5, 1.0)
    assert np.count_nonzero(nm >= t) == 1
    # K = 2 is allowed, but the tie at 0.5 cannot be split: still one false match
    info = E.threshold_info(nm, 0.5)
    assert info.false_matches == 1 and info.achieved_fmr == 0.25 and not info.below_resolution
    # K = 3: just above the lowest score
    assert np.count_nonzero(nm >= E.threshold_at_fmr(nm, 0.75)) == 3
    assert E.threshold_at_fmr(nm, 0.75) > 0.1
    assert E.threshold_at_fmr(nm, 1.0) == -math.inf


def test_threshold_is_the_smallest_satisfying_float():
    rng = np.random.default_rng(0)
    nm = rng.normal(size=1000)
    for fmr in (0.001, 0.01, 0.1, 0.37):
        t = E.threshold_at_fmr(nm, fmr)
        assert np.count_nonzero(nm >= t) / 1000 <= fmr
        below = np.nextafter(t, -math.inf)
        assert np.count_nonzero(nm >= below) / 1000 > fmr


def test_fmr_below_resolution_is_flagged():
    nm = np.linspace(-1, 0.5, 3000)
    info = E.threshold_info(nm, 1e-4)
    assert info.below_resolution and info.false_matches == 0 and info.achieved_fmr == 0.0
    assert info.threshold > 0.5 and info.resolution == pytest.approx(1 / 3000)
    ok = E.threshold_info(nm, 1e-3)
    assert not ok.below_resolution and ok.false_matches == 3
    assert E.is_below_resolution(1e-4, 3000) and not E.is_below_resolution(1e-4, 10_000)
    assert not E.is_below_resolution(0.0, 10)  # FMR 0 is measured exactly
    with pytest.raises(ConfigError):
        E.threshold_at_fmr(nm, 1.5)
    with pytest.raises(DataError):
        E.threshold_at_fmr(np.array([]), 0.1)


def test_threshold_at_fnmr():
    g = np.array([0.8, 0.2, 0.6, 0.4])
    assert E.threshold_at_fnmr(g, 0.25) == 0.4  # one non-match (0.2)
    assert E.threshold_at_fnmr(g, 0.0) == 0.2
    assert E.threshold_at_fnmr(g, 0.6) == 0.6
    assert E.threshold_at_fnmr(g, 1.0) == math.inf


# --------------------------------------------------------------------------------------------------
# EDC and pAUC, by hand

# five mated pairs and one non-mated (ignored by the FNM-EDC)
SIM = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.95])
MATED = np.array([True, True, True, True, True, False])
QUAL = np.array([1.0, 5.0, 2.0, 2.0, 3.0, 0.0])


def test_edc_hand_computed_with_tied_qualities():
    d, f = E.edc(SIM, MATED, QUAL, 0.5)
    # errors (s < 0.5): pairs 0 (q=1) and 2 (q=2, tied with pair 3, discarded together)
    assert np.allclose(d, [0.0, 0.2, 0.6, 0.8, 1.0])
    assert np.allclose(f, [0.4, 0.25, 0.0, 0.0, 0.0])
    # ties are discarded together, whatever the input order
    perm = np.array([3, 1, 5, 2, 0, 4])
    d2, f2 = E.edc(SIM[perm], MATED[perm], QUAL[perm], 0.5)
    assert np.array_equal(d, d2) and np.array_equal(f, f2)


def test_pauc_hand_computed():
    d, f = E.edc(SIM, MATED, QUAL, 0.5)
    assert E.pauc(d, f, 0.3) == pytest.approx(0.4 * 0.2 + 0.25 * 0.1)
    assert E.pauc(d, f, 0.2) == pytest.approx(0.08)
    assert E.pauc(d, f, 0.0) == 0.0
    assert E.normalized_pauc(0.105, 0.4, 0.3) == pytest.approx(0.875)
    # the last step extends to L when the curve ends before it
    assert E.pauc(np.array([0.0, 0.1]), np.array([0.5, 0.2]), 0.3) == pytest.approx(0.05 + 0.04)
    with pytest.raises(DataError):
        E.pauc(np.array([0.1, 0.2]), np.array([1.0, 1.0]), 0.3)


def test_all_correct_and_all_wrong_sets():
    sim = np.array([0.9, 0.8, 0.7, 0.6])
    mated = np.ones(4, bool)
    q = np.array([3.0, 1.0, 2.0, 4.0])
    d, f = E.edc(sim, mated, q, 0.5)
    assert np.all(f == 0)
    assert E.pauc(d, f, 0.3) == 0.0
    assert math.isnan(E.normalized_pauc(0.0, 0.0, 0.3))
    d, f = E.edc(sim, mated, q, 1.0)  # nothing matches
    assert np.allclose(f[:-1], 1.0) and f[-1] == 0.0
    assert E.pauc(d, f, 0.3) == pytest.approx(0.3)
    assert E.normalized_pauc(0.3, 1.0, 0.3) == pytest.approx(1.0)
    assert E.oracle_pauc(4, 4, 0.3) == pytest.approx(0.3)
    assert math.isnan(E.relative_to_oracle(0.3, 1.0, 0.3, 0.3))


def test_edc_rejects_bad_input():
    with pytest.raises(DataError, match="mated"):
        E.edc(SIM, np.zeros(6, bool), QUAL, 0.5)
    with pytest.raises(DataError, match="same length"):
        E.edc(SIM, MATED, QUAL[:3], 0.5)
    with pytest.raises(DataError, match="NaN"):
        E.edc(SIM, MATED, np.array([1, np.nan, 2, 3, 4, 5.0]), 0.5)


# --------------------------------------------------------------------------------------------------
# reference lines


def test_reference_lines_hand_computed():
    assert E.theoretical_best_pauc(0.4, 0.3) == pytest.approx(0.4 * 0.3 - 0.3**2 / 2)
    assert E.theoretical_best_pauc(0.1, 0.3) == pytest.approx(0.005)
    assert np.allclose(E.theoretical_best_fnmr(0.4, [0, 0.2, 0.5]), [0.4, 0.2, 0.0])
    assert np.allclose(E.oracle_fnmr(0.4, [0.0, 0.2, 0.4, 0.7, 1.0]), [0.4, 0.25, 0, 0, 0])
    d, f = E.oracle_edc(2, 5)
    assert np.allclose(d, [0, 0.2, 0.4, 1.0]) and np.allclose(f, [0.4, 0.25, 0, 0])
    assert E.oracle_pauc(2, 5, 0.3) == pytest.approx(0.105)
    # the discrete oracle converges to the integral of the continuous oracle curve on [0, L],
    # a + (1 - e0) ln(1 - a) with a = min(L, e0)
    assert E.oracle_pauc(40_000, 100_000, 0.3) == pytest.approx(0.3 + 0.6 * math.log(0.7), abs=1e-5)
    # the hand EDC above discards its two errors first: it is an oracle
    assert E.relative_to_oracle(0.105, 0.4, 0.3, E.oracle_pauc(2, 5, 0.3)) == pytest.approx(0.0)
    assert E.relative_to_oracle(0.12, 0.4, 0.3, 0.105) == pytest.approx(1.0)


def test_greedy_sample_oracle_hand_case():
    # sample 1 is in both errors; sample 3 in one error and one correct comparison
    pairs = np.array([[0, 1], [1, 2], [3, 4], [3, 5], [6, 7]])
    error = np.array([True, True, True, False, False])
    q = E.greedy_sample_oracle(pairs, error, 8)
    assert q[1] == 0  # first: two errors
    assert q[4] == 1  # then 4 (one error, no correct comparison) before 3 (one correct)
    assert np.all(q[[0, 2, 3, 5, 6, 7]] == 2)
    _d, f = E.edc(np.where(error, 0.0, 1.0), np.ones(5, bool), E.pair_quality(q, pairs), 0.5)
    assert f[0] == pytest.approx(0.6) and np.all(f[2:] == 0)


# --------------------------------------------------------------------------------------------------
# ERC, by hand (CR-FIQA rule and ISO rule)


def test_erc_hand_computed():
    sim = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.8])
    mated = np.array([False, False, False, False, True, True])
    q = np.array([4.0, 3.0, 2.0, 1.0, 5.0, 0.0])
    ratios = np.array([0.0, 0.2, 0.5])
    # u = 0: candidates' FMR: .1->1, .2->.75, .3->.5, .35->.25, .4->.25, .8->0; closest to .25 and
    # smallest: .35, a mated score, which CR-FIQA counts as a non-match (strict acceptance).
    # u = .2 drops the mated .8; u = .5 also drops .4 and .3, then .2 and .35 tie (|.5-.25| =
    # |0-.25|) and the smaller .2 wins.
    assert np.allclose(E.erc(sim, mated, q, 0.25, ratios), [0.5, 1.0, 0.0])
    # ISO rule: threshold just above the 2nd largest non-mated score (.3) -> no non-match
    assert np.allclose(E.erc(sim, mated, q, 0.25, ratios, rule="iso"), [0.0, 0.0, 0.0])
    assert E.erc_auc(ratios, [0.5, 1.0, 0.0]) == pytest.approx(0.2 * 0.75 + 0.3 * 0.5)


def test_erc_nan_when_a_side_is_empty_and_default_ratios():
    sim = np.array([0.1, 0.9])
    mated = np.array([False, True])
    q = np.array([1.0, 0.0])
    out = E.erc(sim, mated, q, 0.1, np.array([0.0, 0.5]))
    # FMR 0 (t = 0.9, the mated score itself) is closest to 0.1; CR-FIQA rejects s <= t
    assert out[0] == 1.0 and math.isnan(out[1])
    iso = E.erc(sim, mated, q, 0.1, np.array([0.0, 0.5]), rule="iso")
    assert iso[0] == 0.0 and math.isnan(iso[1])
    assert len(E.DEFAULT_ERC_RATIOS) == 20 and E.DEFAULT_ERC_RATIOS[-1] == pytest.approx(0.95)


# --------------------------------------------------------------------------------------------------
# ERC with tied pair qualities: CR-FIQA's argsort order vs the stable order


def tied_comparisons(seed, layout, num_pairs=400, levels=5):
    """Pairs (2i, 2i+1) with image qualities drawn from ``levels`` values (pair quality = min, so
    ties are everywhere) and random similarities, mated ones higher. ``layout``: "genuine_first"
    (CR-FIQA's pair-list example: genuine pairs, then impostors) or "shuffled"."""
    rng = np.random.default_rng(seed)
    num_mated = num_pairs * 2 // 5
    mated = np.arange(num_pairs) < num_mated
    if layout == "shuffled":
        rng.shuffle(mated)
    sim = rng.normal(size=num_pairs) + 1.5 * mated
    image_q = rng.choice(rng.uniform(0, 1, levels), 2 * num_pairs)
    q = E.pair_quality(image_q, np.arange(2 * num_pairs).reshape(-1, 2))
    assert len(np.unique(q)) <= levels
    return sim, mated, q


@pytest.mark.parametrize("layout", ["genuine_first", "shuffled"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crfiqa_erc_with_ties_equals_official_loop(seed, layout):
    sim, mated, q = tied_comparisons(seed, layout)
    # the ties matter: numpy's default argsort does not order them by position
    assert official_order(q) != stable_order(q)
    fmrs = [1e-1, 1e-2, 1e-3]
    curves = E.erc_curves(sim, mated, q, fmrs, rule="crfiqa")
    for row, fmr in enumerate(fmrs):
        ref_curve, ref_auc = reference_official_erc(sim, mated, q, fmr)
        ours = E.erc(sim, mated, q, fmr)  # crfiqa is the default rule
        assert np.allclose(ours, ref_curve, rtol=0, atol=1e-12, equal_nan=True)
        assert np.array_equal(curves[row], ours, equal_nan=True)
        assert abs(E.erc_auc(E.DEFAULT_ERC_RATIOS, ours) - ref_auc) <= 1e-12
    # same curve as distinct qualities that spell out the official order (only the order matters)
    rank = np.empty(len(q))
    rank[official_order(q)] = np.arange(len(q))
    assert np.array_equal(E.erc_curves(sim, mated, rank, fmrs), curves, equal_nan=True)


@pytest.mark.parametrize("layout", ["genuine_first", "shuffled"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iso_erc_with_ties_keeps_position_order(seed, layout):
    sim, mated, q = tied_comparisons(seed, layout)
    ratios = E.DEFAULT_ERC_RATIOS
    by_position = np.empty(len(q))
    by_position[stable_order(q)] = np.arange(len(q))
    for fmr in (1e-1, 1e-2, 1e-3):
        ours = E.erc(sim, mated, q, fmr, ratios, rule="iso")
        ref = reference_iso_erc(list(sim), list(mated), list(q), fmr, ratios)
        assert np.allclose(ours, ref, rtol=0, atol=1e-12, equal_nan=True)
        # ties by position: the same as distinct qualities ranked by (quality, position), and
        # permuting the pairs together with those distinct ranks leaves the curve unchanged
        distinct = E.erc(sim, mated, by_position, fmr, ratios, rule="iso")
        assert np.array_equal(ours, distinct, equal_nan=True)
        perm = np.random.default_rng(seed).permutation(len(q))
        permuted = E.erc(sim[perm], mated[perm], by_position[perm], fmr, ratios, rule="iso")
        assert np.array_equal(ours, permuted, equal_nan=True)


def test_erc_quality_order_rules():
    q = np.array([0.5, 0.2, 0.5, 0.2, 0.9] * 8)  # 40 values, 3 distinct
    assert E.erc_quality_order(q, "iso").tolist() == stable_order(q)
    assert E.erc_quality_order(q, "crfiqa").tolist() == official_order(q)
    assert E.erc_quality_order(q).tolist() == official_order(q)  # crfiqa is the default
    # float32 input is ordered as its float64 values, as CR-FIQA's float(text) pair qualities
    q32 = q.astype(np.float32) / np.float32(3)
    assert E.erc_quality_order(q32).tolist() == official_order(q32.astype(np.float64))
    with pytest.raises(ConfigError):
        E.erc_quality_order(q, "stable")


# --------------------------------------------------------------------------------------------------
# properties

scores_st = st.lists(st.integers(0, 12), min_size=2, max_size=40)


@st.composite
def comparison_sets(draw):
    n = draw(st.integers(2, 40))
    sim = np.array(draw(st.lists(st.integers(0, 12), min_size=n, max_size=n)), float) / 12
    mated = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    mated[draw(st.integers(0, n - 1))] = True
    q = np.array(draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)), float)
    return sim, mated, q


@settings(max_examples=80, deadline=None)
@given(comparison_sets(), st.integers(0, 13))
def test_edc_equals_brute_force_loop(data, t_index):
    sim, mated, q = data
    threshold = t_index / 12
    d, f = E.edc(sim, mated, q, threshold)
    rd, rf = reference_edc(sim, mated, q, threshold)
    assert np.allclose(d, rd) and np.allclose(f, rf)
    for limit in (0.2, 0.3, 1.0):
        assert E.pauc(d, f, limit) == pytest.approx(reference_pauc(rd, rf, limit))


@settings(max_examples=60, deadline=None)
@given(comparison_sets(), st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 1.0]))
def test_erc_equals_reference_loop(data, fmr):
    sim, mated, q = data
    if mated.all():
        mated[0] = False
    ratios = E.DEFAULT_ERC_RATIOS
    ours = E.erc(sim, mated, q, fmr, ratios)
    ref = reference_erc(list(sim), list(mated), list(q), fmr, ratios)
    assert np.allclose(ours, ref, equal_nan=True)
    iso = E.erc(sim, mated, q, fmr, ratios, rule="iso")
    assert np.allclose(iso, reference_iso_erc(sim, mated, q, fmr, ratios), equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(comparison_sets(), st.sampled_from(["affine", "cube", "exp"]))
def test_invariance_to_increasing_quality_transform(data, transform):
    sim, mated, q = data
    f = {"affine": lambda v: 3 * v - 7, "cube": lambda v: v**3 + v, "exp": np.exp}[transform]
    d1, e1 = E.edc(sim, mated, q, 0.5)
    d2, e2 = E.edc(sim, mated, f(q), 0.5)
    assert np.array_equal(d1, d2) and np.array_equal(e1, e2)
    if not mated.all():
        r1 = E.erc(sim, mated, q, 0.1)
        r2 = E.erc(sim, mated, f(q), 0.1)
        assert np.array_equal(r1, r2, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(comparison_sets(), st.integers(0, 13))
def test_oracle_quality_reaches_oracle_curve(data, t_index):
    sim, mated, _ = data
    threshold = t_index / 12
    error = sim < threshold
    # errors get distinct low qualities, correct comparisons a common high one
    q = np.where(error, np.arange(len(sim), dtype=float), 1000.0)
    d, f = E.edc(sim, mated, q, threshold)
    g = int(mated.sum())
    n_err = int((error & mated).sum())
    od, of = E.oracle_edc(n_err, g)
    inside = d < 1
    assert np.allclose(f[inside], E.oracle_fnmr(n_err / g, d[inside]))
    for limit in (0.2, 0.3):
        assert E.pauc(d, f, limit) == pytest.approx(E.oracle_pauc(n_err, g, limit))
        assert E.pauc(d, f, limit) <= E.pauc(od, of, limit) + 1e-12
    # the greedy sample-level oracle on disjoint pairs (one comparison per sample) is the same
    pairs = np.arange(2 * len(sim)).reshape(-1, 2)
    mated_pairs = pairs[mated]
    sq = E.greedy_sample_oracle(mated_pairs, error[mated], 2 * len(sim))
    d2, f2 = E.edc(sim[mated], np.ones(g, bool), E.pair_quality(sq, mated_pairs), threshold)
    for limit in (0.2, 0.3):
        assert E.pauc(d2, f2, limit) == pytest.approx(E.oracle_pauc(n_err, g, limit))


@settings(max_examples=30, deadline=None)
@given(comparison_sets())
def test_any_quality_is_no_better_than_the_oracle(data):
    sim, mated, q = data
    d, f = E.edc(sim, mated, q, 0.5)
    g = int(mated.sum())
    n_err = int(((sim < 0.5) & mated).sum())
    for limit in (0.2, 0.3):
        assert E.pauc(d, f, limit) >= E.oracle_pauc(n_err, g, limit) - 1e-12
