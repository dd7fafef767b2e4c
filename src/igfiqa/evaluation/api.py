"""``igfiqa.evaluate(...)``: quality methods x FR models x benchmarks, what ``igfiqa evaluate`` runs.

Every option is checked before any embedding is computed, so nothing is lost to a bad option; then
each benchmark is opened once and run with each FR model (:class:`~.runner.BenchmarkRunner`: one
decoding pass feeds every model, with on-disk caches), and the report is written to ``out``
(:func:`~.report.write_report`). The command line only parses its options and calls
:func:`evaluate`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igfiqa.errors import ConfigError

if TYPE_CHECKING:
    from igfiqa.evaluation.edc import ErcRule, PairReduce
    from igfiqa.evaluation.results import BenchmarkResult
    from igfiqa.evaluation.runner import Flip

# Imported by the command line at start-up: the evaluation code itself is imported on first call.

FLIPS = ("auto", "none", "concat", "sum")
PAIR_QUALITIES = ("min", "mean", "product")
ERC_RULES = ("crfiqa", "iso")


@dataclass(frozen=True)
class EvaluationResults:
    """What :func:`evaluate` returns: one :class:`BenchmarkResult` per benchmark and FR model (in
    the order given, benchmarks outer), the report folder ``out`` (None when no report was
    written) and the files written there by kind (``plots``, ``tables``, ``curves``)."""

    results: list[BenchmarkResult]
    out: Path | None = None
    written: dict[str, list[Path]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[BenchmarkResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def result(self, benchmark: str, fr_model: str | None = None) -> BenchmarkResult:
        """The result of ``benchmark`` (its label) with ``fr_model`` (its name; may be left out
        when one FR model was evaluated)."""
        found = [
            r for r in self.results if r.benchmark == benchmark and fr_model in (None, r.fr_model)
        ]
        if len(found) != 1:
            have = ", ".join(f"{r.benchmark} / {r.fr_model}" for r in self.results)
            what = "no" if not found else "more than one"
            raise KeyError(f"{what} result for {benchmark!r} / {fr_model!r}; have: {have}")
        return found[0]

    def summary(self) -> list[dict[str, Any]]:
        """Every result's summary (what ``results.json`` holds)."""
        return [r.summary() for r in self.results]

    def markdown(self) -> str:
        """The Markdown report (what ``results.md`` holds)."""
        from igfiqa.evaluation.report import markdown

        return markdown(self.results)


def parse_benchmark(text: str) -> tuple[str, str, str]:
    """``NAME:PATH`` -> (name, kind, path).

    NAME is a reader kind (bin, xqlfw, ijbb, ijbc, folder) or a free label, in which case the kind
    is detected from PATH (``.bin`` file, folder with ``xqlfw_pairs.txt``, IJB folder with
    ``meta/``, else a labelled folder). ``synthetic:key=value,...`` is a synthetic benchmark spec.
    ``LABEL=NAME:PATH`` sets the name shown in the results.
    """
    from igfiqa.data.benchmarks import benchmark_kinds

    label = None
    head = text.split(":", 1)[0]
    if "=" in head:
        label, text = text.split("=", 1)
    if text.lower().startswith("synthetic"):
        return label or "synthetic", "synthetic", text
    name, sep, path = text.partition(":")
    if not sep or not path or not name:
        raise ConfigError(f"--benchmark {text!r}: expected NAME:PATH (e.g. lfw:/data/lfw.bin)")
    if name in benchmark_kinds():
        return label or Path(path).stem or name, name, path
    return label or name, "auto", path


def _as_list(value: Any) -> list[Any]:
    """One spec or several: a string, path or other non-iterable is one."""
    if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _check_choice(value: str, choices: Sequence[str], option: str) -> str:
    if value not in choices:
        raise ConfigError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _check_options(
    fmrs: Sequence[float], fnmrs: Sequence[float], bootstrap: int, limits: Sequence[float]
) -> None:
    bad_fmrs = [f for f in fmrs if not 0.0 < f < 1.0]
    if bad_fmrs:
        raise ConfigError(f"--fmr must lie in (0, 1), got {bad_fmrs}")
    bad_fnmrs = [f for f in fnmrs if not 0.0 < f < 1.0]
    if bad_fnmrs:
        raise ConfigError(f"--fnmr must lie in (0, 1), got {bad_fnmrs}")
    if 0 < bootstrap < 20:
        raise ConfigError(f"--bootstrap needs 0 (off) or at least 20 resamples, got {bootstrap}")
    bad_limits = [L for L in limits if not 0.0 < L <= 1.0]
    if bad_limits:
        raise ConfigError(f"--limit must lie in (0, 1], got {bad_limits}")


def _benchmark_entry(spec: Any) -> tuple[str, Any]:
    """(label, spec): a ``NAME:PATH`` string's label, or an opened benchmark's name."""
    if isinstance(spec, (str, os.PathLike)):
        return parse_benchmark(os.fspath(spec))[0], spec
    if not hasattr(spec, "pairs") or not hasattr(spec, "load_sample"):
        raise ConfigError(
            f"a benchmark is a NAME:PATH string or an opened benchmark (open_benchmark), got "
            f"{type(spec).__name__}"
        )
    return str(getattr(spec, "name", "benchmark")), spec


