"""``igfiqa demo``: the experiment engine's preset for a controlled test of IG-FIQA's claim on a
fresh machine.

:func:`run_demo` renders identity-labelled synthetic faces (a share of them *low-variance*
identities whose images barely vary), trains the CR-FIQA baseline and three IG-FIQA variants with
the same tiny backbone, data and number of epochs (one seed), and evaluates every variant on
held-out identities with the CR-FIQA run's backbone as the FR model: EDC and pAUC (FNM-EDC at a
fixed threshold), the CR-FIQA ERC, the Spearman correlation of the predicted quality with the
generator's ground-truth quality, the guidance weights that the IG-FIQA runs gave to low-variance
versus ordinary classes, whether the benchmark is informative at all (:func:`benchmark_check`) and
whether each model's expected FNMR holds on identities it was not fitted on. Everything is seeded:
a rerun with the same settings gives the same table.

The length of the run is a number of epochs (6 by default), never a clock: a time limit would make
the table depend on the machine's speed. ``resume=True`` (``igfiqa demo --resume``) continues an
interrupted demo in the same folder with the same settings (recorded in :data:`SETTINGS_FILE`):
finished variants are reused, the interrupted one continues from its last checkpoint (training
resumes bit-exactly), so the table is that of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.evaluation.quality.oracle import GROUND_TRUTH_NAME as GROUND_TRUTH
from igfiqa.experiments.data import seed_data
from igfiqa.experiments.evaluate import evaluate_seed
from igfiqa.experiments.folders import holding, refuse_symlinks
from igfiqa.experiments.report import fmt, markdown_table, write_json
from igfiqa.experiments.run import prepare, run_units, runners
from igfiqa.experiments.settings import Settings, demo_settings
from igfiqa.experiments.unit import Speed, Unit
from igfiqa.files import atomic_write_text

DEFAULT_EPOCHS = 6
"""Epochs per variant of the documented demo (``igfiqa demo`` without ``--epochs``)."""
SETTINGS_FILE = "demo_settings.json"
"""The output folder's record of the demo's settings, written before any training: what
``resume=True`` compares with the settings it is given."""

CHECK_FMR = 1e-2
CHECK_LIMIT = 0.2
TARGETS = {"relevance": 0.6, "clean_fnmr": 0.05, "e0": 0.10}
"""What the benchmark must show to be informative (docs/method.md, "Is the benchmark informative?"):
quality relevance ``r >= 0.6``, FNMR of clean-clean mated pairs ``<= 0.05`` and e0 ``>= 0.10``, all at
FMR 1e-2 (and L = 0.2 for ``r``)."""
QUALITY_BINS = ((1.0, 1.0), (0.75, 1.0), (0.5, 0.75), (0.25, 0.5), (0.0, 0.25))
"""Bins [from, to) of the lower ground-truth quality of a mated pair; (1, 1) = both images clean."""
FNMR_CHECK_FMR = 1e-3
"""FMR of the demo's expected-FNMR check (the held-out set's non-mated pairs resolve it)."""


@dataclass
class VariantOutcome:
    """What one variant's training and evaluation measured."""

    key: str
    label: str
    checkpoint: str
    steps: int
    train_seconds: float
    spearman: float
    spearman_low_variance: float
    spearman_ordinary: float
    guidance_weight_low_variance: float | None = None
    guidance_weight_ordinary: float | None = None
    zero_weight_share_low_variance: float | None = None
    zero_weight_share_ordinary: float | None = None
    pauc: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, unit: Unit) -> VariantOutcome:
        record = unit.record or {}

        def number(name: str) -> float:
            value = record.get(name)
            return math.nan if value is None else float(value)

        weights = (
            "guidance_weight_low_variance", "guidance_weight_ordinary",
            "zero_weight_share_low_variance", "zero_weight_share_ordinary",
        )  # fmt: skip
        return cls(
            key=unit.variant.key, label=unit.label, checkpoint=str(unit.checkpoint),
            steps=unit.step, train_seconds=unit.seconds, spearman=number("spearman_ground_truth"),
            spearman_low_variance=number("spearman_low_variance"),
            spearman_ordinary=number("spearman_ordinary"),
            **{name: record.get(name) for name in weights},
        )  # fmt: skip


