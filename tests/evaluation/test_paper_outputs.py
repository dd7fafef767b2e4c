"""Outputs for papers: FM-EDC, the initial-FNMR start, bootstrap intervals over identities, the mean
column, valid LaTeX for every table, distinct reference names and the legend outside the axes."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest

from igfiqa.errors import ConfigError
from igfiqa.evaluation import edc as E
from igfiqa.evaluation.paper_table import paper_table, paper_tables, to_csv_rows, to_latex
from igfiqa.evaluation.quality import parse_quality_spec
from igfiqa.evaluation.report import AXES_SIZE, benchmark_table, plot_edc, write_report
from igfiqa.evaluation.results import (
    ORACLE,
    REFERENCE_NAMES,
    _scalar_metrics,
    bootstrap_intervals,
    bootstrap_units,
    evaluate_scores,
)


def toy(seed=0, samples=120, identities=30):
    """Every pair of ``samples`` images of ``identities`` people; similarity grows with quality."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0, 1, samples)
    identity = rng.integers(0, identities, samples)
    i, j = np.triu_indices(samples, 1)
    pairs = np.stack([i, j], 1)
    mated = identity[i] == identity[j]
    pq = np.minimum(quality[i], quality[j])
    sim = np.where(mated, 0.1 + 0.7 * pq, 0.0) + rng.normal(0, 0.1, len(pairs))
    return sim, mated, pairs, quality, identity


# --------------------------------------------------------------------------------------------------
# FM-EDC


def test_fm_edc_hand_computed():
    # five non-mated comparisons (plus two mated ones, which the FM-EDC ignores), threshold 0.5:
    # false matches are 0.9 (q 1), 0.8 (q 2) and 0.7 (q 4)
    sim = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.95, 0.05])
    mated = np.array([0, 0, 0, 0, 0, 1, 1], bool)
    quality = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 0.0, 9.0])
    d, fmr = E.fm_edc(sim, mated, quality, 0.5)
    # q < 1: none discarded, 3/5; q < 2: 1 gone, 2/4; q < 3: 3 gone, 1/2; q < 4: 4 gone, 1/1
    assert d.tolist() == [0.0, 0.2, 0.6, 0.8, 1.0]
    assert fmr.tolist() == [0.6, 0.5, 0.5, 1.0, 0.0]
    counts = E.fm_edc_counts(sim, mated, quality, 0.5)
    assert counts[0].tolist() == [0, 1, 3, 4] and counts[1].tolist() == [3, 2, 1, 1]
    assert counts[2] == 5
    # stepwise pAUC on [0, 0.3]: 0.6 * 0.2 + 0.5 * 0.1
    assert E.pauc(d, fmr, 0.3) == pytest.approx(0.17)
    # a similarity equal to the threshold is a false match (>=)
    assert E.fm_edc(sim, mated, quality, 0.9)[1][0] == pytest.approx(1 / 5)


def test_fm_edc_at_zero_discard_is_the_fmr_at_the_threshold():
    sim, mated, pairs, quality, _ = toy(1)
    res = evaluate_scores(
        sim, mated, {"q": quality}, pairs=pairs, fmrs=(1e-2,), fnmrs=(0.2,), fm_edc=True
    )
    for fr in res.starts:
        curve = fr.curve("q")
        assert curve.fm_fmr[0] == fr.threshold.achieved_fmr
        fmr0 = np.count_nonzero(sim[~mated] >= fr.threshold.threshold) / np.count_nonzero(~mated)
        assert curve.fm_fmr[0] == pytest.approx(fmr0)
        for limit in res.limits:
            assert curve.fm_pauc[limit] == pytest.approx(
                E.pauc(curve.fm_discard_fraction, curve.fm_fmr, limit)
            )
            assert curve.fm_pauc_normalized[limit] == pytest.approx(
                curve.fm_pauc[limit] / (fmr0 * limit)
            )
    # off by default: nothing computed, nothing written
    plain = evaluate_scores(sim, mated, {"q": quality}, pairs=pairs, fmrs=(1e-2,))
    assert plain.per_fmr[0].curve("q").fm_fmr is None


# --------------------------------------------------------------------------------------------------
# initial-FNMR start


