"""One unit of work: train one variant for one seed (or reuse / continue its training), then score
every benchmark with it through the evaluation runner, the path ``igfiqa evaluate`` takes.

A unit's folder is an ordinary training run folder plus ``unit.json`` (what the unit measured,
written when it is done: a resumed experiment reuses it) and ``training.json`` (the training time,
summed over resumed sessions). Its scores go to the experiment's evaluation cache, keyed on the
checkpoint file, so evaluating the seed afterwards computes nothing again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.errors import ConfigError, IgfiqaError
from igfiqa.experiments.data import Benchmark, SeedData
from igfiqa.experiments.folders import (
    check_run_folder,
    clear_run_folder,
    refuse_symlinks,
    take_over_stale_lock,
)
from igfiqa.experiments.report import read_json, write_json
from igfiqa.experiments.variants import Variant
from igfiqa.files import json_safe

UNIT_FORMAT = 2
UNIT_FILE = "unit.json"
TRAINING_FILE = "training.json"
UNIT_FILES = (
    UNIT_FILE,
    TRAINING_FILE,
    "demo_variant.json",
    "test_quality.npy",
    "test_embedding.npy",
)
"""What an experiment writes into a unit's folder besides the training run's own files (the last
three: igfiqa 0.1.0's demo and study)."""
CACHE_DIR = "cache"
"""The output folder's evaluation cache (embeddings, qualities, comparison scores per model)."""


class ExperimentStopped(IgfiqaError):
    """SIGTERM or SIGINT stopped a unit's training: the experiment stops too and evaluates nothing;
    the finished units and the stopped one's last checkpoint are kept to resume."""

    def __init__(self, kind: str, variant: str, signum: int, run_dir: Path) -> None:
        how = (
            "run the same igfiqa demo command with --resume (Python: run_demo(..., resume=True))"
            if kind == "demo"
            else "run the same igfiqa study command again"
        )
        super().__init__(
            f"stopped by signal {signum} while training {variant}; its last checkpoint is in "
            f"{run_dir}; nothing was evaluated. To continue (finished variants are reused, "
            f"{variant} continues from its checkpoint), {how}"
        )
        self.signum = signum


@dataclass
class Unit:
    """One (seed, variant): its training config and folder and, when resumed, where it stands."""

    seed: int
    variant: Variant
    config: Any
    run_dir: Path
    record: dict[str, Any] | None = None  # unit.json of a unit finished earlier
    checkpoint: Path | None = None  # the newest checkpoint to reuse or continue
    step: int = 0
    trained: bool = False
    seconds: float = 0.0  # training time of earlier sessions

    @property
    def done(self) -> bool:
        return self.record is not None

    @property
    def label(self) -> str:
        return self.variant.label


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _recorded_seconds(run_dir: Path) -> float:
    data = read_json(run_dir / TRAINING_FILE)
    try:
        seconds = float(data["train_seconds"])
    except (TypeError, KeyError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0


def plan_unit(unit: Unit, out: Path, *, resume: bool) -> None:
    """Where ``unit`` stands (resuming: its ``unit.json``, else its newest checkpoint, whose
    config must be the unit's); refuses (:class:`ConfigError`), before any work, a folder the
    experiment could not train in afresh without deleting something igfiqa did not write."""
    from igfiqa.checkpoint import latest_checkpoint, load_checkpoint
    from igfiqa.engine.trainer import CHECKPOINT_DIR

    run_dir = unit.run_dir
    refuse_symlinks(out, run_dir / CHECKPOINT_DIR)
    record = read_json(run_dir / UNIT_FILE) if resume else None
    if (
        isinstance(record, dict)
        and record.get("format") == UNIT_FORMAT
        and (run_dir / str(record.get("checkpoint"))).is_file()
    ):
        unit.record, unit.trained = record, True
        unit.step, unit.seconds = int(record["steps"]), float(record.get("train_seconds") or 0.0)
        unit.checkpoint = run_dir / record["checkpoint"]
        return
    latest = latest_checkpoint(run_dir / CHECKPOINT_DIR) if resume else None
    if latest is None:
        check_run_folder(run_dir, out, extra=UNIT_FILES)
        return
    state = load_checkpoint(latest)
    there, now = _flat(state.get("config")), _flat(unit.config.to_dict())
    changed = [k for k in sorted({*there, *now}) if there.get(k) != now.get(k)]
    if changed:
        shown = ", ".join(f"{k} {there.get(k)!r} there, {now.get(k)!r} now" for k in changed[:4])
        raise ConfigError(
            f"{latest} was trained with another config ({shown}): start afresh (the demo: drop "
            "--resume; its runs are deleted) or choose another --out"
        )
    take_over_stale_lock(run_dir)
    unit.checkpoint, unit.step = latest, int(state["step"])
    unit.trained = int(state["epoch"]) >= unit.config.train.epochs
    unit.seconds = _recorded_seconds(run_dir)


def clear_unit(unit: Unit, out: Path) -> None:
    """Delete an earlier run in a unit's folder that is to train afresh (only igfiqa's files)."""
    if unit.checkpoint is None and not unit.done:
        clear_run_folder(unit.run_dir, out, extra=UNIT_FILES)


class Speed:
    """The measured training speed, from the first unit trained: logs how long the others need."""

    def __init__(self, units: list[Unit], log: Callable[[str], None]) -> None:
        self.units, self.log = units, log
        self.seconds_per_pass: float | None = None

    def _passes(self, unit: Unit, steps: int) -> int:
        return steps * int(unit.config.data.batch_size) * unit.variant.streams

    def measured(self, unit: Unit, steps: int, seconds: float) -> None:
        passes = self._passes(unit, steps - unit.step)
        if self.seconds_per_pass is not None or passes <= 0 or seconds <= 0:
            return
        self.seconds_per_pass = seconds / passes
        left = [u for u in self.units if not u.trained and u is not unit]
        if left:
            more = sum(self._passes(u, steps - u.step) for u in left) * self.seconds_per_pass
            self.log(
                f"{unit.variant.key}: {seconds:.0f} s ({passes / seconds:.0f} image passes/s); "
                f"the other {len(left)} unit(s) need about {more / 60:.1f} min more on this "
                "machine, then the evaluation"
            )


def train_unit(
    unit: Unit,
    data: SeedData,
    kind: str,
    *,
    where: str,
    progress: bool,
    log: Callable[[str], None],
    speed: Speed,
) -> str | None:
    """Train the unit to its last epoch (continuing from its checkpoint); returns what resuming
    did (None: trained afresh). Raises :class:`ExperimentStopped` on SIGTERM / SIGINT."""
    from igfiqa.engine.trainer import train

    epochs = unit.config.train.epochs
    if unit.trained:
        log(f"{where} {unit.label}: finished earlier, reusing {unit.checkpoint}")
        return f"reused (finished earlier, {unit.step} steps)"
    resumed, start = unit.checkpoint is not None, unit.step
    more = f", continuing from step {start}" if resumed else ""
    log(f"{where} training {unit.label}: {epochs} epochs{more}")
    started = time.perf_counter()
    result = train(
        unit.config, out_dir=unit.run_dir, resume=resumed, progress=progress, dataset=data.train
    )
    seconds = time.perf_counter() - started
    if result.checkpoint is not None:
        write_json(unit.run_dir / TRAINING_FILE, {"train_seconds": unit.seconds + seconds})
    if result.signum is not None:
        raise ExperimentStopped(kind, unit.variant.key, result.signum, unit.run_dir)
    if result.checkpoint is None:
        raise IgfiqaError(f"training of {unit.run_dir} stopped early ({result.stopped})")
    speed.measured(unit, result.step, seconds)
    unit.checkpoint, unit.step, unit.trained = Path(result.checkpoint), result.step, True
    unit.seconds += seconds
    return f"continued from step {start}" if resumed else None


def guidance_weights(state: dict[str, Any], low_variance: np.ndarray) -> dict[str, float] | None:
    """Mean weight and zero-weight share of low-variance vs ordinary classes in a loaded training
    checkpoint (None without guidance)."""
    from igfiqa.method.guidance import GuidanceConfig

    if not state.get("guidance"):
        return None
    options = state["config"]["method"]["guidance"]
    guidance = GuidanceConfig(**options).build(len(low_variance))
    if guidance is None:
        return None
    guidance.load_state_dict(state["guidance"])
    weights = guidance.class_weights().double().numpy()
    low, ordinary = weights[low_variance], weights[~low_variance]
    return {
        "guidance_weight_low_variance": float(low.mean()) if low.size else math.nan,
        "guidance_weight_ordinary": float(ordinary.mean()) if ordinary.size else math.nan,
        "zero_weight_share_low_variance": float((low <= 0).mean()) if low.size else math.nan,
        "zero_weight_share_ordinary": float((ordinary <= 0).mean()) if ordinary.size else math.nan,
    }


def runner(benchmark: Benchmark, out: Path, device: str, progress: bool = False) -> Any:
    """The evaluation runner of one benchmark, with the output folder's cache."""
    from igfiqa.evaluation.runner import BenchmarkRunner

    return BenchmarkRunner(
        benchmark.pairset, name=benchmark.name, source=benchmark.source,
        cache_dir=out / CACHE_DIR, device=device, progress=progress,
    )  # fmt: skip


def fr_model(unit: Unit, name: str, device: str) -> Any:
    """The unit's backbone as an FR model named ``name``."""
    from igfiqa.inference.fr_models import load_fr_model

    return load_fr_model(str(unit.checkpoint), name=name, device=device)


def quality_method(unit: Unit) -> Any:
    """The unit's quality model as a quality method (named by the variant's label)."""
    from igfiqa.evaluation.quality import parse_quality_spec

    return parse_quality_spec(str(unit.checkpoint), name=unit.label)


def score_unit(unit: Unit, data: SeedData, runners: dict[str, Any], device: str) -> dict[str, Any]:
    """Score every benchmark with the unit's model through the evaluation runner (its embeddings
    and its quality, cached for the seed's evaluation); returns what ``unit.json`` records: the
    Spearman correlation of the quality with the ground truth where a benchmark has one (all
    held-out images, those of low-variance and of ordinary identities) and the guidance weights
    of low-variance vs ordinary training classes (rendered faces)."""
    from igfiqa.checkpoint import load_checkpoint
    from igfiqa.evaluation.correlation import spearman

    assert unit.checkpoint is not None
    methods = [quality_method(unit)]  # the independent FR model's quality head too (recorded)
    model = fr_model(unit, unit.variant.key, device)
    record: dict[str, Any] = {
        "format": UNIT_FORMAT,
        "key": unit.variant.key,
        "seed": unit.seed,
        "checkpoint": str(unit.checkpoint.relative_to(unit.run_dir)),
        "steps": unit.step,
        "train_seconds": unit.seconds,
    }
    for benchmark in data.benchmarks:
        _, qualities = runners[benchmark.name].compute(model, methods)
        truth = benchmark.ground_truth
        if truth is None or "spearman_ground_truth" in record:
            continue
        quality = qualities[unit.label]
        record["spearman_ground_truth"] = spearman(quality, truth)
        low = benchmark.low_variance
        if low is not None:
            record["spearman_low_variance"] = spearman(quality[low], truth[low])
            record["spearman_ordinary"] = spearman(quality[~low], truth[~low])
    if data.train is not None:
        state = load_checkpoint(unit.checkpoint)
        record.update(guidance_weights(state, data.train.low_variance) or {})
    return record


def finish_unit(unit: Unit, record: dict[str, Any]) -> None:
    """Write the unit's ``unit.json``: a resumed experiment reuses the unit from here on."""
    write_json(unit.run_dir / UNIT_FILE, record)
    unit.record = read_json(unit.run_dir / UNIT_FILE) or json_safe(record)