@dataclass
class BenchmarkCheck:
    """Whether image quality decides recognition on the held-out faces, for the demo's FR model.

    ``relevance`` r = (1 - gt) / (1 - oracle), with gt and oracle the pAUC/(e0 L) at
    :data:`CHECK_LIMIT` and :data:`CHECK_FMR` of the generator's ground-truth quality and of the
    comparison-level oracle: the share of the oracle's possible gain that perfect knowledge of the
    degradations achieves. ``clean_fnmr``: FNMR of the mated pairs of two undegraded images at the
    same threshold. ``fnmr_by_quality``: FNMR of mated pairs binned by the lower ground-truth quality
    of the two images (:data:`QUALITY_BINS`).
    """

    fmr: float
    limit: float
    relevance: float
    ground_truth_pauc: float
    oracle_pauc: float
    e0: float
    clean_fnmr: float
    clean_mated_pairs: int
    fnmr_by_quality: list[dict[str, float]]
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))

    @property
    def passed(self) -> dict[str, bool]:
        return {
            "relevance": self.relevance >= self.targets["relevance"],
            "clean_fnmr": self.clean_fnmr <= self.targets["clean_fnmr"],
            "e0": self.e0 >= self.targets["e0"],
        }


def quality_relevance(ground_truth_pauc: float, oracle_pauc: float) -> float:
    """r = (1 - gt) / (1 - oracle) for normalised pAUC values (1 = random discarding)."""
    if oracle_pauc >= 1.0:
        return math.nan
    return (1.0 - ground_truth_pauc) / (1.0 - oracle_pauc)


def benchmark_check(
    similarity: np.ndarray,
    mated: np.ndarray,
    pairs: np.ndarray,
    ground_truth: np.ndarray,
    threshold: float,
    ground_truth_pauc: float,
    oracle_pauc: float,
    *,
    fmr: float = CHECK_FMR,
    limit: float = CHECK_LIMIT,
) -> BenchmarkCheck:
    """Measure :class:`BenchmarkCheck` from the comparison scores and the EDC threshold."""
    mated = np.asarray(mated, bool)
    genuine = similarity[mated]
    error = genuine < threshold
    pair_quality = np.minimum(ground_truth[pairs[mated, 0]], ground_truth[pairs[mated, 1]])
    clean = pair_quality >= 1.0
    bins = []
    for low, high in QUALITY_BINS:
        inside = (pair_quality >= low) & ((pair_quality < high) | (low == high))
        count = int(inside.sum())
        fnmr = float(error[inside].mean()) if count else math.nan
        bins.append({"quality_from": low, "quality_to": high, "mated_pairs": count, "fnmr": fnmr})
    return BenchmarkCheck(
        fmr=fmr,
        limit=limit,
        relevance=quality_relevance(ground_truth_pauc, oracle_pauc),
        ground_truth_pauc=ground_truth_pauc,
        oracle_pauc=oracle_pauc,
        e0=float(error.mean()) if error.size else math.nan,
        clean_fnmr=float(error[clean].mean()) if clean.any() else math.nan,
        clean_mated_pairs=int(clean.sum()),
        fnmr_by_quality=bins,
    )


@dataclass
class DemoResult:
    """The demo's measurements, settings and written files."""

    out_dir: Path
    settings: dict[str, Any]
    epochs: int
    fr_model: str
    variants: list[VariantOutcome]
    reference_pauc: dict[str, dict[str, float]]
    e0: dict[str, float]
    warnings: list[str]
    files: list[str]
    seconds: float
    check: BenchmarkCheck | None = None
    expected_fnmr: dict[str, Any] | None = None
    resumed: dict[str, str] = field(default_factory=dict)  # variant key: what --resume did

    def table(self) -> str:
        """The headline table in Markdown."""
        return headline_table(self)


