"""The experiment engine: plan every unit before any work, then, seed by seed, train and score the
units and evaluate the seed. :mod:`.demo` and :mod:`.study` are presets of it that add their own
measurements and reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from igfiqa.experiments.data import Benchmark, SeedData, open_benchmarks, training_source
from igfiqa.experiments.folders import refuse_symlinks, resume_settings, write_settings
from igfiqa.experiments.settings import CLI_OPTIONS, Settings
from igfiqa.experiments.unit import (
    Speed,
    Unit,
    clear_unit,
    finish_unit,
    plan_unit,
    runner,
    score_unit,
    train_unit,
)

Log = Callable[[str], None]


def prepare(
    out: Path,
    settings: Settings,
    *,
    layout: Callable[[int, str], Path],
    settings_file: str,
    resume: bool,
    log: Log,
) -> tuple[list[Unit], bool]:
    """Every unit (seed x variant, folder ``layout(seed, key)``) and whether the experiment in
    ``out`` is resumed. Before any work: refuses other recorded settings when resuming, and unit
    folders it could not use (a file igfiqa did not write, a live lock, a symbolic link, a
    checkpoint of another config); then clears the units that start afresh and records the
    settings."""
    kind = settings.experiment
    record = settings.fingerprint()
    found = resume and resume_settings(out, settings_file, kind, record, options=CLI_OPTIONS)
    if resume and not found and kind == "demo":
        log(f"nothing to resume in {out} (no {settings_file}): starting afresh")
    units = [
        Unit(
            seed,
            v,
            settings.unit_config(v, seed, training_source(settings, seed)),
            layout(seed, v.key),
        )
        for seed in settings.seed_list()
        for v in settings.selected()
    ]
    for unit in units:
        plan_unit(unit, out, resume=found)
    for unit in units:
        clear_unit(unit, out)
    write_settings(out, settings_file, kind, record)
    return units, found


def external_benchmarks(settings: Settings, log: Log) -> list[Benchmark]:
    """The ``--benchmark`` sets (none: each seed's rendered held-out identities)."""
    return open_benchmarks(settings.benchmarks, log) if settings.benchmarks else []


def zoo_models(settings: Settings) -> list[Any]:
    """The ``--fr-model`` FR models, loaded once (any kind ``igfiqa evaluate -f`` loads)."""
    from igfiqa.errors import ConfigError
    from igfiqa.inference.fr_models import load_fr_model

    models = [load_fr_model(spec, device=settings.device) for spec in settings.fr_models]
    names = [*settings.kind.fr_variants, *(m.name for m in models)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"--fr-model: the name(s) {repeated} are taken; name each model apart with NAME=SPEC"
        )
    return models


def runners(out: Path, data: SeedData, settings: Settings, progress: bool) -> dict[str, Any]:
    """One evaluation runner per benchmark of the seed, sharing the output folder's cache."""
    refuse_symlinks(out, out / "cache")
    return {b.name: runner(b, out, settings.device, progress) for b in data.benchmarks}


def run_units(
    units: list[Unit],
    data: SeedData,
    settings: Settings,
    runners: dict[str, Any],
    *,
    speed: Speed,
    progress: bool,
    log: Log,
    measure: Callable[[Unit], dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Train and score every unit of one seed (a unit done earlier is reused as it is; one whose
    training finished is scored; an interrupted one continues); ``measure(unit)`` adds the
    preset's own measurements to ``unit.json``. Returns what resuming did per variant key."""
    resumed: dict[str, str] = {}
    several = len(settings.seed_list()) > 1
    for number, unit in enumerate(units, start=1):
        where = (
            f"[seed {unit.seed}, {number}/{len(units)}]" if several else f"[{number}/{len(units)}]"
        )
        if unit.done:
            resumed[unit.variant.key] = f"reused (finished earlier, {unit.step} steps)"
            log(f"{where} {unit.label}: finished earlier, reusing {unit.checkpoint}")
            continue
        what = train_unit(
            unit, data, settings.experiment, where=where, progress=progress, log=log, speed=speed
        )
        if what is not None:
            resumed[unit.variant.key] = what
        record = score_unit(unit, data, runners, settings.device)
        if measure is not None:
            record.update(measure(unit))
        finish_unit(unit, record)
    return resumed
