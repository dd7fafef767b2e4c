"""The CR-FIQA / IG-FIQA paper layout of evaluation results: methods as rows, FR model x benchmark
as columns, one block of rows per target FMR.

:func:`paper_table` builds a :class:`PaperTable` from a list of
:class:`~igfiqa.evaluation.results.BenchmarkResult` (pure: no files). :func:`paper_tables` builds the
two tables the report writes: the ERC AUC (CR-FIQA protocol, the number those papers report) and the
pAUC of the fixed-threshold EDC at the first discard limit L. Renderers: :func:`to_markdown`,
:func:`to_latex` (a booktabs ``tabular``) and :func:`to_csv_rows` (long format).

Every metric here is lower-is-better; the best value of each column (within each FMR block) is set
in bold. Missing cells (a method not evaluated on that benchmark with that FR model, or an undefined
value) are NaN in :attr:`PaperTable.values`, ``-`` in Markdown and LaTeX, empty in the CSV.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from igfiqa.errors import ConfigError
from igfiqa.evaluation.results import BenchmarkResult, CurveResult, FmrResult

Metric = Literal["erc_auc", "pauc", "pauc_normalized", "pauc_vs_oracle"]

METRICS: dict[str, str] = {
    "erc_auc": "ERC AUC (CR-FIQA protocol, threshold recomputed per discard step)",
    "pauc": "pAUC of the EDC (fixed threshold, ISO/IEC 29794-1 style)",
    "pauc_normalized": "normalised pAUC of the EDC (fixed threshold): pAUC / (e0 L)",
    "pauc_vs_oracle": "pAUC of the EDC (fixed threshold) relative to the comparison-level oracle",
}
# Decimals per metric, as results.md prints them: the ERC AUC (a trapezoid area over discard ratios
# 0..0.95, typically 0.00x-0.x) with 4 like CR-FIQA's tables; the raw pAUC on [0, L] (at most
# e0 L, a few 1e-4 for a strong FR model on LFW-sized sets) needs 5 to tell methods apart.
DIGITS: dict[str, int] = {"erc_auc": 4, "pauc": 5, "pauc_normalized": 4, "pauc_vs_oracle": 4}

CSV_FIELDS = ("method", "fr_model", "benchmark", "fmr", "metric", "value")
MISSING = "-"
BELOW_RESOLUTION_NOTE = (
    "FMR below the benchmark's resolution (fewer than 1/FMR non-mated pairs): that FMR is not "
    "actually measured there."
)


@dataclass(frozen=True)
class PaperTable:
    """One metric in the paper layout.

    ``values[f, m, c]`` is the metric of method ``methods[m]`` at ``fmrs[f]`` in column ``c``;
    columns run over ``fr_models`` (outer) x ``benchmarks`` (inner), see :attr:`columns`. NaN marks
    a missing cell. ``below_resolution[f, c]`` is True where that FMR is below the resolution of
    that column's benchmark. ``limit`` is the discard limit L of the pAUC metrics (None for the ERC
    AUC); ``digits`` the decimals the renderers print.
    """

    metric: str
    limit: float | None
    fmrs: tuple[float, ...]
    methods: tuple[str, ...]
    fr_models: tuple[str, ...]
    benchmarks: tuple[str, ...]
    values: np.ndarray
    below_resolution: np.ndarray
    digits: int

    @property
    def columns(self) -> list[tuple[str, str]]:
        """The (FR model, benchmark) of every column, in column order."""
        return [(fr, bench) for fr in self.fr_models for bench in self.benchmarks]

    @property
    def metric_name(self) -> str:
        """The metric as the CSV names it: ``erc_auc``, or e.g. ``pauc@0.2`` with its limit."""
        return self.metric if self.limit is None else f"{self.metric}@{self.limit:g}"

    @property
    def title(self) -> str:
        """A human-readable description of the metric, with its limit L."""
        text = METRICS[self.metric]
        return text if self.limit is None else f"{text}, L = {self.limit:g}"

    def formatted(self) -> np.ndarray:
        """The cell texts (no markup): the value with :attr:`digits` decimals, or ``-``."""
        out = np.full(self.values.shape, MISSING, dtype=object)
        finite = np.isfinite(self.values)
        for index in zip(*np.nonzero(finite), strict=True):
            out[index] = f"{self.values[index]:.{self.digits}f}"
        return out

    def best(self) -> np.ndarray:
        """True for the best (lowest) cells of each column within each FMR block.

        Cells are compared as printed (rounded to :attr:`digits`), so equal-looking values are all
        bold; a column with fewer than two values has no best.
        """
        rounded = np.round(self.values, self.digits)
        best = np.zeros(self.values.shape, dtype=bool)
        for f in range(self.values.shape[0]):
            for c in range(self.values.shape[2]):
                column = rounded[f, :, c]
                finite = np.isfinite(column)
                if np.count_nonzero(finite) >= 2:
                    best[f, :, c] = finite & (column == column[finite].min())
        return best


def _first_appearance(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _first_appearance_floats(items: Iterable[float]) -> tuple[float, ...]:
    out: list[float] = []
    for item in items:
        if not any(math.isclose(item, seen, rel_tol=1e-9, abs_tol=0.0) for seen in out):
            out.append(float(item))
    return tuple(out)


def _unique_labels(results: Sequence[BenchmarkResult]) -> list[tuple[str, str]]:
    """(FR model, benchmark) per result; a repeated pair gets ``(2)``, ``(3)``... on the FR model."""
    seen: dict[tuple[str, str], int] = {}
    labels = []
    for result in results:
        key = (result.fr_model, result.benchmark)
        seen[key] = seen.get(key, 0) + 1
        fr = result.fr_model if seen[key] == 1 else f"{result.fr_model} ({seen[key]})"
        labels.append((fr, result.benchmark))
    return labels


def _at_fmr(result: BenchmarkResult, fmr: float) -> FmrResult | None:
    for fr in result.per_fmr:
        if math.isclose(fr.target_fmr, fmr, rel_tol=1e-9, abs_tol=0.0):
            return fr
    return None


def _value(curve: CurveResult, metric: str, limit: float | None) -> float:
    if metric == "erc_auc":
        return math.nan if curve.erc_auc is None else float(curve.erc_auc)
    values: dict[float, float] = getattr(curve, metric)
    for key, value in values.items():
        if limit is not None and math.isclose(key, limit, rel_tol=1e-9, abs_tol=0.0):
            return float(value)
    return math.nan


def paper_table(
    results: Sequence[BenchmarkResult],
    metric: Metric = "erc_auc",
    *,
    fmrs: Sequence[float] | None = None,
    limit: float | None = None,
    methods: Sequence[str] | None = None,
    fr_models: Sequence[str] | None = None,
    benchmarks: Sequence[str] | None = None,
    digits: int | None = None,
) -> PaperTable:
    """Arrange one metric of ``results`` in the paper layout.

    Rows are the quality methods (``methods``, default: every result's methods in the order they
    first appear; reference curves are never rows), columns the FR models (outer) x benchmarks
    (inner), each by default in the order of first appearance in ``results``; blocks are the target
    FMRs (default: those of the results, in order of first appearance). ``limit`` is the discard
    limit of the pAUC metrics (default: the first limit of the first result); it must be None for
    ``erc_auc``. A (FR model, benchmark) pair given twice keeps both, the second FR model labelled
    ``NAME (2)``.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown paper-table metric {metric!r}; choose from {sorted(METRICS)}")
    results = list(results)
    if metric == "erc_auc":
        if limit is not None:
            raise ConfigError("the ERC AUC has no discard limit; pass limit only for pAUC metrics")
    elif limit is None:
        limit = results[0].limits[0] if results and results[0].limits else math.nan
    labels = _unique_labels(results)
    fmr_list = tuple(
        float(f)
        for f in (
            fmrs
            if fmrs is not None
            else _first_appearance_floats(fr.target_fmr for r in results for fr in r.per_fmr)
        )
    )
    method_list = (
        tuple(methods)
        if methods is not None
        else _first_appearance(m for r in results for m in r.methods)
    )
    fr_list = tuple(fr_models) if fr_models is not None else _first_appearance(f for f, _ in labels)
    bench_list = (
        tuple(benchmarks) if benchmarks is not None else _first_appearance(b for _, b in labels)
    )
    column_of = {col: i for i, col in enumerate((f, b) for f in fr_list for b in bench_list)}
    row_of = {name: i for i, name in enumerate(method_list)}
    values = np.full((len(fmr_list), len(method_list), len(column_of)), np.nan)
    below = np.zeros((len(fmr_list), len(column_of)), dtype=bool)
    for result, label in zip(results, labels, strict=True):
        c = column_of.get(label)
        if c is None:
            continue
        for f, fmr in enumerate(fmr_list):
            at = _at_fmr(result, fmr)
            if at is None:
                continue
            below[f, c] = at.threshold.below_resolution
            for curve in at.curves:
                m = row_of.get(curve.name)
                if curve.kind == "method" and m is not None:
                    values[f, m, c] = _value(curve, metric, limit)
    return PaperTable(
        metric=metric,
        limit=limit,
        fmrs=fmr_list,
        methods=method_list,
        fr_models=fr_list,
        benchmarks=bench_list,
        values=values,
        below_resolution=below,
        digits=DIGITS[metric] if digits is None else digits,
    )