def run_demo(
    out_dir: str | Path,
    settings: Settings | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    resume: bool = False,
) -> DemoResult:
    """Render data, train every variant, evaluate on held-out identities, write ``report.md``.

    One demo at a time per ``out_dir``: it holds the folder's lock (``.igfiqa.lock``) for the whole
    run, so a second demo (or study, or training) there is refused before any work. Before
    anything is trained, each ``runs/<variant>`` folder it would start afresh is checked: one that
    holds a file igfiqa did not write, a live lock or a symbolic link is refused, never deleted.

    ``resume=True`` continues the demo that ``out_dir`` holds (an interrupted one, or a finished
    one: then only the evaluation runs again): its recorded settings (:data:`SETTINGS_FILE`) must
    equal ``settings``, else :class:`ConfigError` lists the differences; every variant whose
    training finished is reused, an interrupted one continues from its last checkpoint, the
    others train afresh. The table is the one an uninterrupted run gives. Without an earlier
    demo in ``out_dir`` it starts afresh. Without ``resume``, earlier runs there are deleted
    (only files igfiqa wrote) and every variant trains afresh.
    """
    settings = settings or demo_settings()
    with holding(out_dir, "demo folder") as out:
        return _run_demo(out, settings, progress, log, resume)


def _run_demo(
    out: Path, settings: Settings, progress: bool, log: Callable[[str], None], resume: bool
) -> DemoResult:
    started = time.perf_counter()
    for name in ("evaluation", "expected_fnmr"):
        refuse_symlinks(out, out / name)
    units, _ = prepare(
        out, settings, layout=lambda _, key: out / "runs" / key, settings_file=SETTINGS_FILE,
        resume=resume, log=log,
    )  # fmt: skip
    data = seed_data(settings, settings.first_seed, [], log)
    scoring = runners(out, data, settings, progress)
    resumed = run_units(
        units, data, settings, scoring, speed=Speed(units, log), progress=progress, log=log
    )
    log("evaluating on held-out identities")
    evaluation = evaluate_seed(
        settings, {u.variant.key: u for u in units}, data, scoring, [], out / "evaluation"
    )
    benchmark = data.benchmarks[0]
    run = evaluation.runs[benchmark.name, next(iter(settings.kind.fr_variants))]
    outcomes = [VariantOutcome.of(unit) for unit in units]
    reference, e0 = _collect_pauc(run.result, outcomes, settings.limits)
    pairs, mated = benchmark.pairset.pairs, benchmark.pairset.mated
    check = _benchmark_check(
        run.result, run.similarity, mated, pairs, benchmark.ground_truth, settings
    )
    fnmr_check = _expected_fnmr_check(
        run.similarity, pairs, mated, run.qualities, benchmark.pairset.sample_labels, settings,
        out / "expected_fnmr",
    )  # fmt: skip
    result = DemoResult(
        out_dir=out,
        settings=settings.record(),
        epochs=settings.resolved_epochs(),
        fr_model=run.result.fr_model,
        variants=outcomes,
        reference_pauc=reference,
        e0=e0,
        warnings=list(run.result.warnings),
        files=[str(p.relative_to(out)) for p in evaluation.files],
        seconds=time.perf_counter() - started,
        check=check,
        expected_fnmr=fnmr_check,
        resumed=resumed,
    )
    # atomic: a link named report.md is replaced, its target never written
    atomic_write_text(
        render_report(result, run.result.num_pairs, run.result.num_mated),
        out / "report.md",
        private=False,
    )
    write_json(out / "demo.json", _json_ready(result), indent=2, private=False)
    return result


