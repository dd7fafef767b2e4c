"""Write evaluation results into one folder: EDC and ERC plots (PNG + SVG), Markdown/CSV/JSON tables.

Files (``<b>`` = benchmark, ``<m>`` = FR model, ``<f>`` = target FMR):

* ``edc_<b>__<m>__fmr<f>.png/.svg`` -- "EDC (fixed threshold)": every method plus the random,
  theoretical-best and oracle reference lines, dotted verticals at the pAUC limits.
* ``erc_<b>__<m>__fmr<f>.png/.svg`` -- "ERC (CR-FIQA protocol, threshold recomputed)".
* ``results.md``, ``results.csv``, ``results.json`` -- pAUC raw / normalised / relative to the
  oracle at every limit and FMR, the ERC AUC, thresholds and resolution warnings.
* ``curves_<b>__<m>.npz`` -- the curves themselves.
* ``paper_table.md/.tex/.csv`` -- the CR-FIQA / IG-FIQA paper layout (methods x FR model x
  benchmark, one block per FMR) of the ERC AUC and of the pAUC at the first limit
  (:mod:`igfiqa.evaluation.paper_table`); results.md embeds the Markdown version.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.evaluation.paper_table import (
    CSV_FIELDS,
    PaperTable,
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


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _fmr_tag(fmr: float) -> str:
    return f"{fmr:.0e}".replace("+", "")


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _label(fr: FmrResult) -> str:
    note = " (below resolution!)" if fr.threshold.below_resolution else ""
    return f"FMR {fr.target_fmr:g}{note}"


def _save_figure(fig: Any, path_stem: Path) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.svg``."""
    fig.tight_layout()
    paths = [path_stem.parent / f"{path_stem.name}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        save_figure(fig, path, dpi=120)
    return paths


def plot_edc(result: BenchmarkResult, fr: FmrResult, path_stem: Path) -> list[Path]:
    """The EDC (fixed threshold) plot of one benchmark, FR model and FMR, as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    limit_max = max(result.limits)
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    try:
        for curve in fr.curves:
            style = _REFERENCE_STYLE.get(curve.name, {"linewidth": 1.6})
            label = curve.name
            if curve.kind == "method":
                label = f"{curve.name} (pAUC@{limit_max:g} {_fmt(curve.pauc[limit_max], 4)})"
            step = "post" if curve.name != THEORETICAL_BEST else None
            if step:
                ax.step(curve.discard_fraction, curve.fnmr, where="post", label=label, **style)
            else:
                ax.plot(curve.discard_fraction, curve.fnmr, label=label, **style)
        for limit in result.limits:
            ax.axvline(limit, color="0.7", linewidth=0.8, linestyle=":")
        ax.set_xlim(0.0, min(1.0, 2.0 * limit_max))
        ax.set_ylim(bottom=0.0)
        ax.set_xlabel("fraction of mated comparisons discarded (lowest pair quality first)")
        ax.set_ylabel("FNMR")
        ax.set_title(
            f"EDC (fixed threshold) - {result.benchmark}, {result.fr_model}\n"
            f"{_label(fr)}, threshold {fr.threshold.threshold:.4f}, e0 {fr.e0:.4f}",
            fontsize=10,
        )
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
        return _save_figure(fig, path_stem)
    finally:
        plt.close(fig)


def plot_erc(result: BenchmarkResult, fr: FmrResult, path_stem: Path) -> list[Path]:
    """The ERC (CR-FIQA protocol) plot of one benchmark, FR model and FMR, as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    try:
        for curve in fr.curves:
            if curve.erc_fnmr is None:
                continue
            ax.plot(
                result.erc_ratios,
                curve.erc_fnmr,
                marker="o",
                markersize=3,
                label=f"{curve.name} (AUC {_fmt(curve.erc_auc, 4)})",
            )
        ax.set_xlabel("ratio of unconsidered comparisons (all pairs, lowest quality first)")
        ax.set_ylabel("FNMR")
        ax.set_ylim(bottom=0.0)
        ax.set_title(
            f"ERC (CR-FIQA protocol, threshold recomputed per step; not the ISO EDC)\n"
            f"{result.benchmark}, {result.fr_model}, FMR {fr.target_fmr:g}",
            fontsize=10,
        )
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return _save_figure(fig, path_stem)
    finally:
        plt.close(fig)


def table_rows(results: Iterable[BenchmarkResult]) -> list[dict[str, Any]]:
    """One flat row per (benchmark, FR model, FMR, curve, limit): what results.csv holds."""
    rows = []
    for result in results:
        for fr in result.per_fmr:
            for curve in fr.curves:
                for limit in result.limits:
                    rows.append(
                        {
                            "benchmark": result.benchmark,
                            "fr_model": result.fr_model,
                            "target_fmr": fr.target_fmr,
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
                            "pauc_normalized": curve.pauc_normalized[limit],
                            "pauc_vs_oracle": curve.pauc_vs_oracle[limit],
                            "erc_auc": curve.erc_auc if curve.erc_auc is not None else "",
                        }
                    )
    return rows


def paper_section(tables: Sequence[PaperTable]) -> list[str]:
    """The lines of results.md's paper-table section (the Markdown of each table)."""
    lines = [
        "## Paper tables",
        "",
        "Methods as rows, FR model / benchmark as columns, one block per target FMR, as the",
        "CR-FIQA and IG-FIQA papers report them (also in paper_table.tex and paper_table.csv).",
        "",
    ]
    for table in tables:
        lines += [to_markdown(table), ""]
    return lines


def markdown(results: list[BenchmarkResult], paper: Sequence[PaperTable] | None = None) -> str:
    """The Markdown report: the paper tables (``paper``, default :func:`paper_tables` of
    ``results``), then one table per benchmark, FR model and FMR."""
    lines = ["# Quality evaluation", ""]
    lines += [
        "pAUC: stepwise area under the FNM-EDC (fixed threshold, ISO/IEC 29794-1 style) on",
        "[0, L]; norm = pAUC / (e0 L) (1 = no better than random discarding); vs oracle =",
        "(pAUC - oracle) / (e0 L - oracle) (0 = comparison-level oracle). ERC AUC: trapezoid area",
        "of the CR-FIQA ERC (threshold recomputed per discard step) over the discard ratios; a",
        "different protocol, not comparable with pAUC. Lower is better everywhere.",
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
        verification = result.verification
        parts = [
            f"TAR {row['tar']:.4f} at FMR {row['target_fmr']:g}"
            + (" (below resolution)" if row["below_resolution"] else "")
            for row in verification.get("tar_at_fmr", [])
        ]
        if "ten_fold_accuracy" in verification:
            acc = verification["ten_fold_accuracy"]
            parts.append(
                f"10-fold accuracy {acc['accuracy_mean']:.4f} +- {acc['accuracy_std']:.4f}"
            )
        if parts:
            lines.append(f"FR model {result.fr_model}: " + "; ".join(parts) + ".")
            lines.append("")
        for fr in result.per_fmr:
            info = fr.threshold
            title = (
                f"### FMR {fr.target_fmr:g}: threshold {info.threshold:.5f}, achieved FMR "
                f"{info.achieved_fmr:.3g}, e0 (FNMR) {fr.e0:.4f}"
            )
            lines.append(title)
            lines.append("")
            if info.below_resolution:
                lines.append(
                    f"> **WARNING: FMR {fr.target_fmr:g} is below this benchmark's resolution "
                    f"(1/{info.num_nonmated} = {info.resolution:.2g}); values at this FMR are not "
                    "a measurement of that FMR.**"
                )
                lines.append("")
            header = ["curve"]
            for limit in result.limits:
                header += [f"pAUC@{limit:g}", f"norm@{limit:g}", f"vs oracle@{limit:g}"]
            header.append("ERC AUC")
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            for curve in fr.curves:
                cells = [curve.name if curve.kind == "method" else f"*{curve.name}*"]
                for limit in result.limits:
                    cells += [
                        _fmt(curve.pauc[limit], 5),
                        _fmt(curve.pauc_normalized[limit], 4),
                        _fmt(curve.pauc_vs_oracle[limit], 4),
                    ]
                cells.append(_fmt(curve.erc_auc, 4) if curve.erc_auc is not None else "")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


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
        for fr in result.per_fmr:
            tag = _fmr_tag(fr.target_fmr)
            if plots:
                written["plots"] += plot_edc(result, fr, out / f"edc_{stem}__fmr{tag}")
                written["plots"] += plot_erc(result, fr, out / f"erc_{stem}__fmr{tag}")
            for curve in fr.curves:
                key = f"fmr{tag}/{curve.name}"
                arrays[f"{key}/edc_discard_fraction"] = curve.discard_fraction
                arrays[f"{key}/edc_fnmr"] = curve.fnmr
                if curve.erc_fnmr is not None:
                    arrays[f"{key}/erc_fnmr"] = curve.erc_fnmr
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
    written["tables"] += [md_path, csv_path, json_path]
    written["tables"] += write_paper_tables(tables, out)
    if log is not None:
        for result in results:
            for warning in result.warnings:
                log(f"WARNING: {warning}")
    return written