def paper_tables(results: Sequence[BenchmarkResult]) -> list[PaperTable]:
    """The report's two paper tables: ERC AUC (CR-FIQA protocol) and the pAUC at the first limit."""
    return [paper_table(results, "erc_auc"), paper_table(results, "pauc")]


def fmr_text(fmr: float) -> str:
    """An FMR as papers write it: ``1e-3``, ``2.5e-4``."""
    mantissa, exponent = f"{fmr:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _fmr_latex(fmr: float) -> str:
    mantissa, exponent = fmr_text(fmr).split("e")
    power = f"10^{{{exponent}}}"
    return f"${power}$" if mantissa == "1" else f"${mantissa} \\times {power}$"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``_`` -> ``\\_``, ``%`` -> ``\\%`` ...)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_markdown(table: PaperTable) -> str:
    """A Markdown table: a title line, then one row per (FMR, method); best per column in bold."""
    cells = table.formatted()
    best = table.best()
    header = ["FMR", "method"] + [f"{_md_escape(fr)} / {_md_escape(b)}" for fr, b in table.columns]
    lines = [
        f"**{table.title}** (lower is better; best per column in bold)",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * len(table.columns),
    ]
    for f, fmr in enumerate(table.fmrs):
        for m, method in enumerate(table.methods):
            row = [fmr_text(fmr) if m == 0 else "", _md_escape(method)]
            for c in range(len(table.columns)):
                text = str(cells[f, m, c])
                if text != MISSING and table.below_resolution[f, c]:
                    text += "†"
                row.append(f"**{text}**" if best[f, m, c] else text)
            lines.append("| " + " | ".join(row) + " |")
    if table.below_resolution.any():
        lines += ["", f"† {BELOW_RESOLUTION_NOTE}"]
    return "\n".join(lines) + "\n"