def test_fnmr_start_threshold_by_hand():
    # ten mated similarities 0.1 .. 1.0 and ten non-mated ones
    mated_sim = np.arange(1, 11) / 10
    nonmated_sim = np.linspace(-0.5, 0.45, 10)
    sim = np.concatenate([mated_sim, nonmated_sim])
    mated = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    quality = np.concatenate([mated_sim, np.full(10, 0.5)])  # errors have the lowest quality
    res = evaluate_scores(sim, mated, {"q": quality}, fmrs=(0.1,), fnmrs=(0.25,))
    (fr,) = res.per_fnmr
    # FNMR 0.25 of 10: at most 2 errors, so t = the 3rd smallest mated similarity, 0.3
    assert fr.threshold.threshold == pytest.approx(0.3) == E.threshold_at_fnmr(mated_sim, 0.25)
    assert (fr.e0, fr.num_errors, fr.target_fnmr, fr.start) == (0.2, 2, 0.25, "FNMR")
    assert math.isnan(fr.target_fmr) and fr.label == "FNMR 0.25" and fr.tag == "fnmr2e-01"
    # the FMR at that threshold: non-mated similarities >= 0.3 are 0.35 and 0.45 (hand count)
    assert fr.threshold.false_matches == 2 and fr.threshold.achieved_fmr == pytest.approx(0.2)
    # quality ranks both errors lowest: the EDC reaches 0 after discarding 2/10
    curve = fr.curve("q")
    assert curve.discard_fraction[:3].tolist() == [0.0, 0.1, 0.2]
    assert curve.fnmr[:3] == pytest.approx([0.2, 1 / 9, 0.0])
    assert curve.erc_fnmr is None and curve.erc_auc is None  # no ERC for an FNMR start
    assert res.starts == [*res.per_fmr, *res.per_fnmr]
    summary = res.summary()
    assert summary["fnmrs"][0]["target_fnmr"] == 0.25 and "target_fmr" not in summary["fnmrs"][0]
    with pytest.raises(ConfigError, match="fnmr"):
        evaluate_scores(sim, mated, {"q": quality}, fnmrs=(1.0,))


def test_fnmr_blocks_in_the_paper_tables_but_not_in_the_erc_table():
    sim, mated, pairs, quality, _ = toy(2)
    res = evaluate_scores(sim, mated, {"q": quality}, pairs=pairs, fmrs=(1e-2,), fnmrs=(0.1,))
    erc, pauc, norm = paper_tables([res])
    assert erc.blocks == [("FMR", 0.01)]
    assert pauc.blocks == [("FMR", 0.01), ("FNMR", 0.1)]
    assert pauc.values[1, 0, 0] == pytest.approx(res.per_fnmr[0].curve("q").pauc[0.2])
    assert "FNMR $10^{-1}$" in to_latex(norm)
    rows = to_csv_rows(pauc)
    assert [(r["fmr"], r["fnmr"]) for r in rows] == [(0.01, ""), ("", 0.1)]
    with pytest.raises(ConfigError, match="initial FNMRs"):
        paper_table([res], "erc_auc", fnmrs=(0.1,))


# --------------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_units_from_labels_and_from_mated_components():
    pairs = np.array([[0, 1], [1, 2], [3, 4], [0, 3], [2, 5], [5, 0]])
    mated = np.array([1, 1, 1, 0, 0, 0], bool)
    # no labels: samples {0, 1, 2} and {3, 4} are joined by mated pairs, 5 is alone; a pair belongs
    # to the group of its first sample
    groups, unit = bootstrap_units(mated, pairs)
    assert unit == "identity (from mated pairs)"
    assert groups.tolist() == [0, 0, 1, 0, 0, 2]
    # labels win (identity 7 for samples 0-2, 8 for 3-5)
    labelled, unit = bootstrap_units(mated, pairs, np.array([7, 7, 7, 8, 8, 8]))
    assert unit == "identity" and labelled.tolist() == [0, 0, 1, 0, 0, 1]
    # an insightface .bin: every pair has its own two images, so every comparison is its own group
    bin_pairs = np.arange(8).reshape(4, 2)
    own, _ = bootstrap_units(np.array([1, 0, 1, 0], bool), bin_pairs)
    assert sorted(own.tolist()) == [0, 1, 2, 3]
    assert bootstrap_units(mated, None)[1] == "comparison"


