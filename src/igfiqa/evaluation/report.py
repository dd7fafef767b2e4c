"""Write evaluation results into one folder: EDC and ERC plots (PNG + SVG), Markdown/LaTeX/CSV/JSON
tables.

Files (``<b>`` = benchmark, ``<m>`` = FR model, ``<s>`` = starting threshold: ``fmr<f>`` for a
target FMR, ``fnmr<f>`` for an initial FNMR):

* ``edc_<b>__<m>__<s>.png/.svg`` -- "EDC (fixed threshold)": every method plus the random,
  theoretical-best and oracle reference lines, dotted verticals at the pAUC limits; the legend
  sits to the right of the axes, never over the curves.
* ``fmedc_<b>__<m>__<s>.png/.svg`` -- the FM-EDC (false matches), when computed (``fm_edc``).
* ``erc_<b>__<m>__fmr<f>.png/.svg`` -- "ERC (CR-FIQA protocol, threshold recomputed)".
* ``results.md``, ``results.tex``, ``results.csv``, ``results.json`` -- per benchmark, FR model and
  starting threshold: pAUC raw / normalised / relative to the oracle at every limit, the ERC AUC,
  the FM-EDC pAUC, 95% bootstrap intervals when computed, thresholds and resolution warnings.
* ``curves_<b>__<m>.npz`` -- the curves themselves.
* ``paper_table.md/.tex/.csv`` -- the summary across benchmarks in the CR-FIQA / IG-FIQA paper
  layout (methods x FR model x benchmark plus a mean column, one block per starting threshold) of
  the ERC AUC and of the pAUC at the first limit, raw and normalised
  (:mod:`igfiqa.evaluation.paper_table`); results.md embeds the Markdown version.

Every table goes through the one renderer of :mod:`igfiqa.evaluation.paper_table` (best per
column in bold, ``-`` for a missing value in Markdown and LaTeX, an empty CSV cell).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.evaluation.paper_table import (
    CSV_FIELDS,
    GridBlock,
    GridTable,
    PaperTable,
    grid_latex,
    grid_markdown,
    latex_escape,
    paper_tables,
    to_csv_rows,
    to_latex,
    to_markdown,
)
from igfiqa.evaluation.results import (
    ORACLE,
    RANDOM,
    SAMPLE_ORACLE,
    THEORETICAL_BEST,
    BenchmarkResult,
    FmrResult,
)
from igfiqa.files import ensure_dir, json_safe, save_figure

_REFERENCE_STYLE = {
    RANDOM: {"color": "0.45", "linestyle": "--", "linewidth": 1.2},
    THEORETICAL_BEST: {"color": "0.2", "linestyle": ":", "linewidth": 1.4},
    ORACLE: {"color": "black", "linestyle": "-.", "linewidth": 1.2},
    SAMPLE_ORACLE: {"color": "tab:brown", "linestyle": (0, (3, 1, 1, 1, 1, 1)), "linewidth": 1.2},
}
#: the plots' axes size in inches; the legend is placed to the right of them and the saved figure
#: grows to hold it (``bbox_inches="tight"``)
AXES_SIZE = (6.0, 4.2)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _label(fr: FmrResult) -> str:
    note = " (below resolution!)" if fr.threshold.below_resolution else ""
    return f"{fr.label}{note}"


@contextmanager
def _figure() -> Iterator[tuple[Any, Any]]:
    """A new figure and axes of :data:`AXES_SIZE`, closed on leaving."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=AXES_SIZE)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