def to_latex(table: PaperTable) -> str:
    """A booktabs ``tabular``: FR models as ``\\multicolumn`` headers over their benchmarks, one
    block per FMR; best per column in ``\\textbf``. Needs ``\\usepackage{booktabs}``."""
    cells = table.formatted()
    best = table.best()
    n_bench = len(table.benchmarks)
    width = 1 + len(table.columns)
    lines = [
        f"% {latex_escape(table.title)}; lower is better, best per column in bold.",
        "% Needs \\usepackage{booktabs}.",
        "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
        "\\toprule",
    ]
    if table.columns:
        groups = [
            f"\\multicolumn{{{n_bench}}}{{c}}{{{latex_escape(fr)}}}" for fr in table.fr_models
        ]
        lines.append(" & " + " & ".join(groups) + " \\\\")
        rules = [
            f"\\cmidrule(lr){{{2 + i * n_bench}-{1 + (i + 1) * n_bench}}}"
            for i in range(len(table.fr_models))
        ]
        lines.append(" ".join(rules))
    lines.append(" & ".join(["Method"] + [latex_escape(b) for _, b in table.columns]) + " \\\\")
    for f, fmr in enumerate(table.fmrs):
        lines.append("\\midrule")
        lines.append(f"\\multicolumn{{{width}}}{{l}}{{\\textit{{FMR {_fmr_latex(fmr)}}}}} \\\\")
        for m, method in enumerate(table.methods):
            row = [latex_escape(method)]
            for c in range(len(table.columns)):
                text = str(cells[f, m, c])
                if text != MISSING and best[f, m, c]:
                    text = f"\\textbf{{{text}}}"
                if text != MISSING and table.below_resolution[f, c]:
                    text += "$^\\dagger$"
                row.append(text)
            lines.append(" & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if table.below_resolution.any():
        lines.append(f"% $^\\dagger$ {latex_escape(BELOW_RESOLUTION_NOTE)}")
    return "\n".join(lines) + "\n"


def to_csv_rows(table: PaperTable) -> list[dict[str, Any]]:
    """Long format, one row per cell: method, fr_model, benchmark, fmr, metric, value.

    ``value`` is the unrounded float, or ``""`` for a missing cell.
    """
    rows = []
    for f, fmr in enumerate(table.fmrs):
        for m, method in enumerate(table.methods):
            for c, (fr, bench) in enumerate(table.columns):
                value = float(table.values[f, m, c])
                rows.append(
                    {
                        "method": method,
                        "fr_model": fr,
                        "benchmark": bench,
                        "fmr": fmr,
                        "metric": table.metric_name,
                        "value": value if math.isfinite(value) else "",
                    }
                )
    return rows
