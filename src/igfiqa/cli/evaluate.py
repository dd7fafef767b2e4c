"""``igfiqa evaluate``: EDC/pAUC (fixed threshold) and CR-FIQA ERC of quality methods on benchmarks."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.evaluation.api import parse_benchmark


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
    from igfiqa.evaluation.api import evaluate as run_evaluation

    report = run_evaluation(
        benchmarks,
        fr_models,
        qualities,
        out,
        fmrs=fmrs,
        fnmrs=fnmrs,
        fm_edc=fm_edc,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        limits=limits,
        flip=flip.value,
        pair_quality=pair_quality.value,
        erc_rule=erc_rule.value,
        device=device,
        batch_size=batch_size,
        workers=workers,
        cache_dir=cache_dir,
        cache=not no_cache,
        plots=not no_plots,
        progress=progress,
        log=lambda message: typer.echo(message, err=True),
        warn=lambda message: typer.secho(message, err=True, fg=typer.colors.YELLOW),
    )
    typer.echo((out / "results.md").read_text(encoding="utf-8"))
    typer.echo(
        f"wrote {len(report.written['plots'])} plots, {len(report.written['tables'])} tables "
        f"to {out}",
        err=True,
    )


__all__ = ["evaluate", "parse_benchmark"]
