"""The report of an expected-FNMR calibration: the curve with its band, the thresholds for FNMR
targets with their cost, and (with held-out identities) the reliability diagram."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.evaluation.expected_fnmr import CalibrationRun, Reliability
from igfiqa.files import atomic_write_text, json_safe, save_figure
from igfiqa.inference.expected_fnmr import ExpectedFnmr

DEFAULT_TARGETS = (0.01, 0.02, 0.05, 0.10)
CALIBRATION_FILE = "expected_fnmr.json"


def _number(value: float, digits: int = 4) -> str:
    if value == np.inf:
        return "not reached"
    if value == -np.inf:
        return "any quality"
    return "-" if not np.isfinite(value) else f"{value:.{digits}g}"


def thresholds_table(calibration: ExpectedFnmr, targets: Sequence[float] = DEFAULT_TARGETS) -> str:
    """Markdown: per FNMR target, the quality threshold and the share of calibration samples it
    rejects, and the same for the band's upper edge (a threshold one can defend)."""
    lines = [
        "| target FNMR | quality threshold | rejects | conservative threshold (band's upper edge) "
        "| rejects |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in calibration.thresholds(targets):
        lines.append(
            f"| {row['target_fnmr']:.1%} | {_number(row['quality_threshold'])} | "
            f"{row['rejected_share']:.1%} | {_number(row['conservative_quality_threshold'])} | "
            f"{row['conservative_rejected_share']:.1%} |"
        )
    return "\n".join(lines)


def reliability_table(check: Reliability) -> str:
    lines = [
        "| quality decile | comparisons | predicted FNMR [95% band] | observed FNMR [95% interval] "
        "| within band or 0.03 | consistent |",
        "|---|---:|---|---|:---:|:---:|",
    ]
    for i, row in enumerate(check.to_dict()["deciles"]):
        interval = row["observed_interval"]
        shown = "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"
        lines.append(
            f"| {i + 1}: {row['quality_from']:.4g} .. {row['quality_to']:.4g} | "
            f"{row['comparisons']} | {row['predicted_fnmr']:.3f} [{row['band'][0]:.3f}, "
            f"{row['band'][1]:.3f}] | {row['observed_fnmr']:.3f}{shown} | "
            f"{'yes' if row['within'] else '**no**'} | {'yes' if row['consistent'] else '**no**'} |"
        )
    return "\n".join(lines)


def plot_calibration(calibration: ExpectedFnmr, path: Path) -> None:
    """The expected FNMR against quality with its band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = np.asarray(calibration.quality)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.fill_between(q, calibration.low, calibration.high, alpha=0.3, label="95% band")
    ax.plot(q, calibration.fnmr, label="expected FNMR")
    ax.set_xlabel("quality")
    ax.set_ylabel(f"expected FNMR at FMR {calibration.fmr:g}")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def plot_reliability(check: Reliability, path: Path, title: str = "") -> None:
    """Predicted against observed FNMR per quality decile, with the predicted band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    top = float(np.nanmax([np.nanmax(check.high), np.nanmax(check.observed), 0.05])) * 1.05
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="perfect")
    ax.errorbar(
        check.predicted, check.observed,
        xerr=[check.predicted - check.low, check.high - check.predicted],
        fmt="o", capsize=3, label="deciles (band of the prediction)",
    )  # fmt: skip
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted FNMR")
    ax.set_ylabel("observed FNMR (held-out identities)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def write_calibration_report(
    run: CalibrationRun, out: Path, *, targets: Sequence[float] = DEFAULT_TARGETS
) -> dict[str, Any]:
    """Write ``expected_fnmr.json`` (what ``export --fnmr-calibration`` reads), ``calibration.md``
    and the plots into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    calibration = run.calibration
    atomic_write_text(
        json.dumps(json_safe(calibration.to_dict()), indent=2) + "\n",
        out / CALIBRATION_FILE,
        private=False,
    )
    info = calibration.info
    lines = [
        "# Expected FNMR of the quality score",
        "",
        f"Model {info.get('model')}; FR model {info.get('fr_model')}; benchmark "
        f"{info.get('benchmark')}; FMR {calibration.fmr:g} (comparison threshold "
        f"{calibration.threshold:.6g}); {info.get('num_mated_comparisons')} mated comparisons "
        f"against a good reference (quality >= {info.get('reference_quality_floor'):.4g}), "
        f"{info.get('num_nonmated_comparisons')} non-mated, {info.get('num_units')} samples"
        + (f", {info['num_identities']} identities" if info.get("num_identities") else "")
        + f"; {info.get('date')}.",
        "",
        "The expected FNMR holds for this FR model, this threshold and this kind of data only "
        '(docs/scoring.md, "Expected FNMR").',
        "",
        "![expected FNMR](expected_fnmr.png)",
        "",
        "## Thresholds",
        "",
        thresholds_table(calibration, targets),
    ]
    plot_calibration(calibration, out / "expected_fnmr.png")
    written = {"calibration": out / CALIBRATION_FILE, "plot": out / "expected_fnmr.png"}
    if run.reliability is not None:
        check = run.reliability
        held = run.split.get("holdout")
        lines += [
            "",
            f"## Reliability on held-out identities ({held:.0%} of them, not used in the fit)",
            "",
            f"Every decile within its band or within 0.03: **{'yes' if check.within.all() else 'no'}**"
            f" ({int(check.within.sum())}/{check.within.size}); consistent once the held-out "
            f"observation's own noise (bootstrap over its identities) is allowed for: "
            f"{int(check.consistent.sum())}/{check.consistent.size}.",
            "",
            reliability_table(check),
            "",
            "![reliability](reliability.png)",
        ]
        plot_reliability(
            check, out / "reliability.png", f"{info.get('model')} / {info.get('fr_model')}"
        )
        atomic_write_text(
            json.dumps(json_safe(check.to_dict()), indent=2) + "\n",
            out / "reliability.json",
            private=False,
        )
        written.update(
            {"reliability": out / "reliability.json", "diagram": out / "reliability.png"}
        )
    atomic_write_text("\n".join(lines) + "\n", out / "calibration.md", private=False)
    written["report"] = out / "calibration.md"
    return written


__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_TARGETS",
    "plot_calibration",
    "plot_reliability",
    "reliability_table",
    "thresholds_table",
    "write_calibration_report",
]