def test_resample_metrics_equal_the_estimates_on_the_original_set():
    sim, mated, pairs, quality, _ = toy(3)
    noisy = quality + np.random.default_rng(0).normal(0, 0.3, len(quality))
    res = evaluate_scores(
        sim, mated, {"q": quality, "n": noisy}, pairs=pairs, fmrs=(1e-2, 1e-3), fnmrs=(0.1,)
    )
    pq = {name: E.pair_quality(q, pairs) for name, q in (("q", quality), ("n", noisy))}
    starts = [(fr.start, fr.target) for fr in res.starts]
    values = _scalar_metrics(sim, mated, pq, starts, res.limits, res.erc_ratios, res.erc_rule)
    for s, fr in enumerate(res.starts):
        for name in pq:
            curve = fr.curve(name)
            for limit in res.limits:
                for key in ("pauc", "pauc_normalized", "pauc_vs_oracle"):
                    assert values[(s, name, key, limit)] == pytest.approx(
                        getattr(curve, key)[limit], rel=1e-12, abs=1e-15
                    )
            if curve.erc_auc is not None:
                assert values[(s, name, "erc_auc", None)] == pytest.approx(curve.erc_auc)


def test_bootstrap_contains_the_estimate_is_seeded_and_reproducible():
    sim, mated, pairs, quality, identity = toy(4)
    kwargs = {"pairs": pairs, "fmrs": (1e-2,), "fnmrs": (0.1,), "unit_identity": identity}
    one = evaluate_scores(sim, mated, {"q": quality}, bootstrap=60, bootstrap_seed=5, **kwargs)
    again = evaluate_scores(sim, mated, {"q": quality}, bootstrap=60, bootstrap_seed=5, **kwargs)
    other = evaluate_scores(sim, mated, {"q": quality}, bootstrap=60, bootstrap_seed=6, **kwargs)
    assert one.bootstrap["unit"] == "identity" and one.bootstrap["resamples"] == 60
    assert one.bootstrap["num_units"] == len(np.unique(identity[pairs[:, 0]]))
    for s, fr in enumerate(one.starts):
        curve = fr.curve("q")
        for limit in one.limits:
            for key in ("pauc", "pauc_normalized", "pauc_vs_oracle"):
                low, high = getattr(curve, f"{key}_ci")[limit]
                assert low <= getattr(curve, key)[limit] <= high and low < high
                assert getattr(again.starts[s].curve("q"), f"{key}_ci")[limit] == (low, high)
        assert curve.pauc_ci != other.starts[s].curve("q").pauc_ci
        if fr.start == "FMR":
            low, high = curve.erc_auc_ci
            assert low <= curve.erc_auc <= high
        else:
            assert curve.erc_auc_ci is None
    # references get no interval; the JSON summary carries them
    assert not one.per_fmr[0].curve(ORACLE).pauc_ci
    assert one.summary()["fmrs"][0]["curves"][0]["pauc@0.2_ci95"] == list(
        one.per_fmr[0].curve("q").pauc_ci[0.2]
    )
    with pytest.raises(ConfigError, match="at least 20"):
        evaluate_scores(sim, mated, {"q": quality}, bootstrap=5, **kwargs)


def test_bootstrap_interval_collapses_when_every_resample_is_the_original():
    # one identity: every resample draws it once, so every resample is the full set
    sim, mated, pairs, quality, _ = toy(5, samples=60)
    res = evaluate_scores(
        sim,
        mated,
        {"q": quality},
        pairs=pairs,
        fmrs=(1e-2,),
        bootstrap=20,
        unit_identity=np.zeros(len(quality), dtype=np.int64),
    )
    curve = res.per_fmr[0].curve("q")
    assert res.bootstrap["num_units"] == 1
    for limit in res.limits:
        assert curve.pauc_ci[limit] == pytest.approx((curve.pauc[limit], curve.pauc[limit]))
    assert curve.erc_auc_ci == pytest.approx((curve.erc_auc, curve.erc_auc))