def _expected_fnmr_check(
    similarity: np.ndarray,
    pairs: np.ndarray,
    mated: np.ndarray,
    qualities: dict[str, np.ndarray],
    labels: np.ndarray,
    settings: Settings,
    out: Path,
) -> dict[str, Any]:
    """Does each model's expected FNMR hold on identities it was not fitted on? Half the held-out
    identities fit the calibration, the other half measure predicted against observed FNMR per
    quality decile (docs/scoring.md, "Expected FNMR"); reliability diagrams go into ``out``."""
    from igfiqa.errors import DataError
    from igfiqa.evaluation.expected_fnmr import fit_and_check
    from igfiqa.evaluation.expected_fnmr_report import plot_reliability
    from igfiqa.evaluation.report import slug

    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name, quality in qualities.items():
        try:
            run = fit_and_check(
                quality, pairs, mated, similarity, identities=labels, fmr=FNMR_CHECK_FMR,
                holdout=0.5, seed=settings.first_seed,
            )  # fmt: skip
        except DataError as error:  # a held-out set too small for the FMR
            return {"fmr": FNMR_CHECK_FMR, "holdout": 0.5, "models": {}, "error": str(error)}
        check = run.reliability
        assert check is not None
        diagram = out / f"reliability_{slug(name)}.png"
        plot_reliability(check, diagram, name)
        results[name] = {
            **check.to_dict(),
            "thresholds": run.calibration.thresholds((0.05, 0.10)),
            "diagram": str(diagram.relative_to(out.parent)),
        }
    return {"fmr": FNMR_CHECK_FMR, "holdout": 0.5, "models": results}


def fnmr_section(check: dict[str, Any] | None) -> str:
    """The report's expected-FNMR section: per model, held-out deciles within their band."""
    if not check:
        return "not measured"
    if check.get("error"):
        return f"Not measured: {check['error']}."
    rows = []
    for name, entry in check["models"].items():
        deciles = entry["deciles"]
        worst = max(abs(d["observed_fnmr"] - d["predicted_fnmr"]) for d in deciles)
        within = sum(d["within"] for d in deciles)
        consistent = sum(d["consistent"] for d in deciles)
        five = entry["thresholds"][0]
        rows.append([
            name, f"{within}/{len(deciles)}", f"{consistent}/{len(deciles)}", f"{worst:.3f}",
            f"{fmt(five['quality_threshold'])} ({five['rejected_share']:.0%})",
            f"[diagram]({entry['diagram']})",
        ])  # fmt: skip
    header = ["model", "deciles within", "consistent", "largest gap",
              "quality for 5% FNMR (rejects)", "reliability"]  # fmt: skip
    return (
        f"Each model's quality is calibrated to the expected FNMR at FMR {check['fmr']:g} on half "
        "of the held-out identities and checked on the other half, per quality decile "
        "(target: observed FNMR within the predicted 95% band or within 0.03; *consistent* also "
        "allows for the held-out observation's own noise, from a bootstrap over its identities).\n\n"
        + markdown_table(header, rows)
    )


def _fmr_key(fmr: float, limit: float, kind: str = "pauc_normalized") -> str:
    return f"{kind}@{limit:g}|fmr={fmr:g}"


