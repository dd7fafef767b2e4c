"""The experiments' report writer: one NaN convention, one Markdown table writer."""

from __future__ import annotations

import math

from igfiqa.evaluation.paper_table import MISSING
from igfiqa.experiments.report import fmt, fmt_difference, markdown_table


def test_one_nan_convention_for_numbers_and_intervals() -> None:
    assert MISSING == "-"
    for missing in (None, math.nan, math.inf, {}, {"mean": None}, {"mean": math.nan}):
        assert fmt(missing) == MISSING
    assert fmt(0.12345) == "0.123" and fmt(2, digits=1) == "2.0"
    assert fmt({"mean": 0.5, "low": 0.4, "high": 0.6}) == "0.500 [0.400, 0.600]"
    assert fmt({"mean": 0.5, "low": math.nan, "high": math.nan}) == "0.500"  # one seed
    assert fmt({"mean": -0.01, "low": -0.02, "high": 0.0}, signed=True) == "-0.010 [-0.020, +0.000]"


def test_paired_differences_say_which_intervals_exclude_zero() -> None:
    better = {"mean": -0.05, "low": -0.08, "high": -0.02, "better_seeds": 3}
    assert fmt_difference(better, 3) == "-0.050 [-0.080, -0.020] **better** (3/3)"
    worse = {"mean": 0.05, "low": 0.02, "high": 0.08, "better_seeds": 0}
    assert fmt_difference(worse) == "+0.050 [+0.020, +0.080] **worse**"
    assert fmt_difference({"mean": math.nan, "better_seeds": 0}, 2) == "- (0/2)"


def test_markdown_table() -> None:
    table = markdown_table(["a", "b", ""], [["1", "2", "x"], ["3", "-", "y"]])
    assert table.splitlines() == [
        "| a | b | |",
        "|---|---|---|",
        "| 1 | 2 | x |",
        "| 3 | - | y |",
    ]
