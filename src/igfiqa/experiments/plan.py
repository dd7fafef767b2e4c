"""``igfiqa study --plan``: the units an experiment would run, the optimizer steps of each (from the
config and the size of the training set), what a resumed output folder already holds, and the
expected hours of training from a step time measured on this machine's device (or given)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from igfiqa.experiments.data import render, training_source
from igfiqa.experiments.settings import Settings
from igfiqa.experiments.variants import Variant


def training_images(settings: Settings) -> int:
    """Images in the training set: the rendered faces, or the ``--data`` set opened as the trainer
    opens it."""
    if settings.synthetic:
        return settings.training_images
    from igfiqa.data.datasets import open_training_dataset

    return len(open_training_dataset(training_source(settings, settings.first_seed), hflip=False))


def measure_step_seconds(
    settings: Settings, variant: Variant, *, steps: int = 3, log: Callable[[str], None]
) -> float:
    """Seconds per optimizer step of ``variant`` on this machine's device (``settings.device``):
    the time of ``1 + steps`` steps minus that of 1 step (start-up and the first, slow step cancel
    out), each trained from scratch in a temporary folder."""
    from igfiqa.engine.trainer import train

    seed = settings.first_seed
    config = settings.unit_config(variant, seed, training_source(settings, seed))
    dataset = render(training_source(settings, seed)) if settings.synthetic else None
    times = []
    for total in (1, 1 + steps):
        with tempfile.TemporaryDirectory(prefix="igfiqa-plan-") as folder:
            started = time.perf_counter()
            train(
                config,
                out_dir=Path(folder) / "run",
                max_steps=total,
                progress=False,
                dataset=dataset,
            )
            times.append(time.perf_counter() - started)
    seconds = max((times[1] - times[0]) / steps, 1e-6)
    log(f"measured {variant.key}: {seconds:.3g} s per step ({config.train.device} device)")
    return seconds


def _done_steps(run_dir: Path) -> tuple[str, int]:
    from igfiqa.checkpoint import latest_checkpoint, load_checkpoint
    from igfiqa.experiments.report import read_json
    from igfiqa.experiments.unit import UNIT_FILE, UNIT_FORMAT

    record = read_json(run_dir / UNIT_FILE)
    if isinstance(record, dict) and record.get("format") == UNIT_FORMAT:
        return "done", int(record["steps"])
    latest = latest_checkpoint(run_dir / "checkpoints") if run_dir.is_dir() else None
    if latest is None:
        return "to do", 0
    return "started", int(load_checkpoint(latest)["step"])


def plan(
    settings: Settings,
    out: Path | None,
    layout: Callable[[int, str], Path] | None = None,
    *,
    step_seconds: float | None = None,
    measure_steps: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every unit with its steps (and, for an existing output folder ``out``, what it holds), and
    the expected hours: from ``step_seconds`` (per step of a two-stream IG-FIQA variant; one-stream
    variants take half), else measured here per stream count. Trains nothing of the experiment."""
    images = training_images(settings)
    batch = int(settings.batch_size or 1)
    per_epoch = images // batch
    steps = per_epoch * int(settings.epochs or 1)
    seconds: dict[int, float] = {}
    for variant in settings.selected():
        if variant.streams in seconds:
            continue
        if step_seconds is not None:
            seconds[variant.streams] = step_seconds * variant.streams / 2
        else:
            seconds[variant.streams] = measure_step_seconds(
                settings, variant, steps=measure_steps, log=log
            )
    rows = []
    for seed in settings.seed_list():
        for variant in settings.selected():
            run_dir = layout(seed, variant.key) if layout is not None else None
            status, done = ("to do", 0)
            if out is not None and run_dir is not None:
                status, done = _done_steps(run_dir)
            left = 0 if status == "done" else max(steps - done, 0)
            rows.append({
                "seed": seed, "variant": variant.key, "preset": variant.preset(settings.preset),
                "steps": steps, "status": status, "steps_done": done, "steps_left": left,
                "hours_left": left * seconds[variant.streams] / 3600.0,
            })  # fmt: skip
    return {
        "experiment": settings.experiment,
        "training_images": images,
        "batch_size": batch,
        "epochs": settings.epochs,
        "steps_per_epoch": per_epoch,
        "step_seconds": {
            f"{k} stream{'s' if k > 1 else ''}": v for k, v in sorted(seconds.items())
        },
        "step_seconds_measured": step_seconds is None,
        "device": settings.device,
        "units": rows,
        "hours": sum(r["hours_left"] for r in rows),
    }


def plan_text(result: dict[str, Any]) -> str:
    """The plan as a table and a total line."""
    from igfiqa.experiments.report import markdown_table

    rows = [
        [str(r["seed"]), r["variant"], r["preset"], str(r["steps"]), r["status"],
         str(r["steps_left"]), f"{r['hours_left']:.2f}"]
        for r in result["units"]
    ]  # fmt: skip
    how = "measured here" if result["step_seconds_measured"] else "given"
    times = ", ".join(f"{k}: {v:.3g} s" for k, v in result["step_seconds"].items())
    return (
        markdown_table(
            ["seed", "variant", "preset", "steps", "status", "steps left", "hours"], rows
        )
        + f"\n\n{len(rows)} units; {result['training_images']} training images, batch "
        f"{result['batch_size']}, {result['steps_per_epoch']} steps per epoch x {result['epochs']} "
        f"epochs; seconds per step ({how}, device {result['device']}): {times}.\n"
        f"Expected training time left: {result['hours']:.2f} hours (the evaluation adds to it)."
    )
