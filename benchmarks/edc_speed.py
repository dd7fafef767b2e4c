"""Speed of the EDC/pAUC and ERC at IJB-C scale, and the speed-up over per-step implementations.

1. EDC (fixed threshold at FMR 1e-4, from the non-mated scores) + pAUC at L = 0.2 and 0.3 on
   15,658,489 pairs (19,557 mated) with distinct random qualities (target < 10 s).
2. ERC with 20 discard steps (CR-FIQA protocol) on the same pairs (target < 30 s).
3. On 100,000 pairs (10,000 mated): the same computations written the straightforward way (EDC: a
   Python loop over every distinct quality value, masking and counting; ERC: per step, select the
   remaining pairs and build the full ROC from scratch as CR-FIQA's code does), and the speed-up.

Prints one JSON object as the last line. Numbers are wall-clock seconds on this machine's CPU and
are noisy when others use it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from igfiqa.evaluation import edc as E


def make_pairs(num_pairs: int, num_mated: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mated = np.zeros(num_pairs, dtype=bool)
    mated[rng.choice(num_pairs, num_mated, replace=False)] = True
    similarity = rng.normal(0.0, 0.1, num_pairs).astype(np.float32)
    similarity[mated] = rng.normal(0.55, 0.2, num_mated).astype(np.float32)
    quality = rng.permutation(num_pairs).astype(np.float64)  # distinct qualities
    # make quality informative: lower for low mated similarities
    quality[mated] = quality[mated] * 0.5 + similarity[mated] * num_pairs
    return similarity, mated, quality


def fast_edc_pauc(similarity, mated, quality, fmr=1e-4):
    t = E.threshold_at_fmr(similarity[~mated], fmr)
    d, f = E.edc(similarity, mated, quality, t)
    return [E.pauc(d, f, limit) for limit in (0.2, 0.3)]


def naive_edc_pauc(similarity, mated, quality, fmr=1e-4):
    t = E.threshold_at_fmr(similarity[~mated], fmr)
    s = similarity[mated]
    q = quality[mated]
    g = len(s)
    xs, ys = [], []
    for value in np.unique(q):  # one pass over the mated pairs per distinct quality value
        keep = q >= value
        xs.append(1.0 - keep.sum() / g)
        ys.append(np.count_nonzero(s[keep] < t) / keep.sum())
    xs.append(1.0)
    ys.append(0.0)
    return [E.pauc(np.array(xs), np.array(ys), limit) for limit in (0.2, 0.3)]


def naive_erc(similarity, mated, quality, fmr, ratios):
    n = len(similarity)
    order = np.argsort(quality, kind="stable")
    out = []
    for u in ratios:
        kept = order[int(np.floor(u * n)) :]
        s = similarity[kept].astype(np.float64)
        m = mated[kept]
        g = s[m]
        nm = s[~m]
        # full ROC from scratch on this step: every remaining score is a candidate threshold
        candidates = np.unique(s)
        fm = len(nm) - np.searchsorted(np.sort(nm), candidates, "left")
        best = int(np.argmin(np.abs(fm / len(nm) - fmr)))
        t = candidates[best]
        out.append(np.count_nonzero(g <= t) / len(g))
    return np.array(out)


def timed(fn, *args, repeat: int = 1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15_658_489)
    parser.add_argument("--mated", type=int, default=19_557)
    parser.add_argument("--small-pairs", type=int, default=100_000)
    parser.add_argument("--small-mated", type=int, default=10_000)
    args = parser.parse_args()
    ratios = E.DEFAULT_ERC_RATIOS

    similarity, mated, quality = make_pairs(args.pairs, args.mated)
    edc_s, paucs = timed(fast_edc_pauc, similarity, mated, quality)
    erc_s, fnmr = timed(E.erc, similarity, mated, quality, 1e-4, ratios)
    auc = E.erc_auc(ratios, fnmr)
    print(f"large: EDC+pAUC {edc_s:.2f} s, ERC (20 steps) {erc_s:.2f} s, pAUC {paucs}", flush=True)
    del similarity, mated, quality

    s, m, q = make_pairs(args.small_pairs, args.small_mated, seed=1)
    fast_edc_small, a = timed(fast_edc_pauc, s, m, q, 1e-3, repeat=3)
    naive_edc_small, b = timed(naive_edc_pauc, s, m, q, 1e-3)
    assert np.allclose(a, b), (a, b)
    fast_erc_small, c = timed(E.erc, s, m, q, 1e-3, ratios, repeat=3)
    naive_erc_small, d = timed(naive_erc, s, m, q, 1e-3, ratios)
    assert np.allclose(c, d, equal_nan=True), (c, d)
    result = {
        "benchmark": "edc_speed",
        "pairs": args.pairs,
        "mated": args.mated,
        "edc_pauc_seconds": round(edc_s, 3),
        "erc_20_steps_seconds": round(erc_s, 3),
        "pauc_fmr1e-4_L0.2_L0.3": [round(v, 6) for v in paucs],
        "erc_auc_fmr1e-4": round(auc, 6),
        "small_pairs": args.small_pairs,
        "small_mated": args.small_mated,
        "small_edc_fast_seconds": round(fast_edc_small, 4),
        "small_edc_per_threshold_loop_seconds": round(naive_edc_small, 4),
        "small_edc_speedup": round(naive_edc_small / fast_edc_small, 1),
        "small_erc_fast_seconds": round(fast_erc_small, 4),
        "small_erc_per_step_full_roc_seconds": round(naive_erc_small, 4),
        "small_erc_speedup": round(naive_erc_small / fast_erc_small, 1),
        "targets": {"edc_pauc_seconds": 10, "erc_20_steps_seconds": 30},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
