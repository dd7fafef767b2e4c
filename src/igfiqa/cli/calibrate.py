"""``igfiqa calibrate`` (what a quality score costs: expected FNMR with its band) and
``igfiqa thresholds`` (the quality threshold for an FNMR target, and the share it rejects)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from igfiqa.cli import app
from igfiqa.cli.evaluate import FlipChoice
from igfiqa.cli.options import (
    batch_size_option,
    kind_option,
    model_options_option,
    sha256_option,
    workers_option,
)
from igfiqa.errors import ConfigError

DEFAULT_TARGETS = [0.01, 0.02, 0.05, 0.10]


def calibrate_on(model: Path, benchmark: str, fr_model: str, *, fmr: float, **options: Any) -> Any:
    """``igfiqa.evaluation.expected_fnmr.calibrate_model`` on a benchmark given as on the command
    line (NAME:PATH, as in evaluate); ``--fmr`` is checked before the benchmark is opened."""
    from igfiqa.data.benchmarks import open_benchmark
    from igfiqa.evaluation.api import parse_benchmark
    from igfiqa.evaluation.expected_fnmr import calibrate_model, check_fmr

    check_fmr(fmr)
    label, bench_kind, path = parse_benchmark(benchmark)
    pairset = open_benchmark(bench_kind, path)
    return calibrate_model(model, pairset, fr_model, fmr=fmr, source=path, name=label, **options)


def read_calibration_file(path: Path, what: str) -> Any:
    """An ``expected_fnmr.json`` written by ``igfiqa calibrate`` (or a card holding one) as an
    :class:`~igfiqa.inference.expected_fnmr.ExpectedFnmr`; ``what`` names it in errors."""
    from igfiqa.errors import CheckpointError
    from igfiqa.inference.card import parse_card_json, read_card_bytes
    from igfiqa.inference.expected_fnmr import ExpectedFnmr

    where, verdict = f"{what} {path}", "it is not a calibration written by igfiqa calibrate"
    try:  # bounded like a model card: a crafted file cannot exhaust memory or the stack
        text = read_card_bytes(path, where=where, verdict=verdict)
        data = parse_card_json(text, where=where, verdict=verdict)
    except CheckpointError as error:
        raise ConfigError(str(error)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} does not hold a calibration object (igfiqa calibrate)")
    return ExpectedFnmr.from_dict(data.get("expected_fnmr", data))


@app.command("calibrate")
def calibrate(
    model: Path = typer.Argument(..., help="Quality model: any kind `igfiqa score` accepts."),
    benchmark: str = typer.Option(
        ...,
        "--benchmark",
        "-b",
        help="Labelled benchmark, as in evaluate (NAME:PATH or synthetic:...).",
    ),
    fr_model: str = typer.Option(
        ...,
        "--fr-model",
        "-f",
        help="FR model whose threshold the FNMR is measured at (as in evaluate).",
    ),
    out: Path = typer.Option(
        ..., "--out", "--output", "-o", help="Output folder (expected_fnmr.json, report)."
    ),
    fmr: float = typer.Option(1e-3, "--fmr", help="Target FMR fixing the FR threshold."),
    kind: str | None = kind_option(),
    sha256: str | None = sha256_option(),
    model_options: str | None = model_options_option(),
    holdout: float = typer.Option(
        0.0,
        "--holdout",
        help="Share of identities left out of the fit, on which predicted and observed FNMR are "
        "compared per quality decile (needs per-image identities: folder, synthetic).",
    ),
    bootstrap: int = typer.Option(
        200, "--bootstrap", min=20, help="Bootstrap resamples of the band."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the identity split."),
    flip: FlipChoice = typer.Option(FlipChoice.auto, "--flip", help="As in evaluate."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = batch_size_option(),
    workers: int | None = workers_option(),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bar on standard error (when a terminal)."
    ),
) -> None:
    """Fit the expected FNMR of the model's quality: for a sample of quality q, the FNMR of a mated
    comparison against a good reference at the FR model's threshold for --fmr, non-increasing in q,
    with a 95% band from a bootstrap over identities. Attach it to an export with
    `igfiqa export MODEL --fnmr-calibration OUT/expected_fnmr.json` (or `export --calibrate`)."""
    from igfiqa.evaluation.expected_fnmr import check_fmr
    from igfiqa.evaluation.expected_fnmr_report import thresholds_table, write_calibration_report
    from igfiqa.files import FolderLock, ensure_dir, writing

    check_fmr(fmr)
    ensure_dir(out, "--out")
    with writing(out, "write into this folder", name_error_file=False):
        lock = FolderLock(out, "calibration folder").acquire()  # one writer per output folder
    try:
        run = calibrate_on(
            model, benchmark, fr_model, fmr=fmr, kind=kind, sha256=sha256, options=model_options,
            holdout=holdout, workers=workers, bootstrap=bootstrap, seed=seed, flip=flip.value,
            device=device, batch_size=batch_size, cache_dir=out / "cache", progress=progress,
        )  # fmt: skip
        # Each file is written atomically (the old one stays until the new one is complete); an
        # OSError on output (a full disk, a read-only folder) is one line naming the file.
        with writing(out, "write the calibration report"):
            written = write_calibration_report(run, out)
    finally:
        lock.release()
    typer.echo(thresholds_table(run.calibration))
    if run.reliability is not None:
        verdict = "yes" if run.reliability.within.all() else "no"
        typer.echo(f"held-out deciles within their band or 0.03: {verdict}", err=True)
    typer.echo(f"wrote {', '.join(str(p) for p in written.values())}", err=True)


@app.command("thresholds")
def thresholds(
    model: Path = typer.Argument(
        ...,
        help="A model whose card has an expected-FNMR calibration, or an expected_fnmr.json "
        "written by `igfiqa calibrate`.",
    ),
    targets: list[float] = typer.Option(
        DEFAULT_TARGETS, "--target", "-t", help="FNMR targets (repeatable), e.g. 0.01."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """For each FNMR target, the lowest quality whose expected FNMR meets it, the share of the
    calibration samples that threshold rejects, and the same for the band's upper edge."""
    from igfiqa.evaluation.expected_fnmr_report import thresholds_table

    bad = [t for t in targets if not 0.0 <= t <= 1.0]
    if bad:
        raise ConfigError(f"--target must lie in [0, 1] (0.01 = 1%), got {bad}")
    if model.suffix.lower() == ".json" and model.is_file():
        calibration = read_calibration_file(model, "calibration")
    else:
        from igfiqa.inference import load_model

        calibration = load_model(model, device="cpu").fnmr_calibration
        if calibration is None:
            raise ConfigError(
                f"{model} has no expected-FNMR calibration in its model card: run igfiqa "
                "calibrate, then igfiqa export --fnmr-calibration"
            )
    if as_json:
        typer.echo(json.dumps({"fmr": calibration.fmr, "info": calibration.info,
                               "thresholds": calibration.thresholds(targets)}, default=str))  # fmt: skip
        return
    info = calibration.info
    typer.echo(
        f"expected FNMR at FMR {calibration.fmr:g} with {info.get('fr_model')} on "
        f"{info.get('benchmark')} ({info.get('num_mated_comparisons')} mated comparisons, "
        f"{info.get('date')})"
    )
    typer.echo(thresholds_table(calibration, targets))
