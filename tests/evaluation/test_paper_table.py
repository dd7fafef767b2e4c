"""The paper layout (methods x FR model x benchmark, one block per FMR) and its renderers."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from igfiqa.errors import ConfigError
from igfiqa.evaluation import edc as E
from igfiqa.evaluation.paper_table import (
    CSV_FIELDS,
    fmr_text,
    latex_escape,
    paper_table,
    paper_tables,
    to_csv_rows,
    to_latex,
    to_markdown,
)
from igfiqa.evaluation.report import write_report
from igfiqa.evaluation.results import (
    RANDOM,
    BenchmarkResult,
    CurveResult,
    FmrResult,
)

FMRS = (1e-3, 1e-4)
LIMITS = (0.2, 0.3)
FR_MODELS = ("ArcFace", "MagFace")
BENCHMARKS = ("lfw", "agedb", "ijbc")
METHODS = ("IG-FIQA", "CR-FIQA", "SER-FIQ")


def code(fr: str, bench: str, method: str, fmr: float, limit: float | None = None) -> float:
    """A distinct value per cell: digits encode FR model, benchmark, method, FMR and limit."""
    value = (
        0.1 * (1 + FR_MODELS.index(fr))
        + 0.01 * (1 + BENCHMARKS.index(bench))
        + 0.001 * (1 + METHODS.index(method))
        + 0.0001 * (1 + FMRS.index(fmr))
    )
    return value if limit is None else value + 0.00001 * (1 + LIMITS.index(limit))


def curve(name: str, erc: float | None, pauc: dict[float, float], kind: str = "method"):
    return CurveResult(
        name=name,
        kind=kind,
        discard_fraction=np.array([0.0, 1.0]),
        fnmr=np.array([0.1, 0.1]),
        pauc=pauc,
        pauc_normalized={L: v / 2 for L, v in pauc.items()},
        pauc_vs_oracle={L: v / 3 for L, v in pauc.items()},
        erc_fnmr=None if erc is None else np.array([0.1, 0.05]),
        erc_auc=erc,
    )


def result(
    bench: str,
    fr: str,
    values: dict[tuple[float, str], tuple[float | None, dict[float, float]]],
    *,
    fmrs=FMRS,
    below: tuple[float, ...] = (),
) -> BenchmarkResult:
    """A hand-built result; ``values[(fmr, method)] = (erc_auc, {limit: pauc})``."""
    methods = list(dict.fromkeys(m for _, m in values))
    per_fmr = []
    for fmr in fmrs:
        info = E.ThresholdInfo(fmr, 0.3, fmr, 1, 10_000, 1e-4, fmr in below)
        curves = [curve(m, *values[(f, m)]) for f, m in values if f == fmr]
        curves.append(curve(RANDOM, None, {L: 0.0 for L in LIMITS}, kind="reference"))
        per_fmr.append(FmrResult(info, 0.1, 10, curves))
    return BenchmarkResult(
        benchmark=bench,
        fr_model=fr,
        num_pairs=20_000,
        num_mated=10_000,
        num_nonmated=10_000,
        excluded_pairs=0,
        pair_reduce="min",
        limits=LIMITS,
        erc_ratios=E.DEFAULT_ERC_RATIOS,
        erc_rule="crfiqa",
        methods=methods,
        per_fmr=per_fmr,
    )


def full_result(bench: str, fr: str, methods=METHODS, **kwargs) -> BenchmarkResult:
    values = {
        (fmr, m): (code(fr, bench, m, fmr), {L: code(fr, bench, m, fmr, L) for L in LIMITS})
        for fmr in kwargs.get("fmrs", FMRS)
        for m in methods
    }
    return result(bench, fr, values, **kwargs)


def grid() -> list[BenchmarkResult]:
    """Every FR model on every benchmark, benchmark outer as `igfiqa evaluate` orders them."""
    return [full_result(b, fr) for b in BENCHMARKS for fr in FR_MODELS]


def test_cells_land_in_their_row_and_column():
    table = paper_table(grid(), "erc_auc")
    assert table.methods == METHODS and table.fmrs == FMRS
    assert table.values.shape == (2, 3, 6)
    assert table.columns[4] == ("MagFace", "agedb")
    # by hand: FMR 1e-3, CR-FIQA, MagFace / agedb = 0.2 + 0.02 + 0.002 + 0.0001
    assert table.values[0, 1, 4] == pytest.approx(0.2221)
    # FMR 1e-4, SER-FIQ, ArcFace / ijbc = 0.1 + 0.03 + 0.003 + 0.0002
    assert table.values[1, 2, 2] == pytest.approx(0.1332)
    for f, fmr in enumerate(FMRS):
        for m, method in enumerate(METHODS):
            for c, (fr, bench) in enumerate(table.columns):
                assert table.values[f, m, c] == pytest.approx(code(fr, bench, method, fmr))
    assert table.limit is None and table.metric_name == "erc_auc"
    md = to_markdown(table)
    assert (
        "| 1e-3 | IG-FIQA | **0.1111** | **0.1211** | **0.1311** | **0.2111** | **0.2211** | "
        "**0.2311** |"
    ) in md


def test_pauc_uses_the_first_limit_unless_told():
    pauc = paper_table(grid(), "pauc")
    assert pauc.limit == 0.2 and pauc.metric_name == "pauc@0.2" and pauc.digits == 5
    assert pauc.values[0, 0, 0] == pytest.approx(code("ArcFace", "lfw", "IG-FIQA", 1e-3, 0.2))
    later = paper_table(grid(), "pauc", limit=0.3)
    assert later.values[1, 2, 5] == pytest.approx(code("MagFace", "ijbc", "SER-FIQ", 1e-4, 0.3))
    norm = paper_table(grid(), "pauc_normalized")
    assert norm.values[0, 0, 0] == pytest.approx(pauc.values[0, 0, 0] / 2)
    erc, first, normalised = paper_tables(grid())
    assert (erc.metric, first.metric, first.limit) == ("erc_auc", "pauc", 0.2)
    assert (normalised.metric, normalised.limit) == ("pauc_normalized", 0.2)
    with pytest.raises(ConfigError, match="no discard limit"):
        paper_table(grid(), "erc_auc", limit=0.2)
    with pytest.raises(ConfigError, match="unknown"):
        paper_table(grid(), "tar")  # type: ignore[arg-type]


def test_column_order_is_fr_models_then_benchmarks_as_given():
    results = [
        full_result("ijbc", "MagFace"),
        full_result("lfw", "ArcFace"),
        full_result("lfw", "MagFace"),
        full_result("ijbc", "ArcFace"),
    ]
    table = paper_table(results)
    assert table.fr_models == ("MagFace", "ArcFace") and table.benchmarks == ("ijbc", "lfw")
    assert table.columns == [
        ("MagFace", "ijbc"),
        ("MagFace", "lfw"),
        ("ArcFace", "ijbc"),
        ("ArcFace", "lfw"),
    ]
    assert table.values[0, 0, 3] == pytest.approx(code("ArcFace", "lfw", "IG-FIQA", 1e-3))
    md = to_markdown(table)
    assert (
        "| FMR | method | MagFace / ijbc | MagFace / lfw | ArcFace / ijbc | ArcFace / lfw |" in md
    )
    tex = to_latex(table)
    assert tex.index("{MagFace}") < tex.index("{ArcFace}")
    assert "Method & ijbc & lfw & ijbc & lfw & mean \\\\" in tex
    # explicit orders win, and rows follow the methods as given
    chosen = paper_table(
        results, fr_models=["ArcFace"], benchmarks=["lfw", "ijbc"], methods=["SER-FIQ", "IG-FIQA"]
    )
    assert chosen.columns == [("ArcFace", "lfw"), ("ArcFace", "ijbc")]
    assert chosen.values[0, 0, 1] == pytest.approx(code("ArcFace", "ijbc", "SER-FIQ", 1e-3))


def test_best_per_column_is_bold_within_each_fmr_block():
    low = {L: 0.001 for L in LIMITS}
    results = [
        result(
            "lfw",
            "ArcFace",
            {
                (1e-3, "a"): (0.0300, low),
                (1e-3, "b"): (0.0232, low),
                (1e-3, "c"): (0.0232, low),  # a tie as printed: both bold
                (1e-4, "a"): (0.0100, low),
                (1e-4, "b"): (0.0500, low),
                (1e-4, "c"): (0.0600, low),
            },
        ),
        result("agedb", "ArcFace", {(1e-3, "a"): (0.5, low), (1e-4, "a"): (0.5, low)}),
    ]
    table = paper_table(results)
    best = table.best()
    assert best[0, :, 0].tolist() == [False, True, True]
    assert best[1, :, 0].tolist() == [True, False, False]
    assert not best[:, :, 1].any()  # one value in the column: nothing to compare with
    md = to_markdown(table)
    assert "| 1e-3 | a | 0.0300 | 0.5000 |" in md
    assert "|  | b | **0.0232** | - |" in md and "|  | c | **0.0232** | - |" in md
    assert "| 1e-4 | a | **0.0100** | 0.5000 |" in md
    tex = to_latex(table)
    # the mean needs every column: only a has one (at FMR 1e-4 it is the best mean, alone)
    assert "b & \\textbf{0.0232} & - & - \\\\" in tex
    assert "a & \\textbf{0.0100} & 0.5000 & 0.2550 \\\\" in tex
    assert tex.count("\\textbf") == 3


def test_missing_cells_are_dashes_and_empty_csv_values():
    low = {L: 0.002 for L in LIMITS}
    results = [
        full_result("lfw", "ArcFace", methods=("IG-FIQA", "CR-FIQA")),
        # CR-FIQA not run here; IG-FIQA's ERC undefined; only FMR 1e-3 evaluated
        result("agedb", "ArcFace", {(1e-3, "IG-FIQA"): (None, low)}, fmrs=(1e-3,)),
    ]
    table = paper_table(results)
    assert np.isnan(table.values[0, :, 1]).all()  # ERC AUC None and CR-FIQA absent
    assert np.isnan(table.values[1, :, 1]).all()  # FMR 1e-4 absent on agedb
    assert np.isfinite(table.values[:, :, 0]).all()
    pauc = paper_table(results, "pauc")
    assert pauc.values[0, 0, 1] == pytest.approx(0.002) and np.isnan(pauc.values[0, 1, 1])
    md = to_markdown(table)
    assert "| 1e-4 | IG-FIQA | **0.1112** | - |" in md
    tex = to_latex(table)
    assert "CR-FIQA & 0.1122 & - & - \\\\" in tex
    rows = [r for r in to_csv_rows(table) if r["benchmark"] != "mean"]
    assert len(rows) == 2 * 2 * 2
    empty = [r for r in rows if r["value"] == ""]
    assert {(r["benchmark"], r["method"], r["fmr"]) for r in empty} == {
        ("agedb", m, f) for m in ("IG-FIQA", "CR-FIQA") for f in FMRS
    }


def test_latex_escapes_names_and_markdown_escapes_pipes():
    values = {(1e-3, "ours_v2 (10% drop)"): (0.05, {0.2: 0.001, 0.3: 0.002})}
    table = paper_table([result("IJB_C", "r100_glint #1", values, fmrs=(1e-3,))])
    tex = to_latex(table)
    assert "ours\\_v2 (10\\% drop) & 0.0500 \\\\" in tex
    assert "\\multicolumn{1}{c}{r100\\_glint \\#1}" in tex
    assert "Method & IJB\\_C \\\\" in tex
    for line in tex.splitlines():
        if not line.startswith("%"):
            assert "%" not in line.replace("\\%", "") and "_" not in line.replace("\\_", "")
    assert latex_escape("a&b$c{d}~e^f\\g") == (
        "a\\&b\\$c\\{d\\}\\textasciitilde{}e\\textasciicircum{}f\\textbackslash{}g"
    )
    piped = paper_table([result("lfw", "A|B", values, fmrs=(1e-3,))])
    assert "A\\|B / lfw" in to_markdown(piped)


def test_latex_layout_multicolumn_headers_and_one_block_per_fmr():
    tex = to_latex(paper_table(grid()))
    lines = tex.splitlines()
    assert "\\begin{tabular}{lccccccc}" in lines  # six columns and the mean
    assert lines.index("\\toprule") < lines.index("\\bottomrule") < lines.index("\\end{tabular}")
    assert " & \\multicolumn{3}{c}{ArcFace} & \\multicolumn{3}{c}{MagFace} &  \\\\" in lines
    assert "\\cmidrule(lr){2-4} \\cmidrule(lr){5-7}" in lines
    assert "\\multicolumn{8}{l}{\\textit{FMR $10^{-3}$}} \\\\" in lines
    assert "\\multicolumn{8}{l}{\\textit{FMR $10^{-4}$}} \\\\" in lines
    assert lines.count("\\midrule") == 2
    # per block: the FMR row then one row per method
    start = lines.index("\\multicolumn{8}{l}{\\textit{FMR $10^{-4}$}} \\\\")
    assert [line.split(" & ")[0] for line in lines[start + 1 : start + 4]] == list(METHODS)
    # the lowest ERC AUC of every column is a row of IG-FIQA (code() grows with the method)
    assert lines[start + 1].count("\\textbf") == 7  # the mean too


def test_csv_round_trip_equals_the_array():
    results = grid()
    results[1] = result("lfw", "MagFace", {(1e-3, "SER-FIQ"): (0.0123456789, {0.2: 0.1, 0.3: 0.2})})
    table = paper_table(results)
    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=list(CSV_FIELDS))
    writer.writeheader()
    writer.writerows(to_csv_rows(table))
    parsed = list(csv.DictReader(io.StringIO(handle.getvalue())))
    assert list(parsed[0]) == list(CSV_FIELDS)
    back = np.full(table.values.shape, -1.0)
    means = [row for row in parsed if row["benchmark"] == "mean"]
    assert len(means) == len(table.fmrs) * len(table.methods)
    for row in parsed:
        assert row["metric"] == "erc_auc" and row["fnmr"] == ""
        if row["benchmark"] == "mean":
            continue
        f = table.fmrs.index(float(row["fmr"]))
        m = table.methods.index(row["method"])
        c = table.columns.index((row["fr_model"], row["benchmark"]))
        back[f, m, c] = float(row["value"]) if row["value"] else math.nan
    assert np.array_equal(back, table.values, equal_nan=True)  # every cell, unrounded
    assert back[0, 2, 3] == 0.0123456789


def test_below_resolution_cells_carry_a_dagger():
    results = [full_result("lfw", "ArcFace", below=(1e-4,)), full_result("ijbc", "ArcFace")]
    table = paper_table(results)
    assert table.below_resolution.tolist() == [[False, False], [True, False]]
    md = to_markdown(table)
    assert "| 1e-4 | IG-FIQA | **0.1112†** | **0.1312** |" in md
    assert "† FMR below the benchmark's resolution" in md
    assert "\\textbf{0.1112}$^\\dagger$" in to_latex(table)


def test_repeated_fr_model_and_benchmark_get_a_second_label():
    table = paper_table([full_result("lfw", "ArcFace"), full_result("lfw", "ArcFace")])
    assert table.fr_models == ("ArcFace", "ArcFace (2)")


def test_fmr_text():
    assert [fmr_text(f) for f in (1e-3, 1e-4, 2.5e-4, 0.01)] == ["1e-3", "1e-4", "2.5e-4", "1e-2"]


def test_write_report_writes_the_paper_tables(tmp_path):
    written = write_report(grid(), tmp_path, plots=False, log=None)
    names = {p.name for p in written["tables"]}
    assert {"paper_table.md", "paper_table.tex", "paper_table.csv", "results.md"} <= names
    md = (tmp_path / "paper_table.md").read_text()
    assert "ERC AUC (CR-FIQA protocol" in md and "pAUC of the EDC (fixed threshold" in md
    assert "L = 0.2" in md
    tex = (tmp_path / "paper_table.tex").read_text()
    assert tex.count("\\begin{tabular}") == 3
    rows = list(csv.DictReader((tmp_path / "paper_table.csv").open()))
    assert {r["metric"] for r in rows} == {"erc_auc", "pauc@0.2", "pauc_normalized@0.2"}
    assert len(rows) == 3 * 2 * 3 * (6 + 1)  # tables x FMRs x methods x (columns + mean)
    report = (tmp_path / "results.md").read_text()
    assert "## Paper tables" in report and to_markdown(paper_table(grid())) in report
    # the per benchmark x FR model tables are still there, after the paper tables
    assert report.index("## Paper tables") < report.index("## lfw - FR model: ArcFace")