def _collect_pauc(
    evaluation: Any, outcomes: list[VariantOutcome], limits: tuple[float, ...]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """pAUC values per variant (into its outcome) and per reference line, and e0 per FMR."""
    reference: dict[str, dict[str, float]] = {}
    e0: dict[str, float] = {}
    for fmr_result in evaluation.per_fmr:
        fmr = fmr_result.target_fmr
        e0[f"{fmr:g}"] = fmr_result.e0
        for curve in fmr_result.curves:
            values = {}
            for limit in limits:
                values[_fmr_key(fmr, limit, "pauc")] = curve.pauc[limit]
                values[_fmr_key(fmr, limit)] = curve.pauc_normalized[limit]
            if curve.kind == "method":
                target = next((o for o in outcomes if o.label == curve.name), None)
                if curve.erc_auc is not None:
                    values[f"erc_auc|fmr={fmr:g}"] = curve.erc_auc
                if target is not None:
                    target.pauc.update(values)
                    continue
            reference.setdefault(curve.name, {}).update(values)
    return reference, e0


def _benchmark_check(
    evaluation: Any,
    similarity: np.ndarray,
    mated: np.ndarray,
    pairs: np.ndarray,
    ground_truth: np.ndarray,
    settings: Settings,
) -> BenchmarkCheck | None:
    """The benchmark's own check (quality relevance, clean FNMR, e0) at the check's FMR and L."""
    from igfiqa.evaluation.results import ORACLE

    check = None
    for fmr_result in evaluation.per_fmr:
        if math.isclose(fmr_result.target_fmr, CHECK_FMR) and CHECK_LIMIT in settings.limits:
            check = benchmark_check(
                similarity,
                mated,
                pairs,
                ground_truth,
                fmr_result.threshold.threshold,
                fmr_result.curve(GROUND_TRUTH).pauc_normalized[CHECK_LIMIT],
                fmr_result.curve(ORACLE).pauc_normalized[CHECK_LIMIT],
            )
    return check


def _json_ready(result: DemoResult) -> dict[str, Any]:
    data = asdict(result)
    data["out_dir"] = str(result.out_dir)
    if result.check is not None:
        data["check"]["passed"] = result.check.passed
    return data


def headline_table(result: DemoResult) -> str:
    """Markdown table: one row per variant (plus the ground-truth reference row)."""
    fmrs = [float(f) for f in result.e0]
    limits = result.settings["limits"]
    head = ["model"]
    for fmr in fmrs:
        head += [f"pAUC/(e0 L) L={limit:g} FMR={fmr:g}" for limit in limits]
    head += ["Spearman (all)", "Spearman (low-var ids)", "w low-var", "w ordinary"]
    rows = []
    for outcome in result.variants:
        row = [outcome.label]
        row += [fmt(outcome.pauc.get(_fmr_key(fmr, L))) for fmr in fmrs for L in limits]
        row += [
            fmt(outcome.spearman),
            fmt(outcome.spearman_low_variance),
            fmt(outcome.guidance_weight_low_variance),
            fmt(outcome.guidance_weight_ordinary),
        ]
        rows.append(row)
    for name, values in result.reference_pauc.items():
        row = [f"*{name}*"]
        row += [fmt(values.get(_fmr_key(fmr, L))) for fmr in fmrs for L in limits]
        rows.append(row + [fmt(None)] * 4)
    return markdown_table(head, rows)


def _bin_label(row: dict[str, float]) -> str:
    if row["quality_from"] == row["quality_to"]:
        return "both clean"
    return f"[{row['quality_from']:g}, {row['quality_to']:g})"


def check_section(check: BenchmarkCheck | None) -> str:
    """The report's "Is this benchmark informative?" section: the three numbers and their targets."""
    if check is None:
        return (
            f"Not measured: the run's FMRs or limits do not include FMR {CHECK_FMR:g} and "
            f"L = {CHECK_LIMIT:g}."
        )
    ok = {True: "met", False: "**not met**"}
    passed = check.passed
    t = check.targets
    rows = [
        ["quality relevance r = (1 - gt) / (1 - oracle)", fmt(check.relevance),
         f">= {t['relevance']:g}", ok[passed["relevance"]]],
        [f"FNMR of clean-clean mated pairs ({check.clean_mated_pairs} pairs)",
         fmt(check.clean_fnmr), f"<= {t['clean_fnmr']:g}", ok[passed["clean_fnmr"]]],
        ["e0 = FNMR over all mated pairs", fmt(check.e0), f">= {t['e0']:g}", ok[passed["e0"]]],
    ]  # fmt: skip
    bins = [[_bin_label(b), str(b["mated_pairs"]), fmt(b["fnmr"])] for b in check.fnmr_by_quality]
    return f"""At FMR {check.fmr:g} (threshold fixed on all non-mated pairs) and L = {check.limit:g}, with
the demo's FR model: gt = {fmt(check.ground_truth_pauc)} and oracle = {fmt(check.oracle_pauc)} are the
pAUC/(e0 L) of the generator's ground-truth quality and of the comparison-level oracle. r is the share
of the oracle's gain over random discarding that perfect knowledge of the degradations achieves: near
0, image quality does not decide recognition and the benchmark cannot rank quality scores.

{markdown_table(["measure", "value", "target", ""], rows)}

FNMR of mated pairs by the lower ground-truth quality of the two images:

{markdown_table(["lower quality of the pair", "mated pairs", "FNMR"], bins)}
"""


def render_report(result: DemoResult, num_pairs: int, num_mated: int) -> str:
    """The text of ``report.md``."""
    s = result.settings
    fmr_lines = ", ".join(
        f"FMR {fmr}: e0 = FNMR at zero discard = {e:.3f}" for fmr, e in result.e0.items()
    )
    plots = [f for f in result.files if f.endswith(".png") and "/edc_" in f]
    warnings = "\n".join(f"- {w}" for w in result.warnings) or "- none"
    resumed = ""
    if result.resumed:
        done = ", ".join(f"{key} {what}" for key, what in result.resumed.items())
        others = len(result.variants) > len(result.resumed)
        resumed = (
            f"\n- Resumed (`--resume`): {done}{'; the others trained afresh' if others else ''}."
        )
    train_rows = markdown_table(
        ["model", "steps", "training time", "zero-weight share, low-var classes",
         "zero-weight share, ordinary"],
        [[o.label, str(o.steps), f"{o.train_seconds:.0f} s", fmt(o.zero_weight_share_low_variance),
          fmt(o.zero_weight_share_ordinary)] for o in result.variants],
    )  # fmt: skip
    return f"""# igfiqa demo: CR-FIQA vs IG-FIQA on synthetic faces

**These numbers come from procedurally generated faces, not from real face images.** The generator
(`igfiqa.data.synthetic`) draws cartoon-like identities on the ArcFace template whose identity lives
in details that degradations destroy, adds per-image nuisance and camera degradations of known
severity, and makes {s["low_variance_share"]:.0%} of the training identities *low-variance* (their
images barely vary and share one degradation level), the failure mode that IG-FIQA addresses. The experiment is controlled (same network, data, epochs and seed for
every variant), but tiny: a narrow iResNet-18 at {s["image_size"]}x{s["image_size"]} pixels trained for
{result.epochs} epochs on a CPU.

## What was run

- Training: {s["train_identities"]} identities x {s["samples_per_identity"]} images (seed {s["seed"]}).
- Test: {s["test_identities"]} held-out identities x {s["test_samples_per_identity"]} images, all
  pairs: {num_pairs} comparisons, {num_mated} mated.
- FR model for every comparison score: {result.fr_model}; cosine similarity of its embeddings.
- {fmr_lines}.{resumed}
- EDC = FNM-EDC with the threshold fixed once on all non-mated scores (ISO-style); pAUC is stepwise
  on [0, L] and normalised by e0 L (1.0 = no better than random discarding; lower is better).
  `results.md` in `evaluation/` adds the raw pAUC, the pAUC relative to the oracle and the CR-FIQA
  ERC (threshold recomputed per discard step, a different protocol).

## Is this benchmark informative?

{check_section(result.check)}

## Results

{headline_table(result)}

## What a score costs: expected FNMR on held-out identities

{fnmr_section(result.expected_fnmr)}

Spearman = rank correlation of the predicted quality with the generator's ground-truth quality of
each held-out image (higher is better); "low-var ids" restricts it to held-out low-variance
identities (`-` when the held-out set has none, the default). "w" = mean intra-class variance guidance weight that the IG-FIQA run ended with, over its
low-variance and its ordinary training classes (CR-FIQA has no guidance).

{train_rows}

EDC plots: {", ".join(f"[{Path(p).name}]({p})" for p in plots)}

Warnings from the evaluation:
{warnings}

## What this shows and what it does not

- It shows whether, on this synthetic data and at this tiny scale, each variant's quality score puts
  the images that the FR model gets wrong first (pAUC) and tracks the known degradation (Spearman),
  and whether the guidance singles out the low-variance classes (their weight versus the others').
- It does not reproduce the paper's numbers: the published results use iResNet-50/100 trained for
  days on CASIA-WebFace / MS1MV2 and real benchmarks. Differences of a few hundredths here can be
  noise of one seed: `igfiqa study` trains every variant and ablation for several seeds and reports
  paired differences to CR-FIQA with 95% intervals, with two FR models (docs/results.md).
- The ground-truth row is the generator's own degradation severity used as a quality score: a
  yardstick for what a perfect degradation detector would reach with this FR model, not an upper
  bound on utility.

Total time{" of this resumed run" if result.resumed else ""}: {result.seconds:.0f} s. Settings: `{json.dumps(s)}`.
"""
