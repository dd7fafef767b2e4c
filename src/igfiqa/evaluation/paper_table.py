"""Tables for papers: the summary across benchmarks (methods as rows, FR model x benchmark as
columns, one block of rows per starting threshold, a mean column) and the one renderer of every
table ``igfiqa evaluate`` writes.

:func:`paper_table` builds a :class:`PaperTable` from a list of
:class:`~igfiqa.evaluation.results.BenchmarkResult` (pure: no files). :func:`paper_tables` builds the
three tables the report writes: the ERC AUC (CR-FIQA protocol, the number those papers report), and
the pAUC of the fixed-threshold EDC at the first discard limit L, raw and normalised by e0 L.

Any table is rendered through a :class:`GridTable` (rows in blocks, columns optionally grouped under
spanning headers, optional 95% intervals, reference rows in italics) by :func:`to_markdown` and
:func:`to_latex` (a booktabs ``tabular``); :func:`to_csv_rows` gives a paper table in long format.

Every metric here is lower-is-better; the best value of each column (within each block, among the
methods: reference rows never count) is set in bold. Missing cells (a method not evaluated on that
benchmark with that FR model, or an undefined value) are NaN in the arrays, ``-`` in Markdown and
LaTeX, empty in the CSV. The mean column is the plain mean over the row's columns, and missing
(``-``) unless every column of the row has a value: a mean over fewer benchmarks is not comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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

CSV_FIELDS = (
    "method",
    "fr_model",
    "benchmark",
    "fmr",
    "fnmr",
    "metric",
    "value",
    "ci_low",
    "ci_high",
)
MISSING = "-"
MEAN = "mean"
BELOW_RESOLUTION_NOTE = (
    "FMR below the benchmark's resolution (fewer than 1/FMR non-mated pairs): that FMR is not "
    "actually measured there."
)
DAGGER = "†"


# --------------------------------------------------------------------------------------------------
# the one table model and its renderers


@dataclass(frozen=True)
class GridBlock:
    """A block of rows: ``values[r, c]`` (NaN = missing) with optional 95% intervals ``low`` /
    ``high`` of the same shape. ``caption`` labels the block (Markdown: the first column of its
    first row; LaTeX: a spanning italic row, ``latex_caption`` if given, else the escaped
    caption). ``reference[r]`` rows are set in italics and never bold; ``marked[c]`` puts a dagger
    on the block's values in column c."""

    rows: tuple[str, ...]
    values: np.ndarray
    caption: str = ""
    latex_caption: str = ""
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    reference: tuple[bool, ...] = ()
    marked: np.ndarray | None = None

    def is_reference(self, row: int) -> bool:
        return bool(self.reference[row]) if self.reference else False

    def interval(self, row: int, column: int) -> tuple[float, float] | None:
        if self.low is None or self.high is None:
            return None
        low, high = float(self.low[row, column]), float(self.high[row, column])
        return (low, high) if math.isfinite(low) and math.isfinite(high) else None


@dataclass(frozen=True)
class GridTable:
    """A table of lower-is-better values: ``columns`` (leaf headers) with ``digits`` decimals each,
    the leading ones optionally grouped under spanning headers ``groups`` = ((label, span), ...),
    rows in ``blocks``. ``block_header`` names the Markdown column holding the block captions
    (empty: no such column); ``notes`` are printed under the table."""

    title: str
    columns: tuple[str, ...]
    digits: tuple[int, ...]
    blocks: tuple[GridBlock, ...]
    row_header: str = "method"
    block_header: str = ""
    groups: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()

    def best(self, block: GridBlock) -> np.ndarray:
        """True for the best (lowest) method cells of each column of ``block``, compared as
        printed (ties all bold); a column with fewer than two method values has no best."""
        values = np.asarray(block.values, dtype=np.float64)
        best = np.zeros(values.shape, dtype=bool)
        methods = np.array([not block.is_reference(r) for r in range(len(block.rows))], dtype=bool)
        for c, digits in enumerate(self.digits):
            column = np.round(values[:, c], digits)
            usable = np.isfinite(column) & methods
            if np.count_nonzero(usable) >= 2:
                best[:, c] = usable & (column == column[usable].min())
        return best


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else MISSING


