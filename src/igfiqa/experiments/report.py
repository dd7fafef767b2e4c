"""The experiments' one report writer: numbers (one NaN convention: ``-``, as every igfiqa table),
Markdown tables, the forest plot of paired differences, and the JSON records.

EDC and ERC plots and the per-benchmark tables are the ordinary evaluation report's
(:func:`igfiqa.evaluation.report.write_report`), written for each seed's evaluation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from igfiqa.evaluation.paper_table import MISSING
from igfiqa.experiments.stats import excludes_zero
from igfiqa.files import atomic_write_text, json_safe, save_figure


def fmt(value: float | Mapping[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    """A number with ``digits`` decimals, or a :func:`~igfiqa.experiments.stats.mean_ci` mean with
    its interval ``mean [low, high]`` (``signed``: with ``+``); ``-`` when missing or not finite."""
    stats = value if isinstance(value, Mapping) else {"mean": value}
    mean = stats.get("mean")
    if mean is None or not math.isfinite(mean):
        return MISSING
    sign = "+" if signed else ""
    text = f"{mean:{sign}.{digits}f}"
    low, high = stats.get("low"), stats.get("high")
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"
    return text


def fmt_difference(stats: Mapping[str, Any], seeds: int | None = None) -> str:
    """A paired difference: signed mean and interval, **better** / **worse** when the interval
    excludes zero, and ``(better seeds/seeds)`` when ``seeds`` is given."""
    marks = {-1: " **better**", 1: " **worse**", 0: ""}
    text = fmt(stats, signed=True) + marks[excludes_zero(dict(stats))]
    return text if seeds is None else f"{text} ({stats['better_seeds']}/{seeds})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of text cells (an empty header cell stays empty)."""

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable (then recomputed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def write_json(path: Path, data: Any, *, indent: int = 1, private: bool = True) -> None:
    """``data`` as JSON (NaN as null), written atomically."""
    atomic_write_text(json.dumps(json_safe(data), indent=indent), path, private=private)


def plot_forest(
    path: Path,
    rows: Sequence[tuple[str, Sequence[Mapping[str, Any] | None]]],
    series: Sequence[str],
    xlabel: str,
) -> None:
    """Paired differences with their 95% intervals: one row per ``rows`` entry (label, one stats
    dict per ``series``), the series side by side; negative = better."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(rows) + 1.8))
    offsets = [
        0.3 * (i - (len(series) - 1) / 2) / max(1, len(series) - 1) for i in range(len(series))
    ]
    if len(series) == 2:
        offsets = [-0.15, 0.15]
    try:
        for s, (offset, name) in enumerate(zip(offsets, series, strict=True)):
            for row, (_, values) in enumerate(rows):
                stats = values[s] or {}
                mean, low, high = stats.get("mean"), stats.get("low"), stats.get("high")
                if mean is None or not math.isfinite(mean):
                    continue
                y = row + offset
                if (
                    low is not None
                    and high is not None
                    and math.isfinite(low)
                    and math.isfinite(high)
                ):
                    ax.plot([low, high], [y, y], color=f"C{s}")
                ax.plot([mean], [y], "o", color=f"C{s}", label=name if row == 0 else None)
        ax.axvline(0.0, color="0.3", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