def test_identity_bootstrap_is_wider_than_a_pair_bootstrap_when_pairs_share_identities():
    # each identity's comparisons share its images, so their errors go together: how good an
    # identity's images are decides all of them. Resampling comparisons one by one ignores that.
    rng = np.random.default_rng(7)
    identities, per_identity = 40, 8
    identity = np.repeat(np.arange(identities), per_identity)
    hard = rng.random(identities) < 0.3  # identities whose mated comparisons mostly fail
    quality = rng.uniform(0, 1, len(identity))
    i, j = np.triu_indices(len(identity), 1)
    pairs = np.stack([i, j], 1)
    mated = identity[i] == identity[j]
    sim = np.where(mated, np.where(hard[identity[i]], 0.1, 0.6), 0.0)
    sim = sim + 0.2 * np.minimum(quality[i], quality[j]) + rng.normal(0, 0.05, len(pairs))
    res = evaluate_scores(sim, mated, {"q": quality}, pairs=pairs, fmrs=(1e-2,))
    pq = {"q": E.pair_quality(quality, pairs)}
    widths = {}
    for name, groups in (
        ("identity", bootstrap_units(mated, pairs, identity)[0]),
        ("comparison", np.arange(len(pairs))),
    ):
        bootstrap_intervals(res, sim, mated, pq, groups, 100, seed=1, unit=name)
        low, high = res.per_fmr[0].curve("q").pauc_ci[0.2]
        widths[name] = high - low
    assert widths["identity"] > 2 * widths["comparison"]


# --------------------------------------------------------------------------------------------------
# tables: mean column, valid LaTeX, distinct names


def latex_problems(tex: str) -> list[str]:
    """What is wrong with the booktabs tables in ``tex``: unbalanced braces, a row with the wrong
    number of cells, an unescaped ``_ % & #`` outside math and comments."""
    problems = []
    width = None
    inside = False
    for line in tex.splitlines():
        if line.startswith("%"):
            continue
        text = re.sub(r"\\[{}]", "", line)  # escaped braces do not count
        if text.count("{") != text.count("}"):
            problems.append(f"unbalanced braces: {line}")
        bare = re.sub(r"\$[^$]*\$", "", re.sub(r"\\[_%&#$]", "", line))
        if re.search(r"[_%#]", bare):
            problems.append(f"unescaped character: {line}")
        begin = re.match(r"\\begin\{tabular\}\{(l?c*)\}", line)
        if begin:
            width, inside = len(begin.group(1)), True
            continue
        if line == "\\end{tabular}":
            inside = False
            continue
        if not inside or not line.endswith("\\\\"):
            continue
        cells = re.split(r"(?<!\\)&", line[:-2])
        spans = sum(int(n) - 1 for n in re.findall(r"\\multicolumn\{(\d+)\}", line))
        if len(cells) + spans != width:
            problems.append(f"{len(cells) + spans} cells instead of {width}: {line}")
    return problems


def two_benchmarks(fmrs=(1e-2, 1e-3), **kwargs):
    sim, mated, pairs, quality, identity = toy(8)
    qualities = {"ours_v2 (10% drop)": quality, "R&D #1": np.random.default_rng(1).random(120)}
    return [
        evaluate_scores(
            sim,
            mated,
            qualities,
            pairs=pairs,
            fmrs=fmrs,
            benchmark=bench,
            fr_model="r100_glint",
            unit_identity=identity,
            **kwargs,
        )
        for bench in ("IJB_C", "lfw")
    ]


def test_mean_column_by_hand_and_only_for_complete_rows():
    results = two_benchmarks()
    table = paper_table(results, "pauc_normalized")
    assert table.has_mean and table.columns == [("r100_glint", "IJB_C"), ("r100_glint", "lfw")]
    expected = table.values.mean(axis=2)
    assert np.allclose(table.means(), expected)
    table.values[0, 1, 1] = np.nan  # a missing cell: that row has no mean
    means = table.means()
    assert np.isnan(means[0, 1]) and np.isfinite(means[0, 0])
    mean_row = next(r for r in to_csv_rows(table) if r["benchmark"] == "mean" and r["fmr"] == 0.01)
    assert mean_row["value"] == pytest.approx(expected[0, 0])
    one_column = paper_table(results[:1], "pauc")
    assert not one_column.has_mean and "mean" not in to_latex(one_column)