def _cells(table: GridTable, block: GridBlock, latex: bool) -> list[list[str]]:
    """The value cells of ``block`` as text: bold best, dagger, interval."""
    best = table.best(block)
    out = []
    for r in range(len(block.rows)):
        row = []
        for c, digits in enumerate(table.digits):
            value = float(block.values[r, c])
            text = _number(value, digits)
            if text == MISSING:
                row.append(text)
                continue
            dagger = block.marked is not None and bool(block.marked[c])
            if latex:
                text = f"\\textbf{{{text}}}" if best[r, c] else text
                text += "$^\\dagger$" if dagger else ""
            else:  # Markdown: the dagger inside the bold
                text += DAGGER if dagger else ""
                text = f"**{text}**" if best[r, c] else text
            interval = block.interval(r, c)
            if interval is not None:
                low, high = (_number(v, digits) for v in interval)
                text += f" {{\\scriptsize [{low}, {high}]}}" if latex else f" [{low}, {high}]"
            row.append(text)
        out.append(row)
    return out


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def grid_markdown(table: GridTable) -> str:
    """A Markdown table: the title line (if any), the header, one row per block row; best per
    column in bold, reference rows in italics, intervals in brackets."""
    leaf = [_md_escape(c) for c in table.columns]
    position = 0
    for label, span in table.groups:
        for c in range(position, position + span):
            leaf[c] = f"{_md_escape(label)} / {leaf[c]}"
        position += span
    lead = [table.block_header] if table.block_header else []
    header = [*lead, table.row_header, *leaf]
    lines = []
    if table.title:
        lines += [f"**{table.title}** (lower is better; best per column in bold)", ""]
    lines += [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * (len(lead) + 1) + "---:|" * len(table.columns),
    ]
    for block in table.blocks:
        cells = _cells(table, block, latex=False)
        for r, name in enumerate(block.rows):
            label = _md_escape(name)
            if block.is_reference(r):
                label = f"*{label}*"
            first = [block.caption if r == 0 else ""] if table.block_header else []
            lines.append("| " + " | ".join([*first, label, *cells[r]]) + " |")
    if table.notes:
        lines.append("")
        lines += list(table.notes)
    return "\n".join(lines) + "\n"


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
    """``text`` with LaTeX's special characters escaped (``_`` -> ``\\_``, ``%`` -> ``\\%`` ...);
    the dagger becomes ``$^\\dagger$``."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text).replace(DAGGER, "$^\\dagger$")


def grid_latex(table: GridTable) -> str:
    """A booktabs ``tabular``: spanning ``\\multicolumn`` headers over grouped columns, a
    ``\\midrule`` and an italic caption row per block, best per column in ``\\textbf``, reference
    rows in ``\\textit``. Needs ``\\usepackage{booktabs}``; every row has 1 + len(columns) cells."""
    width = 1 + len(table.columns)
    lines = []
    if table.title:
        lines.append(f"% {latex_escape(table.title)}; lower is better, best per column in bold.")
    lines += [
        "% Needs \\usepackage{booktabs}.",
        "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
        "\\toprule",
    ]
    if table.groups:
        cells = [f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(g)}}}" for g, span in table.groups]
        grouped = sum(span for _, span in table.groups)
        cells += [""] * (len(table.columns) - grouped)
        lines.append(" & " + " & ".join(cells) + " \\\\")
        rules, position = [], 2
        for _, span in table.groups:
            rules.append(f"\\cmidrule(lr){{{position}-{position + span - 1}}}")
            position += span
        lines.append(" ".join(rules))
    header = [latex_escape(table.row_header[:1].upper() + table.row_header[1:])]
    lines.append(" & ".join(header + [latex_escape(c) for c in table.columns]) + " \\\\")
    for b, block in enumerate(table.blocks):
        if b == 0 or block.caption or block.latex_caption:
            lines.append("\\midrule")
        caption = block.latex_caption or latex_escape(block.caption)
        if caption:
            lines.append(f"\\multicolumn{{{width}}}{{l}}{{\\textit{{{caption}}}}} \\\\")
        cells = _cells(table, block, latex=True)
        for r, name in enumerate(block.rows):
            label = latex_escape(name)
            if block.is_reference(r):
                label = f"\\textit{{{label}}}"
            lines.append(" & ".join([label, *cells[r]]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {latex_escape(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# the summary across benchmarks


@dataclass(frozen=True)
class PaperTable:
    """One metric in the paper layout.

    ``values[f, m, c]`` is the metric of method ``methods[m]`` in block ``f`` (the starting
    thresholds :attr:`blocks`: ``fmrs``, then ``fnmrs``) and column ``c``; columns run over
    ``fr_models`` (outer) x ``benchmarks`` (inner), see :attr:`columns`. NaN marks a missing cell.
    ``below_resolution[f, c]`` is True where that FMR is below the resolution of that column's
    benchmark. ``limit`` is the discard limit L of the pAUC metrics (None for the ERC AUC);
    ``digits`` the decimals the renderers print; ``low`` / ``high`` the 95% bootstrap intervals
    (NaN where none).
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
    fnmrs: tuple[float, ...] = ()
    low: np.ndarray | None = field(default=None, compare=False)
    high: np.ndarray | None = field(default=None, compare=False)

    @property
    def blocks(self) -> list[tuple[str, float]]:
        """The starting threshold of every block: ``("FMR", f)`` ..., then ``("FNMR", f)`` ..."""
        return [("FMR", f) for f in self.fmrs] + [("FNMR", f) for f in self.fnmrs]

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

    @property
    def has_mean(self) -> bool:
        """Whether the table has a mean column (two columns or more)."""
        return len(self.columns) >= 2

    def means(self) -> np.ndarray:
        """``(blocks, methods)``: the mean over the columns, NaN unless every column has a value."""
        if not self.values.shape[2]:
            return np.full(self.values.shape[:2], np.nan)
        complete = np.isfinite(self.values).all(axis=2)
        with np.errstate(invalid="ignore"):
            mean = self.values.mean(axis=2)
        return np.where(complete, mean, np.nan)

    def formatted(self) -> np.ndarray:
        """The cell texts (no markup): the value with :attr:`digits` decimals, or ``-``."""
        out = np.full(self.values.shape, MISSING, dtype=object)
        finite = np.isfinite(self.values)
        for index in zip(*np.nonzero(finite), strict=True):
            out[index] = f"{self.values[index]:.{self.digits}f}"
        return out

    def best(self) -> np.ndarray:
        """True for the best (lowest) cells of each column within each block.

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

    def grid(self) -> GridTable:
        """This table as a :class:`GridTable` (with the mean column when :attr:`has_mean`)."""
        extra = 1 if self.has_mean else 0
        means = self.means()
        only_fmr = not self.fnmrs
        blocks = []
        for f, (kind, target) in enumerate(self.blocks):
            values = self.values[f]
            low = None if self.low is None else self.low[f]
            high = None if self.high is None else self.high[f]
            marked = self.below_resolution[f]
            if extra:
                values = np.concatenate([values, means[f][:, None]], axis=1)
                if low is not None and high is not None:
                    gap = np.full((len(self.methods), 1), np.nan)
                    low = np.concatenate([low, gap], axis=1)
                    high = np.concatenate([high, gap], axis=1)
                marked = np.append(marked, False)
            blocks.append(
                GridBlock(
                    rows=self.methods,
                    values=values,
                    caption=fmr_text(target) if only_fmr else f"{kind} {fmr_text(target)}",
                    latex_caption=f"{kind} {_fmr_latex(target)}",
                    low=low,
                    high=high,
                    marked=marked,
                )
            )
        return GridTable(
            title=self.title,
            columns=tuple(b for _, b in self.columns) + ((MEAN,) if extra else ()),
            digits=(self.digits,) * (len(self.columns) + extra),
            blocks=tuple(blocks),
            row_header="method",
            block_header="FMR" if only_fmr else "start",
            groups=tuple((fr, len(self.benchmarks)) for fr in self.fr_models),
            notes=(f"{DAGGER} {BELOW_RESOLUTION_NOTE}",) if self.below_resolution.any() else (),
        )


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


def _at_start(result: BenchmarkResult, kind: str, target: float) -> FmrResult | None:
    for fr in result.per_fmr if kind == "FMR" else result.per_fnmr:
        if math.isclose(fr.target, target, rel_tol=1e-9, abs_tol=0.0):
            return fr
    return None


def _limit_key(values: dict[float, Any], limit: float | None) -> float | None:
    for key in values:
        if limit is not None and math.isclose(key, limit, rel_tol=1e-9, abs_tol=0.0):
            return key
    return None


def _value(curve: CurveResult, metric: str, limit: float | None) -> tuple[float, float, float]:
    """(value, interval low, interval high) of one curve; NaN where missing."""
    if metric == "erc_auc":
        value = math.nan if curve.erc_auc is None else float(curve.erc_auc)
        low, high = curve.erc_auc_ci if curve.erc_auc_ci is not None else (math.nan, math.nan)
        return value, low, high
    values: dict[float, float] = getattr(curve, metric)
    key = _limit_key(values, limit)
    if key is None:
        return math.nan, math.nan, math.nan
    intervals: dict[float, tuple[float, float]] = getattr(curve, f"{metric}_ci")
    low, high = intervals.get(key, (math.nan, math.nan))
    return float(values[key]), low, high


def paper_table(
    results: Sequence[BenchmarkResult],
    metric: Metric = "erc_auc",
    *,
    fmrs: Sequence[float] | None = None,
    fnmrs: Sequence[float] | None = None,
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
    FMRs (default: those of the results, in order of first appearance), then, for the pAUC metrics,
    the initial FNMRs (``fnmrs``, default: those of the results; the ERC has none). ``limit`` is
    the discard limit of the pAUC metrics (default: the first limit of the first result); it must
    be None for ``erc_auc``. A (FR model, benchmark) pair given twice keeps both, the second FR
    model labelled ``NAME (2)``. Bootstrap intervals of the results are carried in ``low`` /
    ``high``.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown paper-table metric {metric!r}; choose from {sorted(METRICS)}")
    results = list(results)
    if metric == "erc_auc":
        if limit is not None:
            raise ConfigError("the ERC AUC has no discard limit; pass limit only for pAUC metrics")
        if fnmrs:
            raise ConfigError("the ERC AUC exists for target FMRs only, not for initial FNMRs")
        fnmrs = ()
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
    fnmr_list = tuple(
        float(f)
        for f in (
            fnmrs
            if fnmrs is not None
            else _first_appearance_floats(fr.target for r in results for fr in r.per_fnmr)
        )
    )
    blocks = [("FMR", f) for f in fmr_list] + [("FNMR", f) for f in fnmr_list]
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
    shape = (len(blocks), len(method_list), len(column_of))
    values, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    below = np.zeros((len(blocks), len(column_of)), dtype=bool)
    for result, label in zip(results, labels, strict=True):
        c = column_of.get(label)
        if c is None:
            continue
        for f, (kind, target) in enumerate(blocks):
            at = _at_start(result, kind, target)
            if at is None:
                continue
            below[f, c] = at.threshold.below_resolution
            for curve in at.curves:
                m = row_of.get(curve.name)
                if curve.kind == "method" and m is not None:
                    values[f, m, c], low[f, m, c], high[f, m, c] = _value(curve, metric, limit)
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
        fnmrs=fnmr_list,
        low=low,
        high=high,
    )


def paper_tables(results: Sequence[BenchmarkResult]) -> list[PaperTable]:
    """The report's three paper tables: the ERC AUC (CR-FIQA protocol), and the pAUC of the EDC at
    the first limit, raw and normalised by e0 L (the one whose mean over benchmarks compares
    benchmarks of different error levels fairly)."""
    return [
        paper_table(results, "erc_auc"),
        paper_table(results, "pauc"),
        paper_table(results, "pauc_normalized"),
    ]


def fmr_text(fmr: float) -> str:
    """An FMR as papers write it: ``1e-3``, ``2.5e-4``."""
    mantissa, exponent = f"{fmr:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _fmr_latex(fmr: float) -> str:
    mantissa, exponent = fmr_text(fmr).split("e")
    power = f"10^{{{exponent}}}"
    return f"${power}$" if mantissa == "1" else f"${mantissa} \\times {power}$"


def to_markdown(table: PaperTable | GridTable) -> str:
    """A Markdown table (:func:`grid_markdown`); a :class:`PaperTable` one row per (block,
    method), the mean column last."""
    return grid_markdown(table.grid() if isinstance(table, PaperTable) else table)


def to_latex(table: PaperTable | GridTable) -> str:
    """A booktabs ``tabular`` (:func:`grid_latex`); a :class:`PaperTable` has the FR models as
    ``\\multicolumn`` headers over their benchmarks and one block per starting threshold."""
    return grid_latex(table.grid() if isinstance(table, PaperTable) else table)


def to_csv_rows(table: PaperTable) -> list[dict[str, Any]]:
    """Long format, one row per cell: method, fr_model, benchmark, fmr or fnmr (the other empty),
    metric, value, ci_low, ci_high; then the mean column's cells (fr_model and benchmark
    ``mean``).

    Values are the unrounded floats, or ``""`` where missing.
    """

    def number(value: float) -> float | str:
        return float(value) if math.isfinite(value) else ""

    def interval(array: np.ndarray | None, index: tuple[int, int, int]) -> float | str:
        return "" if array is None else number(float(array[index]))

    rows = []
    means = table.means()
    for f, (kind, target) in enumerate(table.blocks):
        start = {"fmr": target, "fnmr": ""} if kind == "FMR" else {"fmr": "", "fnmr": target}
        for m, method in enumerate(table.methods):
            for c, (fr, bench) in enumerate(table.columns):
                rows.append(
                    {
                        "method": method,
                        "fr_model": fr,
                        "benchmark": bench,
                        **start,
                        "metric": table.metric_name,
                        "value": number(float(table.values[f, m, c])),
                        "ci_low": interval(table.low, (f, m, c)),
                        "ci_high": interval(table.high, (f, m, c)),
                    }
                )
            if table.has_mean:
                rows.append(
                    {
                        "method": method,
                        "fr_model": MEAN,
                        "benchmark": MEAN,
                        **start,
                        "metric": table.metric_name,
                        "value": number(float(means[f, m])),
                        "ci_low": "",
                        "ci_high": "",
                    }
                )
    return rows
