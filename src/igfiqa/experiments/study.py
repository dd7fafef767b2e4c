"""``igfiqa study``: the experiment engine's preset for "does intra-class variance guidance help?"
Many seeds, every switch, several FR models, paired intervals.

:func:`run_study` trains, for each seed, every variant of :data:`STUDY_VARIANTS` on the same data
with the same seed, plus an independent FR model trained without the quality loss, and evaluates
every variant's quality with every FR model: the CR-FIQA run's backbone, the independent one and
any ``--fr-model``. Per variant and over the seeds: the mean and 95% t-interval of pAUC/(e0 L) at
each L and FMR, the **paired** difference to CR-FIQA (same seed, same data) with its interval, the
Spearman correlation with the generator's ground truth, the real-photo transfer numbers, the
guidance weights of low-variance versus ordinary classes, and instruments of training (per epoch:
CR of clean versus degraded training images, guidance weights, the BatchNorm running statistics'
mismatch, and each backbone's own FNMR).

On the built-in synthetic faces (rendered per seed) by default; with ``--data`` on the user's
training set and ``--benchmark`` sets (``igfiqa study --data casia:/data/faces_webface_112x112
--benchmark lfw:/data/lfw.bin --preset casia_r50 --seeds 3``). Every (seed, variant) is a unit with
its own folder; a finished unit writes ``unit.json`` and is never recomputed, an interrupted one
resumes its training from its newest checkpoint, so a killed study continues where it stopped.
Writes ``report.md``, ``study.json``, the forest plot and each seed's ordinary evaluation report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.evaluation.quality.oracle import GROUND_TRUTH_NAME as GROUND_TRUTH
from igfiqa.evaluation.results import ORACLE
from igfiqa.experiments.data import parse_data, seed_data
from igfiqa.experiments.evaluate import Cell, SeedEvaluation, cell_benchmark, evaluate_seed, fmr_key
from igfiqa.experiments.folders import holding
from igfiqa.experiments.instruments import (
    PhotoSet,
    Probe,
    epoch_instruments,
    load_photo_set,
    real_photo_metrics,
    training_log,
)
from igfiqa.experiments.report import (
    fmt,
    fmt_difference,
    markdown_table,
    plot_forest,
    read_json,
    write_json,
)
from igfiqa.experiments.run import external_benchmarks, prepare, run_units, runners, zoo_models
from igfiqa.experiments.settings import Settings, study_settings
from igfiqa.experiments.stats import mean_ci, paired_difference
from igfiqa.experiments.unit import Speed, Unit
from igfiqa.experiments.variants import BASELINE, INDEPENDENT_FR
from igfiqa.files import atomic_write_text

SETTINGS_FILE = "settings.json"
SEED_FILE = "seed.json"
SEED_FORMAT = 2


def run_study(
    out_dir: str | Path,
    settings: Settings | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the study in ``out_dir``; returns the content of ``study.json``.

    One study at a time per ``out_dir``: it holds the folder's lock (``.igfiqa.lock``) until it
    returns or fails, so a second study (or demo, or training) there is refused before any work.
    Before any work, every unit folder that would be started afresh is checked: one holding a
    file igfiqa did not write, a live lock or a symbolic link is refused, never deleted.
    """
    settings = settings or study_settings()
    with holding(out_dir, "study folder") as out:
        return _run_study(out, settings, progress, log)