def test_every_latex_table_is_valid_with_escaped_names(tmp_path):
    results = two_benchmarks(fnmrs=(0.1,), fm_edc=True, bootstrap=20)
    write_report(results, tmp_path, plots=False, log=None)
    for name in ("paper_table.tex", "results.tex"):
        tex = (tmp_path / name).read_text()
        assert latex_problems(tex) == [], name
        assert "ours\\_v2 (10\\% drop)" in tex and "R\\&D \\#1" in tex
        assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") > 0
    results_tex = (tmp_path / "results.tex").read_text()
    # one table per benchmark x start (2 FMRs + 1 FNMR), each with every curve
    assert results_tex.count("\\begin{tabular}") == 2 * 3
    assert "\\textit{oracle (comparison level)}" in results_tex
    assert "{\\scriptsize [" in results_tex  # the bootstrap intervals
    paper = (tmp_path / "paper_table.tex").read_text()
    assert "IJB\\_C & lfw & mean \\\\" in paper
    # the checker itself: a row one cell short is found
    assert latex_problems("\\begin{tabular}{lcc}\nA & 1 \\\\\n\\end{tabular}") != []
    rows = list(csv.DictReader((tmp_path / "paper_table.csv").open()))
    assert {"ci_low", "ci_high", "fnmr"} <= set(rows[0])
    with_ci = [r for r in rows if r["benchmark"] != "mean" and r["ci_low"] != ""]
    assert with_ci and all(
        float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"]) for r in with_ci
    )


def test_benchmark_table_bolds_methods_only_and_marks_missing_values():
    (result, _) = two_benchmarks(fm_edc=True)
    table = benchmark_table(result, result.per_fmr[0])
    (block,) = table.blocks
    assert table.columns[-1] == "ERC AUC" and "FM norm@0.2" in table.columns
    best = table.best(block)
    assert not best[[block.is_reference(r) for r in range(len(block.rows))]].any()
    oracle_row = block.rows.index(ORACLE)
    assert np.isnan(block.values[oracle_row, -1])  # references have no ERC
    (with_fnmr, _) = two_benchmarks(fnmrs=(0.1,))
    assert "ERC AUC" not in benchmark_table(with_fnmr, with_fnmr.per_fnmr[0]).columns


def test_ground_truth_and_oracles_have_distinct_self_explaining_names():
    assert parse_quality_spec("oracle").name == "ground truth (generator)"
    assert parse_quality_spec("ground-truth").name == "ground truth (generator)"
    results = two_benchmarks()
    names = [c.name for c in results[0].per_fmr[0].curves]
    assert len(names) == len(set(names))
    assert [n for n in names if "oracle" in n] == [
        "oracle (comparison level)",
        "oracle (sample level, greedy; uses labels)",
    ]
    sim, mated, pairs, quality, _ = toy(9, samples=30)
    with pytest.raises(ConfigError, match="reference curve"):
        evaluate_scores(sim, mated, {REFERENCE_NAMES[2]: quality}, pairs=pairs, fmrs=(0.1,))


# --------------------------------------------------------------------------------------------------
# plots


def test_the_legend_sits_outside_the_axes(tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from PIL import Image

    (result, _) = two_benchmarks(fmrs=(1e-2,), fnmrs=(0.1,), fm_edc=True)
    written = write_report([result], tmp_path, log=None)
    names = {p.name for p in written["plots"]}
    assert {
        "edc_IJB_C__r100_glint__fnmr1e-01.png",
        "fmedc_IJB_C__r100_glint__fnmr1e-01.svg",
        "erc_IJB_C__r100_glint__fmr1e-02.png",
    } <= names
    assert not any(n.startswith("erc_") and "fnmr" in n for n in names)
    # the saved figure grew to the right to hold the legend: wider than the axes' own figure
    width, height = Image.open(tmp_path / "edc_IJB_C__r100_glint__fmr1e-02.png").size
    assert width > AXES_SIZE[0] * 120 * 1.15 and height < AXES_SIZE[1] * 120 * 1.1

    import matplotlib.pyplot as plt

    captured = {}
    original_close = plt.close

    def keep(fig):
        fig.canvas.draw()
        ax = fig.axes[0]
        captured["axes"] = ax.get_window_extent()
        captured["legend"] = ax.get_legend().get_window_extent()
        original_close(fig)

    plt.close = keep
    try:
        plot_edc(result, result.per_fmr[0], tmp_path / "again")
    finally:
        plt.close = original_close
    assert captured["legend"].x0 >= captured["axes"].x1  # no overlap with the curves