def evaluate(
    benchmarks: Any,
    fr_models: Any,
    qualities: Any,
    out: str | os.PathLike[str] | None = None,
    *,
    fmrs: Sequence[float] = (1e-3, 1e-4),
    fnmrs: Sequence[float] = (),
    fm_edc: bool = False,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    limits: Sequence[float] = (0.2, 0.3),
    flip: Flip = "auto",
    pair_quality: PairReduce = "min",
    erc_rule: ErcRule = "crfiqa",
    device: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
    plots: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> EvaluationResults:
    """Evaluate quality methods on benchmarks with FR models: EDC (fixed threshold) pAUC and the
    CR-FIQA ERC, as ``igfiqa evaluate`` (docs/evaluation.md); returns an :class:`EvaluationResults`.

    Args:
        benchmarks: one or several ``NAME:PATH`` specs (``lfw:/data/lfw.bin``,
            ``ijbc:/data/IJBC``, ``synthetic:identities=50,samples=8``; ``LABEL=KIND:PATH`` names
            one) or benchmarks opened with :func:`igfiqa.open_benchmark`.
        fr_models: one or several FR models: a file of any FR kind (``KIND:PATH``, ``NAME=SPEC``,
            ``PATH@sha256=HEX``), a function of aligned uint8 faces (B, S, S, 3) -> embeddings, or
            an :class:`~igfiqa.inference.fr_models.FRModel`.
        qualities: one or several quality methods: the ``--quality`` specs
            (:func:`igfiqa.list_quality_methods`, a model path or ``KIND:PATH``; ``NAME=SPEC``), a
            function of aligned uint8 faces -> scores, or a parsed ``QualityMethod``.
        out: the report folder (plots, ``results.md`` / ``.csv`` / ``.json`` / ``.tex``, curves);
            None writes no report.
        fmrs, fnmrs, fm_edc, bootstrap, bootstrap_seed, limits, flip, pair_quality, erc_rule:
            as ``--fmr``, ``--fnmr``, ``--fm-edc``, ``--bootstrap``, ``--bootstrap-seed``,
            ``--limit``, ``--flip``, ``--pair-quality``, ``--erc-rule``.
        device, batch_size, workers: where and how the models run and the images are decoded.
        cache_dir: the cache of embeddings and scores (default ``out/cache``; none without
            ``out``); ``cache=False`` reads and writes no cache.
        plots: write the plots (else tables and curves only).
        progress: a progress bar on standard error (when it is a terminal).
        log: receives progress messages (e.g. that pairs were sampled); None: silent.
        warn: receives each result's warnings as ``WARNING: ...`` lines after the report is
            written; None: each is issued as a Python ``UserWarning``. They are also in each
            result's ``warnings`` and in the report.
    """
    from igfiqa.data.benchmarks import open_benchmark
    from igfiqa.evaluation.quality import QualityMethod, parse_quality_spec
    from igfiqa.evaluation.report import write_report
    from igfiqa.evaluation.runner import BenchmarkRunner
    from igfiqa.files import ensure_dir

    benchmark_specs = _as_list(benchmarks)
    fr_specs = _as_list(fr_models)
    quality_specs = _as_list(qualities)
    for what, given in (
        ("benchmark", benchmark_specs),
        ("FR model", fr_specs),
        ("quality method", quality_specs),
    ):
        if not given:
            raise ConfigError(f"evaluate() needs at least one {what}")
    methods = [q if isinstance(q, QualityMethod) else parse_quality_spec(q) for q in quality_specs]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"quality method names repeat ({names}); name them NAME=SPEC")
    # Everything checked before any embedding is computed: nothing is lost to a bad option.
    _check_options(fmrs, fnmrs, bootstrap, limits)
    _check_choice(flip, FLIPS, "--flip")
    _check_choice(pair_quality, PAIR_QUALITIES, "--pair-quality")
    _check_choice(erc_rule, ERC_RULES, "--erc-rule")
    entries = [_benchmark_entry(spec) for spec in benchmark_specs]
    labels = [label for label, _ in entries]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(
            f"--benchmark {', '.join(repeated)} is given more than once; give each once (or name "
            "them apart with LABEL=KIND:PATH)"
        )
    folder = None if out is None else Path(out)
    if folder is not None:
        ensure_dir(folder, "--out")
    cache_folder = None  # no cache without a folder for it
    if cache and cache_dir is not None:
        cache_folder = Path(cache_dir)
    elif cache and folder is not None:
        cache_folder = folder / "cache"
    if cache_folder is not None:
        ensure_dir(cache_folder, "--cache-dir")
    results = []
    for label, spec in entries:
        if isinstance(spec, (str, os.PathLike)):
            label, kind, path = parse_benchmark(os.fspath(spec))
            pairset, source = open_benchmark(kind, path), path
        else:
            pairset, source = spec, None
        runner = BenchmarkRunner(
            pairset,
            name=label,
            source=source,
            cache_dir=cache_folder,
            batch_size=batch_size,
            workers=workers,
            device=device,
            log=log,
            progress=progress,
        )
        for fr in fr_specs:
            output = runner.run(
                fr,
                methods,
                flip=flip,
                fmrs=fmrs,
                limits=limits,
                erc_rule=erc_rule,
                pair_reduce=pair_quality,
                fnmrs=fnmrs,
                fm_edc=fm_edc,
                bootstrap=bootstrap,
                bootstrap_seed=bootstrap_seed,
            )
            results.append(output.result)
    written: dict[str, list[Path]] = {}
    if folder is not None:
        written = write_report(results, folder, plots=plots, log=None)
    for result in results:
        for warning in result.warnings:
            if warn is not None:
                warn(f"WARNING: {warning}")
            else:
                warnings.warn(warning, UserWarning, stacklevel=2)
    return EvaluationResults(results, folder, written)


__all__ = [
    "ERC_RULES",
    "FLIPS",
    "PAIR_QUALITIES",
    "EvaluationResults",
    "evaluate",
    "parse_benchmark",
]
