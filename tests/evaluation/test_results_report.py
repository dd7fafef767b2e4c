"""evaluate_scores (the library entry point) and write_report (plots and tables)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from igfiqa.errors import ConfigError, DataError
from igfiqa.evaluation import edc as E
from igfiqa.evaluation.report import write_report
from igfiqa.evaluation.results import (
    ORACLE,
    RANDOM,
    SAMPLE_ORACLE,
    THEORETICAL_BEST,
    evaluate_scores,
)


def toy(seed=0, samples=120, identities=30):
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0, 1, samples)
    identity = rng.integers(0, identities, samples)
    i, j = np.triu_indices(samples, 1)
    pairs = np.stack([i, j], 1)
    mated = identity[i] == identity[j]
    pq = np.minimum(quality[i], quality[j])
    sim = np.where(mated, 0.1 + 0.7 * pq, 0.0) + rng.normal(0, 0.1, len(pairs))
    return sim, mated, pairs, quality


def test_evaluate_scores_matches_the_edc_functions():
    sim, mated, pairs, quality = toy()
    res = evaluate_scores(
        sim, mated, {"q": quality}, pairs=pairs, fmrs=(1e-2,), limits=(0.2, 0.3), benchmark="toy"
    )
    fr = res.per_fmr[0]
    t = E.threshold_at_fmr(sim[~mated], 1e-2)
    assert fr.threshold.threshold == t
    pq = E.pair_quality(quality, pairs)
    d, f = E.edc(sim, mated, pq, t)
    curve = fr.curve("q")
    assert np.array_equal(curve.discard_fraction, d) and np.array_equal(curve.fnmr, f)
    e0 = np.mean(sim[mated] < t)
    assert fr.e0 == pytest.approx(e0)
    for limit in (0.2, 0.3):
        p = E.pauc(d, f, limit)
        assert curve.pauc[limit] == pytest.approx(p)
        assert curve.pauc_normalized[limit] == pytest.approx(p / (e0 * limit))
        assert fr.curve(RANDOM).pauc_normalized[limit] == pytest.approx(1.0)
        assert fr.curve(ORACLE).pauc_vs_oracle[limit] == pytest.approx(0.0)
        assert fr.curve(THEORETICAL_BEST).pauc[limit] == pytest.approx(
            E.theoretical_best_pauc(e0, limit)
        )
        # the greedy sample-level oracle cannot beat the comparison-level one
        assert fr.curve(SAMPLE_ORACLE).pauc[limit] >= fr.curve(ORACLE).pauc[limit] - 1e-12
    assert np.allclose(curve.erc_fnmr, E.erc(sim, mated, pq, 1e-2))
    assert curve.erc_auc == pytest.approx(E.erc_auc(E.DEFAULT_ERC_RATIOS, curve.erc_fnmr))
    assert res.methods == ["q"] and not res.warnings
    assert res.verification["tar_at_fmr"][0]["tar"] == pytest.approx(1 - e0)
    assert 0.5 < res.verification["ten_fold_accuracy"]["accuracy_mean"] <= 1.0


def test_per_pair_qualities_and_exclusions():
    sim, mated, pairs, quality = toy(1)
    pq = E.pair_quality(quality, pairs)
    sim = sim.copy()
    sim[3] = np.nan
    pq[7] = np.nan
    res = evaluate_scores(sim, mated, {"q": pq}, fmrs=(1e-2,), benchmark="b")
    assert res.excluded_pairs == 2 and res.num_pairs == len(sim) - 2
    assert "2 of" in res.warnings[0]
    with pytest.raises(DataError, match="pairs"):
        evaluate_scores(sim, mated, {"q": quality})
    with pytest.raises(ConfigError):
        evaluate_scores(sim, mated, {})


def test_erc_curves_share_preparation():
    sim, mated, pairs, quality = toy(2)
    pq = E.pair_quality(quality, pairs)
    prepared = E.SortedComparisons(sim, mated)
    both = E.erc_curves(sim, mated, pq, [1e-2, 1e-1], prepared=prepared)
    assert np.array_equal(both[0], E.erc(sim, mated, pq, 1e-2))
    assert np.array_equal(both[1], E.erc(sim, mated, pq, 1e-1, rule="crfiqa"))


def test_write_report_files_and_resolution_warning(tmp_path, capsys):
    sim, mated, pairs, quality = toy(3, samples=60)
    res = evaluate_scores(
        sim,
        mated,
        {"good": quality, "random": np.random.default_rng(0).random(len(quality))},
        pairs=pairs,
        fmrs=(1e-2, 1e-5),
        benchmark="tiny set",
        fr_model="FR/x",
    )
    assert res.per_fmr[1].threshold.below_resolution
    written = write_report(res, tmp_path)
    printed = capsys.readouterr().out
    assert "below this benchmark's resolution" in printed
    names = {p.name for p in written["plots"]}
    assert "edc_tiny-set__FR-x__fmr1e-02.png" in names
    assert "erc_tiny-set__FR-x__fmr1e-05.svg" in names
    md = (tmp_path / "results.md").read_text()
    assert "WARNING: FMR 1e-05 is below" in md and "FR model: FR/x" in md
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    low = [r for r in rows if float(r["target_fmr"]) == 1e-5]
    assert low and all(r["below_resolution"] == "True" for r in low)
    good = [r for r in rows if r["curve"] == "good" and float(r["target_fmr"]) == 1e-2]
    assert {float(r["limit"]) for r in good} == {0.2, 0.3}
    data = json.loads((tmp_path / "results.json").read_text())
    curves = data[0]["fmrs"][0]["curves"]
    assert curves[0]["name"] == "good" and "erc_auc" in curves[0]
    assert math.isclose(curves[0]["pauc@0.2"], res.per_fmr[0].curve("good").pauc[0.2])
    npz = np.load(written["curves"][0])
    assert "fmr1e-02/good/edc_fnmr" in npz.files
