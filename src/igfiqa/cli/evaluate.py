"""``igfiqa evaluate``: EDC/pAUC (fixed threshold) and CR-FIQA ERC of quality methods on benchmarks."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.errors import ConfigError


class FlipChoice(str, Enum):
    auto = "auto"
    none = "none"
    concat = "concat"
    sum = "sum"


class PairReduceChoice(str, Enum):
    min = "min"
    mean = "mean"
    product = "product"


class ErcRuleChoice(str, Enum):
    crfiqa = "crfiqa"
    iso = "iso"


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


@app.command("evaluate")
def evaluate(
    benchmarks: list[str] = typer.Option(
        ...,
        "--benchmark",
        "-b",
        help="NAME:PATH, repeatable: lfw:/data/lfw.bin, xqlfw:/data/xqlfw, ijbc:/data/IJBC, "
        "folder:/data/faces, synthetic:identities=50,samples=8,seed=1 (LABEL=KIND:PATH names it).",
    ),
    fr_models: list[str] = typer.Option(
        ...,
        "--fr-model",
        "-f",
        help="FR model producing comparison scores, repeatable: a file of any FR kind (igfiqa "
        "models): arcface:PATH, magface:PATH, curricularface:PATH, an igfiqa checkpoint/export, "
        "torchscript:PATH, an ONNX file; KIND: where the file does not say it, "
        "PATH@sha256=HEX pins it, NAME=SPEC names it.",
    ),
    qualities: list[str] = typer.Option(
        ...,
        "--quality",
        "-q",
        help="Quality method, repeatable: a model of any quality kind (igfiqa models) as PATH or "
        "KIND:PATH (crfiqa:, magface:, sddfiqa:, diffiqa-r:, ediffiqa:, ofiq-uqs:...), "
        "csv:PATH (path,quality rows), random[:SEED], ground-truth (a synthetic benchmark's own "
        "quality; alias oracle), "
        "embedding-norm, serfiq[:m=100,p=0.5,seed=0,rescale=true,model=PATH]. NAME=SPEC names it.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for plots and tables."),
    fmrs: list[float] = typer.Option(
        [1e-3, 1e-4], "--fmr", help="Target FMRs of the fixed EDC threshold and the ERC."
    ),
    fnmrs: list[float] = typer.Option(
        [],
        "--fnmr",
        help="Initial FNMRs, repeatable: each sets one more fixed EDC threshold, the largest t "
        "with count(mated < t) / mated <= FNMR (e.g. --fnmr 0.1; no ERC for these).",
    ),
    fm_edc: bool = typer.Option(
        False,
        "--fm-edc",
        help="Also the FM-EDC: FMR of the non-mated pairs left after discarding the lowest pair "
        "qualities, at each fixed threshold (plots fmedc_*, FM norm columns).",
    ),
    bootstrap: int = typer.Option(
        0,
        "--bootstrap",
        min=0,
        help="95% intervals of every pAUC and ERC AUC from N resamples of identities (0 = off; "
        "1000 for a paper: a few seconds per quality method on a 6,000-pair benchmark).",
    ),
    bootstrap_seed: int = typer.Option(
        0, "--bootstrap-seed", help="Seed of the bootstrap resampling."
    ),
    limits: list[float] = typer.Option([0.2, 0.3], "--limit", help="pAUC discard limits L."),
    flip: FlipChoice = typer.Option(
        FlipChoice.auto,
        "--flip",
        help="Flip-augmented features: none, concat (CR-FIQA), sum; auto = sum for IJB templates.",
    ),
    pair_quality: PairReduceChoice = typer.Option(
        PairReduceChoice.min, "--pair-quality", help="Pair quality from the two samples'."
    ),
    erc_rule: ErcRuleChoice = typer.Option(
        ErcRuleChoice.crfiqa,
        "--erc-rule",
        help="ERC threshold rule: crfiqa (closest FMR, as CR-FIQA's code) or iso.",
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", min=1, help="Images per forward pass of the FR and quality models."
    ),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Image decode threads."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Cache of embeddings and scores (default OUT/cache)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write caches."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Tables only."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bar on standard error (when a terminal)."
    ),
) -> None:
    """Evaluate quality methods on benchmarks: EDC (fixed threshold) pAUC and the CR-FIQA ERC."""
    from igfiqa.data.benchmarks import open_benchmark
    from igfiqa.evaluation.quality import parse_quality_spec
    from igfiqa.evaluation.report import write_report
    from igfiqa.evaluation.runner import BenchmarkRunner
    from igfiqa.files import ensure_dir

    methods = [parse_quality_spec(q) for q in qualities]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"quality method names repeat ({names}); name them NAME=SPEC")
    # Everything checked before any embedding is computed: nothing is lost to a bad option.
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
    labels = [parse_benchmark(text)[0] for text in benchmarks]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(
            f"--benchmark {', '.join(repeated)} is given more than once; give each once (or name "
            "them apart with LABEL=KIND:PATH)"
        )
    ensure_dir(out, "--out")
    cache = None if no_cache else (cache_dir or out / "cache")
    if cache is not None:
        ensure_dir(cache, "--cache-dir")
    results = []
    for text in benchmarks:
        label, kind, path = parse_benchmark(text)
        pairset = open_benchmark(kind, path)
        runner = BenchmarkRunner(
            pairset,
            name=label,
            source=path,
            cache_dir=cache,
            batch_size=batch_size,
            workers=workers,
            device=device,
            log=lambda message: typer.echo(message, err=True),
            progress=progress,
        )
        for fr in fr_models:
            output = runner.run(
                fr,
                methods,
                flip=flip.value,
                fmrs=fmrs,
                limits=limits,
                erc_rule=erc_rule.value,
                pair_reduce=pair_quality.value,
                fnmrs=fnmrs,
                fm_edc=fm_edc,
                bootstrap=bootstrap,
                bootstrap_seed=bootstrap_seed,
            )
            results.append(output.result)
    written = write_report(
        results,
        out,
        plots=not no_plots,
        log=lambda message: typer.secho(message, err=True, fg=typer.colors.YELLOW),
    )
    typer.echo((out / "results.md").read_text(encoding="utf-8"))
    typer.echo(
        f"wrote {len(written['plots'])} plots, {len(written['tables'])} tables to {out}", err=True
    )