def _legend_outside(ax: Any) -> None:
    """The legend to the right of the axes, top-aligned: it never hides a curve."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _set_limits(ax: Any, curves: Iterable[tuple[np.ndarray, np.ndarray]], x_max: float) -> None:
    """x from 0 to ``x_max``, y from 0 to a little above the highest value shown there."""
    shown = [y[x <= x_max] for x, y in curves]
    top = max((float(np.nanmax(v)) for v in shown if v.size), default=0.0)
    ax.set_xlim(0.0, x_max)
    ax.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)


def _save_figure(fig: Any, path_stem: Path) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.svg``, cropped to everything drawn (the legend
    outside the axes included)."""
    paths = [path_stem.parent / f"{path_stem.name}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        save_figure(fig, path, dpi=120, bbox_inches="tight", pad_inches=0.1)
    return paths


def _method_label(name: str, what: str, value: float | None, interval: Any = None) -> str:
    """``name (what value [low, high])`` with 4 decimals; the interval when it is defined."""
    text = f"{name} ({what} {_fmt(value, 4)}"
    if interval is not None and all(math.isfinite(v) for v in interval):
        text += f" [{_fmt(interval[0], 4)}, {_fmt(interval[1], 4)}]"
    return text + ")"


def plot_edc(result: BenchmarkResult, fr: FmrResult, path_stem: Path) -> list[Path]:
    """The EDC (fixed threshold) plot of one benchmark, FR model and starting threshold."""
    limit_max = max(result.limits)
    with _figure() as (fig, ax):
        for curve in fr.curves:
            style = _REFERENCE_STYLE.get(curve.name, {"linewidth": 1.6})
            label = curve.name
            if curve.kind == "method":
                label = _method_label(
                    curve.name,
                    f"pAUC@{limit_max:g}",
                    curve.pauc[limit_max],
                    curve.pauc_ci.get(limit_max),
                )
            if curve.name == THEORETICAL_BEST:
                ax.plot(curve.discard_fraction, curve.fnmr, label=label, **style)
            else:
                ax.step(curve.discard_fraction, curve.fnmr, where="post", label=label, **style)
        for limit in result.limits:
            ax.axvline(limit, color="0.7", linewidth=0.8, linestyle=":")
        x_max = min(1.0, 2.0 * limit_max)
        _set_limits(ax, ((c.discard_fraction, c.fnmr) for c in fr.curves), x_max)
        ax.set_xlabel("fraction of mated comparisons discarded (lowest pair quality first)")
        ax.set_ylabel("FNMR")
        ax.set_title(
            f"EDC (fixed threshold) - {result.benchmark}, {result.fr_model}\n"
            f"{_label(fr)}, threshold {fr.threshold.threshold:.4f}, e0 {fr.e0:.4f}",
            fontsize=10,
        )
        _legend_outside(ax)
        ax.grid(alpha=0.3)
        return _save_figure(fig, path_stem)


def plot_fm_edc(result: BenchmarkResult, fr: FmrResult, path_stem: Path) -> list[Path]:
    """The FM-EDC (false matches at the same fixed threshold) of every method, with the flat
    random-discarding line at the starting FMR."""
    limit_max = max(result.limits)
    fmr0 = fr.threshold.achieved_fmr
    with _figure() as (fig, ax):
        for curve in fr.curves:
            if curve.fm_fmr is None or curve.fm_discard_fraction is None:
                continue
            label = f"{curve.name} (norm. pAUC@{limit_max:g} "
            label += f"{_fmt(curve.fm_pauc_normalized.get(limit_max), 3)})"
            ax.step(
                curve.fm_discard_fraction, curve.fm_fmr, where="post", label=label, linewidth=1.6
            )
        ax.plot([0.0, 1.0], [fmr0, fmr0], label=RANDOM, **_REFERENCE_STYLE[RANDOM])
        for limit in result.limits:
            ax.axvline(limit, color="0.7", linewidth=0.8, linestyle=":")
        x_max = min(1.0, 2.0 * limit_max)
        shown = [
            (c.fm_discard_fraction, c.fm_fmr)
            for c in fr.curves
            if c.fm_discard_fraction is not None and c.fm_fmr is not None
        ]
        _set_limits(ax, [*shown, (np.array([0.0]), np.array([fmr0]))], x_max)
        ax.set_xlabel("fraction of non-mated comparisons discarded (lowest pair quality first)")
        ax.set_ylabel("FMR")
        ax.set_title(
            f"FM-EDC (fixed threshold) - {result.benchmark}, {result.fr_model}\n"
            f"{_label(fr)}, threshold {fr.threshold.threshold:.4f}, FMR0 {fmr0:.3g} "
            f"({fr.threshold.false_matches} false matches)",
            fontsize=10,
        )
        _legend_outside(ax)
        ax.grid(alpha=0.3)
        return _save_figure(fig, path_stem)


def plot_erc(result: BenchmarkResult, fr: FmrResult, path_stem: Path) -> list[Path]:
    """The ERC (CR-FIQA protocol) plot of one benchmark, FR model and FMR, as PNG and SVG."""
    with _figure() as (fig, ax):
        for curve in fr.curves:
            if curve.erc_fnmr is None:
                continue
            ax.plot(
                result.erc_ratios,
                curve.erc_fnmr,
                marker="o",
                markersize=3,
                label=_method_label(curve.name, "AUC", curve.erc_auc, curve.erc_auc_ci),
            )
        ax.set_xlabel("ratio of unconsidered comparisons (all pairs, lowest quality first)")
        ax.set_ylabel("FNMR")
        ax.set_ylim(bottom=0.0)
        ax.set_title(
            f"ERC (CR-FIQA protocol, threshold recomputed per step; not the ISO EDC)\n"
            f"{result.benchmark}, {result.fr_model}, FMR {fr.target_fmr:g}",
            fontsize=10,
        )
        _legend_outside(ax)
        ax.grid(alpha=0.3)
        return _save_figure(fig, path_stem)


def _csv_number(value: Any) -> Any:
    """The CSV cell of a value: empty for None or NaN (the tables' one NaN convention)."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


def table_rows(results: Iterable[BenchmarkResult]) -> list[dict[str, Any]]:
    """One flat row per (benchmark, FR model, starting threshold, curve, limit): results.csv."""
    rows = []
    nan2 = (math.nan, math.nan)
    for result in results:
        for fr in result.starts:
            for curve in fr.curves:
                erc_ci = curve.erc_auc_ci or nan2
                for limit in result.limits:
                    row = {
                        "benchmark": result.benchmark,
                        "fr_model": result.fr_model,
                        "start": fr.start,
                        "target_fmr": fr.target_fmr,
                        "target_fnmr": fr.target_fnmr,
                        "threshold": fr.threshold.threshold,
                        "achieved_fmr": fr.threshold.achieved_fmr,
                        "below_resolution": fr.threshold.below_resolution,
                        "num_mated": result.num_mated,
                        "num_nonmated": result.num_nonmated,
                        "e0": fr.e0,
                        "curve": curve.name,
                        "kind": curve.kind,
                        "limit": limit,
                        "pauc": curve.pauc[limit],
                        "pauc_ci_low": curve.pauc_ci.get(limit, nan2)[0],
                        "pauc_ci_high": curve.pauc_ci.get(limit, nan2)[1],
                        "pauc_normalized": curve.pauc_normalized[limit],
                        "pauc_normalized_ci_low": curve.pauc_normalized_ci.get(limit, nan2)[0],
                        "pauc_normalized_ci_high": curve.pauc_normalized_ci.get(limit, nan2)[1],
                        "pauc_vs_oracle": curve.pauc_vs_oracle[limit],
                        "pauc_vs_oracle_ci_low": curve.pauc_vs_oracle_ci.get(limit, nan2)[0],
                        "pauc_vs_oracle_ci_high": curve.pauc_vs_oracle_ci.get(limit, nan2)[1],
                        "erc_auc": curve.erc_auc,
                        "erc_auc_ci_low": erc_ci[0],
                        "erc_auc_ci_high": erc_ci[1],
                        "fm_pauc": curve.fm_pauc.get(limit),
                        "fm_pauc_normalized": curve.fm_pauc_normalized.get(limit),
                    }
                    rows.append({key: _csv_number(value) for key, value in row.items()})
    return rows


def benchmark_table(result: BenchmarkResult, fr: FmrResult) -> GridTable:
    """The table of one benchmark, FR model and starting threshold: every curve (methods, then the
    references in italics) with its pAUC raw / normalised / vs oracle at each limit, the FM-EDC
    pAUC over FMR0 L when computed, and the ERC AUC (FMR starts only)."""
    fm = any(c.fm_fmr is not None for c in fr.curves)
    columns: list[str] = []
    digits: list[int] = []
    for limit in result.limits:
        columns += [f"pAUC@{limit:g}", f"norm@{limit:g}", f"vs oracle@{limit:g}"]
        digits += [5, 4, 4]
    if fm:
        columns += [f"FM norm@{limit:g}" for limit in result.limits]
        digits += [4] * len(result.limits)
    erc = fr.target_fnmr is None
    if erc:
        columns.append("ERC AUC")
        digits.append(4)
    shape = (len(fr.curves), len(columns))
    values, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    nan2 = (math.nan, math.nan)
    for r, curve in enumerate(fr.curves):
        cells: list[tuple[float | None, tuple[float, float]]] = []
        for limit in result.limits:
            cells += [
                (curve.pauc[limit], curve.pauc_ci.get(limit, nan2)),
                (curve.pauc_normalized[limit], curve.pauc_normalized_ci.get(limit, nan2)),
                (curve.pauc_vs_oracle[limit], curve.pauc_vs_oracle_ci.get(limit, nan2)),
            ]
        if fm:
            cells += [(curve.fm_pauc_normalized.get(limit), nan2) for limit in result.limits]
        if erc:
            cells.append((curve.erc_auc, curve.erc_auc_ci or nan2))
        for c, (value, interval) in enumerate(cells):
            values[r, c] = math.nan if value is None else value
            low[r, c], high[r, c] = interval
    block = GridBlock(
        rows=tuple(c.name for c in fr.curves),
        values=values,
        low=low,
        high=high,
        reference=tuple(c.kind != "method" for c in fr.curves),
    )
    return GridTable(
        title="",
        columns=tuple(columns),
        digits=tuple(digits),
        blocks=(block,),
        row_header="curve",
    )


def _start_heading(fr: FmrResult) -> str:
    info = fr.threshold
    return (
        f"{fr.label}: threshold {info.threshold:.5f}, achieved FMR {info.achieved_fmr:.3g}, "
        f"e0 (FNMR) {fr.e0:.4f}"
    )


def _verification_line(result: BenchmarkResult) -> str:
    verification = result.verification
    parts = [
        f"TAR {row['tar']:.4f} at FMR {row['target_fmr']:g}"
        + (" (below resolution)" if row["below_resolution"] else "")
        for row in verification.get("tar_at_fmr", [])
    ]
    if "ten_fold_accuracy" in verification:
        acc = verification["ten_fold_accuracy"]
        parts.append(f"10-fold accuracy {acc['accuracy_mean']:.4f} +- {acc['accuracy_std']:.4f}")
    return f"FR model {result.fr_model}: " + "; ".join(parts) + "." if parts else ""


def _bootstrap_line(result: BenchmarkResult) -> str:
    info = result.bootstrap
    if not info:
        return ""
    return (
        f"[low, high]: {info['confidence']:.0%} bootstrap intervals from {info['resamples']} "
        f"resamples of {info['num_units']} units ({info['unit']}; seed {info['seed']})."
    )


def paper_section(tables: Sequence[PaperTable]) -> list[str]:
    """The lines of results.md's paper-table section (the Markdown of each table)."""
    lines = [
        "## Paper tables",
        "",
        "Methods as rows, FR model / benchmark as columns plus their mean, one block per starting",
        "threshold, as the CR-FIQA and IG-FIQA papers report them (also in paper_table.tex and",
        "paper_table.csv). The mean is shown only where a method has every column; the mean of",
        "the normalised pAUC compares benchmarks of different error levels fairly, raw values",
        "weight the hardest benchmark most.",
        "",
    ]
    for table in tables:
        lines += [to_markdown(table), ""]
    return lines


def markdown(results: list[BenchmarkResult], paper: Sequence[PaperTable] | None = None) -> str:
    """The Markdown report: the paper tables (``paper``, default :func:`paper_tables` of
    ``results``), then one table per benchmark, FR model and starting threshold."""
    lines = ["# Quality evaluation", ""]
    lines += [
        "pAUC: stepwise area under the FNM-EDC (fixed threshold, ISO/IEC 29794-1 style) on",
        "[0, L]; norm = pAUC / (e0 L) (1 = no better than random discarding); vs oracle =",
        "(pAUC - oracle) / (e0 L - oracle) (0 = comparison-level oracle). FM norm: the same",
        "normalised pAUC of the FM-EDC (false matches, non-mated comparisons) over FMR0 L. ERC",
        "AUC: trapezoid area of the CR-FIQA ERC (threshold recomputed per discard step) over the",
        "discard ratios; a different protocol, not comparable with pAUC. Lower is better",
        "everywhere; the best method per column is bold, reference curves are in italics; - =",
        "undefined.",
        "",
    ]
    all_warnings = [w for r in results for w in r.warnings]
    if all_warnings:
        lines.append("## Warnings")
        lines.append("")
        lines += [f"- **WARNING** {w}" for w in all_warnings]
        lines.append("")
    lines += paper_section(paper_tables(results) if paper is None else paper)
    for result in results:
        lines.append(f"## {result.benchmark} - FR model: {result.fr_model}")
        lines.append("")
        lines.append(
            f"{result.num_mated} mated / {result.num_nonmated} non-mated pairs"
            + (f", {result.excluded_pairs} excluded" if result.excluded_pairs else "")
            + f"; pair quality = {result.pair_reduce} of the two samples."
        )
        lines.append("")
        for line in (_verification_line(result), _bootstrap_line(result)):
            if line:
                lines += [line, ""]
        for fr in result.starts:
            lines += [f"### {_start_heading(fr)}", ""]
            info = fr.threshold
            if info.below_resolution:
                lines.append(
                    f"> **WARNING: FMR {fr.target_fmr:g} is below this benchmark's resolution "
                    f"(1/{info.num_nonmated} = {info.resolution:.2g}); values at this FMR are not "
                    "a measurement of that FMR.**"
                )
                lines.append("")
            lines.append(grid_markdown(benchmark_table(result, fr)))
    return "\n".join(lines)


def latex(results: list[BenchmarkResult]) -> str:
    """``results.tex``: one booktabs ``tabular`` per benchmark, FR model and starting threshold
    (the tables of results.md), each headed by comments saying what it holds."""
    parts = [
        "% igfiqa evaluate: one table per benchmark, FR model and starting threshold.",
        "% Lower is better; best method per column in bold, reference curves in italics.",
        "",
    ]
    for result in results:
        for fr in result.starts:
            parts.append(
                f"% {latex_escape(result.benchmark)} - FR model {latex_escape(result.fr_model)}"
            )
            parts.append(f"% {latex_escape(_start_heading(fr))}")
            line = _bootstrap_line(result)
            if line:
                parts.append(f"% {latex_escape(line)}")
            parts += [grid_latex(benchmark_table(result, fr)), ""]
    return "\n".join(parts)


def write_paper_tables(tables: Sequence[PaperTable], out_dir: Path) -> list[Path]:
    """Write ``paper_table.md``, ``paper_table.tex`` and ``paper_table.csv`` (all ``tables``)."""
    md_path = out_dir / "paper_table.md"
    md_path.write_text("\n".join(to_markdown(t) for t in tables), encoding="utf-8")
    tex_path = out_dir / "paper_table.tex"
    tex_path.write_text("\n".join(to_latex(t) for t in tables), encoding="utf-8")
    csv_path = out_dir / "paper_table.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_FIELDS))
        writer.writeheader()
        for table in tables:
            writer.writerows(to_csv_rows(table))
    return [md_path, tex_path, csv_path]


def write_report(
    results: BenchmarkResult | list[BenchmarkResult],
    out_dir: str | Path,
    *,
    plots: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, list[Path]]:
    """Write plots, tables and curves of ``results`` into ``out_dir``; print warnings via ``log``.

    Returns the written paths by kind (``plots``, ``tables``, ``curves``).
    """
    if isinstance(results, BenchmarkResult):
        results = [results]
    out = ensure_dir(out_dir, "the report folder (--out)")
    written: dict[str, list[Path]] = {"plots": [], "tables": [], "curves": []}
    for result in results:
        stem = f"{slug(result.benchmark)}__{slug(result.fr_model)}"
        arrays: dict[str, np.ndarray] = {"erc_ratios": result.erc_ratios}
        for fr in result.starts:
            tag = fr.tag
            fm = any(c.fm_fmr is not None for c in fr.curves)
            if plots:
                written["plots"] += plot_edc(result, fr, out / f"edc_{stem}__{tag}")
                if fm:
                    written["plots"] += plot_fm_edc(result, fr, out / f"fmedc_{stem}__{tag}")
                if fr.target_fnmr is None:
                    written["plots"] += plot_erc(result, fr, out / f"erc_{stem}__{tag}")
            for curve in fr.curves:
                key = f"{tag}/{curve.name}"
                arrays[f"{key}/edc_discard_fraction"] = curve.discard_fraction
                arrays[f"{key}/edc_fnmr"] = curve.fnmr
                if curve.erc_fnmr is not None:
                    arrays[f"{key}/erc_fnmr"] = curve.erc_fnmr
                if curve.fm_fmr is not None and curve.fm_discard_fraction is not None:
                    arrays[f"{key}/fm_edc_discard_fraction"] = curve.fm_discard_fraction
                    arrays[f"{key}/fm_edc_fmr"] = curve.fm_fmr
        curves_path = out / f"curves_{stem}.npz"
        np.savez_compressed(curves_path, **arrays)
        written["curves"].append(curves_path)
    rows = table_rows(results)
    csv_path = out / "results.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["benchmark"])
        writer.writeheader()
        writer.writerows(rows)
    json_path = out / "results.json"
    json_path.write_text(
        json.dumps(json_safe([r.summary() for r in results], infinite_as_text=True), indent=2),
        encoding="utf-8",
    )
    tables = paper_tables(results)
    md_path = out / "results.md"
    md_path.write_text(markdown(results, tables), encoding="utf-8")
    tex_path = out / "results.tex"
    tex_path.write_text(latex(results), encoding="utf-8")
    written["tables"] += [md_path, tex_path, csv_path, json_path]
    written["tables"] += write_paper_tables(tables, out)
    if log is not None:
        for result in results:
            for warning in result.warnings:
                log(f"WARNING: {warning}")
    return written