def _run_study(
    out: Path, settings: Settings, progress: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    from igfiqa.inference.runners import resolve_device

    units, _ = prepare(
        out, settings, layout=lambda seed, key: unit_folder(out, seed, key),
        settings_file=SETTINGS_FILE, resume=True, log=log,
    )  # fmt: skip
    started = time.perf_counter()
    pending = [seed for seed in settings.seed_list() if _seed_done(out, seed, units) is None]
    # opened and loaded before any training: a wrong --benchmark or --fr-model fails now
    benchmarks = external_benchmarks(settings, log) if pending else []
    zoo = zoo_models(settings) if pending else []
    photos = load_photo_set(settings, log)
    speed = Speed(units, log)
    device = resolve_device(settings.device)
    seeds: list[dict[str, Any]] = []
    records: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in settings.seed_list():
        mine = [u for u in units if u.seed == seed]
        table = _seed_done(out, seed, units)
        if table is not None:
            log(f"seed {seed}: done earlier")
        else:
            data = seed_data(settings, seed, benchmarks, log)
            scoring = runners(out, data, settings, progress)
            probe = Probe.from_faces(data.train, seed=seed) if data.train is not None else None
            measure = partial(_measure, data=data, probe=probe, photos=photos, device=device)
            run_units(
                mine, data, settings, scoring, speed=speed, progress=progress, log=log,
                measure=measure,
            )  # fmt: skip
            evaluation = evaluate_seed(
                settings, {u.variant.key: u for u in mine}, data, scoring, zoo,
                seed_folder(out, seed) / "evaluation", plots=seed == settings.first_seed,
            )  # fmt: skip
            write_json(seed_folder(out, seed) / SEED_FILE, seed_table(evaluation, settings, mine))
            table = read_json(seed_folder(out, seed) / SEED_FILE)
        seeds.append(table)
        records[seed] = {u.variant.key: u.record or {} for u in mine}
    summary = summarise(settings, seeds, records, photos)
    summary["seconds_this_call"] = time.perf_counter() - started
    summary["files"] = write_outputs(out, summary, records)
    write_json(out / "study.json", summary)
    return summary


def _measure(
    unit: Unit, *, data: Any, probe: Probe | None, photos: PhotoSet, device: str
) -> dict[str, Any]:
    """The study's own measurements of a unit: real-photo transfer, the per-epoch instruments
    (rendered faces) and the training log."""
    assert unit.checkpoint is not None
    epochs = []
    if probe is not None and data.train is not None:
        epochs = epoch_instruments(unit.run_dir, probe, data.train.low_variance, device)
    return {
        "real_photos": real_photo_metrics(unit.checkpoint, photos, unit.seed),
        "epochs": epochs,
        "training_log": training_log(unit.run_dir),
    }


# ------------------------------------------------------------------------------------ one seed
def _seed_done(out: Path, seed: int, units: list[Unit]) -> dict[str, Any] | None:
    """The seed's ``seed.json`` when every unit of the seed is done and it is of this version."""
    table = read_json(seed_folder(out, seed) / SEED_FILE)
    done = all(u.done for u in units if u.seed == seed)
    return (
        table if done and isinstance(table, dict) and table.get("format") == SEED_FORMAT else None
    )


def seed_table(evaluation: SeedEvaluation, settings: Settings, units: list[Unit]) -> dict[str, Any]:
    """What ``seed.json`` keeps of a seed's evaluation: pAUC/(e0 L) per FR model, curve (variant
    key, or reference line) and :class:`Cell`, e0 per FMR, and each backbone's own FNMR."""
    keys = {u.label: u.variant.key for u in units}
    tables: dict[str, dict[str, dict[str, float]]] = {}
    fnmr: dict[str, dict[str, float]] = {}
    for benchmark in evaluation.benchmarks:
        where = cell_benchmark(benchmark)
        for fr_key in evaluation.fr_models:
            table = tables.setdefault(fr_key, {})
            for fmr_result in evaluation.runs[benchmark.name, fr_key].result.per_fmr:
                fmr = fmr_result.target_fmr
                for curve in fmr_result.curves:
                    row = table.setdefault(keys.get(curve.name, curve.name), {})
                    for limit in settings.limits:
                        row[Cell(where, fmr, limit).key] = float(curve.pauc_normalized[limit])
                table.setdefault("_e0", {})[_fmr_cell(where, fmr)] = float(fmr_result.e0)
        for key, values in evaluation.backbone_fnmr[benchmark.name].items():
            for fmr in settings.fmrs:
                fnmr.setdefault(key, {})[_fmr_cell(where, fmr)] = values[fmr_key(fmr)]
    return {
        "format": SEED_FORMAT,
        "seed": evaluation.seed,
        "fr_models": tables,
        "backbone_fnmr": fnmr,
    }


def _fmr_cell(benchmark: str | None, fmr: float) -> str:
    return fmr_key(fmr) if benchmark is None else f"{benchmark}: {fmr_key(fmr)}"


def _cell(seed: dict[str, Any], fr_key: str, key: str, cell: str) -> float:
    value = seed["fr_models"][fr_key].get(key, {}).get(cell)
    return float(value) if value is not None else math.nan


# ------------------------------------------------------------------------------------ summary
def _benchmark_names(settings: Settings) -> list[str | None]:
    from igfiqa.evaluation.api import parse_benchmark

    return [parse_benchmark(b)[0] for b in settings.benchmarks] or [None]


def summarise(
    settings: Settings,
    seeds: list[dict[str, Any]],
    units: dict[int, dict[str, dict[str, Any]]],
    photos: PhotoSet,
) -> dict[str, Any]:
    """Means, intervals and paired differences over the seeds."""
    keys = [v.key for v in settings.selected()]
    quality_keys = [k for k in keys if k != INDEPENDENT_FR]
    where = _benchmark_names(settings)
    cells = [Cell(b, f, L).key for b in where for f in settings.fmrs for L in settings.limits]
    fmr_cells = [_fmr_cell(b, f) for b in where for f in settings.fmrs]
    fr_models = {k: settings.kind.fr_variants.get(k, k) for k in seeds[0]["fr_models"]}
    pauc: dict[str, Any] = {}
    paired: dict[str, Any] = {}
    for fr_key in fr_models:
        references = [
            r for r in (GROUND_TRUTH, ORACLE) if any(r in s["fr_models"][fr_key] for s in seeds)
        ]
        pauc[fr_key] = {
            key: {c: mean_ci([_cell(s, fr_key, key, c) for s in seeds]) for c in cells}
            for key in [*quality_keys, *references]
        }
        paired[fr_key] = {
            key: {
                c: paired_difference(
                    [_cell(s, fr_key, key, c) for s in seeds],
                    [_cell(s, fr_key, BASELINE, c) for s in seeds],
                )
                for c in cells
            }
            for key in quality_keys
            if key != BASELINE
        }
    own: dict[str, Any] = {}  # against the CR-FIQA run with the same recipe, where that differs
    for variant in settings.selected():
        if variant.baseline != BASELINE and variant.baseline in keys:
            own[variant.key] = {"baseline": variant.baseline}
            for fr_key in fr_models:
                own[variant.key][fr_key] = paired_difference(
                    [_cell(s, fr_key, variant.key, cells[0]) for s in seeds],
                    [_cell(s, fr_key, variant.baseline, cells[0]) for s in seeds],
                )
    per_variant = {
        key: _per_variant([units[s][key] for s in units], seeds, key, fmr_cells) for key in keys
    }
    return {
        "study": "igfiqa study",
        "settings": settings.record(),
        "variants": {v.key: v.label for v in settings.selected()},
        "questions": {v.key: v.question for v in settings.selected()},
        "fr_models": fr_models,
        "baseline": BASELINE,
        "cells": cells,
        "pauc_normalized": pauc,
        "paired_difference": paired,
        "paired_difference_own_baseline": own,
        "per_variant": per_variant,
        "real_photos_unavailable": photos.unavailable,
    }


def _per_variant(
    rows: list[dict[str, Any]], seeds: list[dict[str, Any]], key: str, fmr_cells: list[str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "spearman_ground_truth": mean_ci([r.get("spearman_ground_truth") for r in rows]),
        "backbone_fnmr": {
            c: mean_ci([s["backbone_fnmr"][key].get(c) for s in seeds]) for c in fmr_cells
        },
        "seconds": mean_ci([r.get("train_seconds", math.nan) for r in rows]),
    }
    for name in ("guidance_weight_low_variance", "guidance_weight_ordinary"):
        if any(name in r for r in rows):
            entry[name] = mean_ci([r.get(name, math.nan) for r in rows])
    photo_rows = [r["real_photos"] for r in rows if r.get("real_photos")]
    if photo_rows:
        entry["real_photos"] = {
            "spearman": mean_ci([p["spearman"] for p in photo_rows]),
            "clean_above_degraded": mean_ci([p["clean_above_degraded"] for p in photo_rows]),
            **{
                name: mean_ci([p.get(name) for p in photo_rows])
                for name in ("embedding_norm_spearman", "quality_norm_spearman")
            },
            "per_kind_spearman": {
                kind: mean_ci([p["per_kind_spearman"].get(kind) for p in photo_rows])
                for kind in photo_rows[0]["per_kind_spearman"]
            },
        }
    entry["final_epoch"] = {
        name: mean_ci([r["epochs"][-1].get(name, math.nan) for r in rows if r.get("epochs")])
        for name in (
            "cr_clean", "cr_degraded", "quality_clean", "quality_degraded",
            "bn_mean_shift_clean", "bn_mean_shift_degraded",
            "bn_log_var_ratio_clean", "bn_log_var_ratio_degraded",
        )
    }  # fmt: skip
    return entry


# ------------------------------------------------------------------------------------ outputs
def headline_table(summary: dict[str, Any], cell: str | None = None) -> str:
    """Markdown: per variant, pAUC/(e0 L) at ``cell`` (default the first) and its paired
    difference to CR-FIQA, for every FR model."""
    cell = cell or summary["cells"][0]
    seeds = len(summary["settings"]["seed_list"])
    head = ["variant"]
    for name in summary["fr_models"].values():
        head += [f"{name}: pAUC/(e0 L)", f"{name}: paired diff to CR-FIQA (better seeds)"]
    head += ["Spearman with ground truth", "real photos: Spearman", "real photos: clean above"]
    rows = []
    for key, label in summary["variants"].items():
        if key == INDEPENDENT_FR:
            continue
        row = [label]
        for fr_key in summary["fr_models"]:
            row.append(fmt(summary["pauc_normalized"][fr_key][key][cell]))
            row.append(
                "(reference)"
                if key == summary["baseline"]
                else fmt_difference(summary["paired_difference"][fr_key][key][cell], seeds)
            )
        entry = summary["per_variant"][key]
        photos = entry.get("real_photos", {})
        row += [
            fmt(entry["spearman_ground_truth"]),
            fmt(photos.get("spearman")),
            fmt(photos.get("clean_above_degraded")),
        ]
        rows.append(row)
    references = next(iter(summary["pauc_normalized"].values()))
    for ref in (GROUND_TRUTH, ORACLE):
        if ref not in references:
            continue
        row = [f"*{ref}*"]
        for fr_key in summary["fr_models"]:
            row += [fmt(summary["pauc_normalized"][fr_key][ref][cell]), fmt(None)]
        rows.append(row + [fmt(None)] * 3)
    return markdown_table(head, rows)


def _all_cells_table(summary: dict[str, Any], fr_key: str) -> str:
    keys = [k for k in summary["variants"] if k not in (INDEPENDENT_FR, summary["baseline"])]
    rows = [
        [summary["variants"][key]]
        + [fmt_difference(summary["paired_difference"][fr_key][key][c]) for c in summary["cells"]]
        for key in keys
    ]
    return markdown_table(["variant", *summary["cells"]], rows)


def _instrument_table(summary: dict[str, Any]) -> str:
    head = [
        "variant", "backbone FNMR @FMR 1e-2", "CR clean", "CR degraded", "quality clean",
        "quality degraded", "BN shift clean", "BN shift degraded", "w low-var", "w ordinary",
    ]  # fmt: skip
    rows = []
    for key, label in summary["variants"].items():
        entry = summary["per_variant"][key]
        final = entry["final_epoch"]
        rows.append([
            label, fmt(next(iter(entry["backbone_fnmr"].values()))),
            *(fmt(final[name]) for name in (
                "cr_clean", "cr_degraded", "quality_clean", "quality_degraded",
                "bn_mean_shift_clean", "bn_mean_shift_degraded",
            )),
            fmt(entry.get("guidance_weight_low_variance")),
            fmt(entry.get("guidance_weight_ordinary")),
        ])  # fmt: skip
    return markdown_table(head, rows)


def _over_training(units: dict[int, dict[str, dict[str, Any]]], key: str, name: str) -> list[float]:
    series = [
        [row.get(name, math.nan) for row in units[s][key].get("epochs") or []]
        for s in units
        if key in units[s]
    ]
    length = min((len(x) for x in series), default=0)
    means = []
    for i in range(length):
        values = [x[i] for x in series if x[i] is not None and math.isfinite(x[i])]
        means.append(float(np.mean(values)) if values else math.nan)
    return means


def write_outputs(
    out: Path, summary: dict[str, Any], units: dict[int, dict[str, dict[str, Any]]]
) -> list[str]:
    """``report.md`` and the forest plot; returns the files of the report relative to ``out``
    (with the first seed's EDC plots)."""
    first = summary["settings"]["seed_list"][0]
    edc = sorted((out / f"seed_{first}" / "evaluation").glob("edc_*.png"))
    files = [str(p.relative_to(out)) for p in edc]
    keys = [k for k in summary["variants"] if k not in (INDEPENDENT_FR, summary["baseline"])]
    cell = summary["cells"][0]
    plot_forest(
        out / "forest.png",
        [
            (
                summary["variants"][k],
                [summary["paired_difference"][f][k][cell] for f in summary["fr_models"]],
            )
            for k in keys
        ],
        list(summary["fr_models"].values()),
        f"pAUC/(e0 L) minus CR-FIQA's on the same seed ({cell})\nnegative = better",
    )
    files.append("forest.png")
    atomic_write_text(render_report(summary, units, files), out / "report.md", private=False)
    return [*files, "report.md", "study.json"]


def _intro(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    seeds = s["seed_list"]
    if "data" not in s:
        return f"""**Synthetic faces, tiny network, CPU.** Every variant is trained on the same rendered data with the
same seed, for {len(seeds)} seeds ({", ".join(map(str, seeds))}): {s["train_identities"]} identities x
{s["samples_per_identity"]} images ({s["low_variance_share"]:.0%} low-variance identities),
{s["image_size"]}x{s["image_size"]} pixels, {s["epochs"]} epochs; held-out: {s["test_identities"]}
ordinary identities x {s["test_samples_per_identity"]} images, all pairs. Two FR models give the
comparison scores: the CR-FIQA run's backbone, and an independent FR model trained on the same data
with another initialisation and no quality loss."""
    name = parse_data(s["data"])[0]
    fr = ", ".join(summary["fr_models"].values())
    return f"""**Trained on {name}** (`{s["data"]}`) with the `{s.get("preset", "synthetic_demo")}` recipe:
{s["image_size"]}x{s["image_size"]} pixels, batch {s["batch_size"]}, {s["epochs"]} epochs, every variant
on the same data with the same seed, for {len(seeds)} seeds ({", ".join(map(str, seeds))}). Evaluated
on {", ".join(s["benchmarks"])} with the FR models {fr} (the independent FR model is trained on the
same data with another initialisation and no quality loss)."""


def render_report(
    summary: dict[str, Any], units: dict[int, dict[str, dict[str, Any]]], files: list[str]
) -> str:
    """The text of ``report.md``."""
    s = summary["settings"]
    seeds = s["seed_list"]
    epochs_rows = []
    for key, label in summary["variants"].items():
        for name in ("cr_clean", "cr_degraded", "weight_low_variance", "weight_ordinary"):
            series = _over_training(units, key, name)
            if series and any(math.isfinite(v) for v in series):
                epochs_rows.append([label, name, " ".join(f"{v:.3f}" for v in series)])
    photos = summary.get("real_photos_unavailable")
    photo_note = (
        f"Real-photo transfer was not measured: {photos}."
        if photos
        else "Real photos: 18 real faces (igfiqa.evaluation.real_photos), each clean and degraded "
        "by blur, downscaling, noise and occlusion at three levels; Spearman of quality with "
        "-severity and the share of (clean, degraded) pairs of a face ordered correctly."
    )
    all_cells = "\n\n".join(
        f"**{name}**\n\n{_all_cells_table(summary, fr_key)}"
        for fr_key, name in summary["fr_models"].items()
    )
    plots = ", ".join(f"[{f}]({f})" for f in files if f.endswith(".png"))
    own = summary.get("paired_difference_own_baseline", {})
    own_section = (
        f"Against the CR-FIQA run with the same recipe ({summary['cells'][0]}):\n\n"
        + markdown_table(
            ["variant", "its baseline"]
            + [f"{name}: paired diff" for name in summary["fr_models"].values()],
            [
                [summary["variants"][key], summary["variants"][entry["baseline"]]]
                + [fmt_difference(entry[fr], len(seeds)) for fr in summary["fr_models"]]
                for key, entry in own.items()
            ],
        )
        if own
        else ""
    )
    headlines = "\n\n".join(
        f"## Headline ({cell})\n\n{headline_table(summary, cell)}"
        for cell in summary["cells"][:: len(s["fmrs"]) * len(s["limits"])]
    )
    return f"""# igfiqa study: does intra-class variance guidance help?

{_intro(summary)}

pAUC/(e0 L) is the stepwise area under the EDC (fixed threshold) on [0, L] divided by e0 L
(1 = random discarding, lower is better). Intervals are 95% t-intervals over the seeds; the paired
difference is variant minus CR-FIQA on the same seed and data (negative = the variant discards the
FR model's errors sooner); "better seeds" counts the seeds where it is negative. **better** /
**worse** mark intervals that exclude zero.

{headlines}

{photo_note}

{own_section}

## Paired differences to CR-FIQA at every L and FMR

{all_cells}

## Instruments (end of training, means over seeds)

CR (= CCS / (NNCCS + 1) against the run's own class prototypes) and predicted quality of 256 clean and
256 strongly degraded (ground truth < 0.5) training images of ordinary identities; "BN shift" = mean
over BatchNorm channels of |batch mean - running mean| / running std for those images in evaluation
mode (how far the running statistics are from the images being scored); backbone FNMR = the
variant's own backbone as FR model on the held-out pairs; w = mean guidance weight of low-variance vs
ordinary training classes.

{_instrument_table(summary)}

### Over training (per epoch, means over seeds)

{markdown_table(["variant", "quantity", f"epoch 1 ... {s['epochs']}"], epochs_rows)}

Plots: {plots}. Per-seed data: `seed_*/seed.json` and the ordinary evaluation report in
`seed_*/evaluation/`, per unit `seed_*/<variant>/unit.json` (training log, per-epoch instruments,
real-photo numbers).
"""


def seed_folder(out: Path, seed: int) -> Path:
    """The folder of one seed: its units, ``seed.json`` and evaluation report."""
    return Path(out) / f"seed_{seed}"


def unit_folder(out: Path, seed: int, key: str) -> Path:
    """The folder of the study's unit (seed, variant)."""
    return seed_folder(out, seed) / key
