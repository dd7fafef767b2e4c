"""One seed's evaluation: every quality variant on every benchmark with every FR model (the trained
FR variants' backbones and the user's ``--fr-model``), through the evaluation runner and its cache,
and the ordinary evaluation report of the seed (``igfiqa evaluate``'s tables and plots)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.experiments.data import HELD_OUT, Benchmark, SeedData
from igfiqa.experiments.unit import Unit, fr_model, quality_method


@dataclass(frozen=True)
class Cell:
    """One number of a results table: a benchmark (None: the one held-out set of rendered faces),
    a target FMR and a discard limit L."""

    benchmark: str | None
    fmr: float
    limit: float

    @property
    def key(self) -> str:
        """How the study's JSON names the cell: ``L=0.2, FMR=0.01`` (``lfw: L=0.2, FMR=0.01``)."""
        text = f"L={self.limit:g}, FMR={self.fmr:g}"
        return text if self.benchmark is None else f"{self.benchmark}: {text}"


def fmr_key(fmr: float) -> str:
    return f"FMR={fmr:g}"


@dataclass
class SeedEvaluation:
    """What a seed's evaluation measured: the runner's output per (benchmark, FR model key), and
    the FNMR of each unit's own backbone at each FMR per benchmark."""

    seed: int
    benchmarks: list[Benchmark]
    fr_models: dict[str, str]
    runs: dict[tuple[str, str], Any] = field(default_factory=dict)
    backbone_fnmr: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def cell_benchmark(benchmark: Benchmark) -> str | None:
    """The benchmark part of a :class:`Cell`: None for the rendered held-out identities."""
    return None if benchmark.name == HELD_OUT else benchmark.name


def _fnmr_at_fmrs(
    similarity: np.ndarray, mated: np.ndarray, fmrs: tuple[float, ...]
) -> dict[str, float]:
    from igfiqa.evaluation.edc import threshold_at_fmr

    out = {}
    for fmr in fmrs:
        threshold = threshold_at_fmr(similarity[~mated], fmr)
        out[fmr_key(fmr)] = float((similarity[mated] < threshold).mean())
    return out


def evaluate_seed(
    settings: Any,
    units: dict[str, Unit],
    data: SeedData,
    runners: dict[str, Any],
    zoo: list[Any],
    report_dir: Path | None,
    *,
    plots: bool = True,
) -> SeedEvaluation:
    """Evaluate the seed's units (all trained and scored) on its benchmarks; writes the ordinary
    evaluation report into ``report_dir`` (plots only with ``plots``)."""
    from igfiqa.evaluation.report import write_report

    trained_fr = {k: label for k, label in settings.kind.fr_variants.items() if k in units}
    fr = {key: fr_model(units[key], label, settings.device) for key, label in trained_fr.items()}
    fr.update({model.name: model for model in zoo})
    evaluation = SeedEvaluation(
        data.seed, data.benchmarks, {**trained_fr, **{m.name: m.name for m in zoo}}
    )
    qualities = [quality_method(u) for u in units.values() if u.variant.is_quality_method]
    for benchmark in data.benchmarks:
        runner = runners[benchmark.name]
        methods = list(qualities)
        if benchmark.ground_truth is not None:
            from igfiqa.evaluation.quality import parse_quality_spec

            methods.append(parse_quality_spec("ground-truth"))
        for key, model in fr.items():
            evaluation.runs[benchmark.name, key] = runner.run(
                model, methods, fmrs=settings.fmrs, limits=settings.limits
            )
        mated = np.asarray(benchmark.pairset.mated, dtype=bool)
        flip = "sum" if benchmark.pairset.sample_template is not None else "none"
        fnmr: dict[str, dict[str, float]] = {}
        for key, unit in units.items():  # each backbone as an FR model of its own
            model = fr[key] if key in trained_fr else fr_model(unit, key, settings.device)
            embeddings, _ = runner.compute(model, [], flip=flip)
            fnmr[key] = _fnmr_at_fmrs(
                runner.similarity(model, embeddings, flip), mated, settings.fmrs
            )
        evaluation.backbone_fnmr[benchmark.name] = fnmr
    if report_dir is not None:
        results = [output.result for output in evaluation.runs.values()]
        written = write_report(results, report_dir, plots=plots, log=None)
        evaluation.files = [p for paths in written.values() for p in paths]
    return evaluation
