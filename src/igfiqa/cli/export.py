"""``igfiqa export``: safetensors weights + model card with a 0-100 calibration, optionally ONNX."""

from __future__ import annotations

from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.cli.calibrate import calibrate_on, read_calibration_file
from igfiqa.cli.options import kind_option, model_options_option, sha256_option
from igfiqa.errors import ConfigError, IgfiqaError


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(
        ..., help="A model file of any torch kind that `igfiqa models` lists, or an export."
    ),
    kind: str | None = kind_option(),
    sha256: str | None = sha256_option(),
    model_options: str | None = model_options_option(),
    out: Path = typer.Option(
        ..., "--out", "--output", "-o", help="Directory to write the export into."
    ),
    onnx: bool = typer.Option(
        False,
        "--onnx",
        help="Also write model.onnx (opset 18, dynamic batch): one self-contained file, or for a "
        "network over 1.5 GiB a graph plus model.onnx.<sha256>.data; the card lists both.",
    ),
    reference: str = typer.Option(
        "synthetic:identities=64,samples=8,seed=12345",
        "--reference",
        help="Reference set for the 0-100 calibration: a folder or list file of aligned face crops "
        "(recommended: real images like those you will score), a synthetic:... spec, or 'none'.",
    ),
    fnmr_calibration: Path | None = typer.Option(
        None,
        "--fnmr-calibration",
        help="An expected_fnmr.json from `igfiqa calibrate` to put in the model card.",
    ),
    calibrate_benchmark: str | None = typer.Option(
        None,
        "--calibrate",
        help="Calibrate the expected FNMR on this labelled benchmark (as in evaluate) and put it "
        "in the card, in one step; needs --calibrate-fr-model.",
    ),
    calibrate_fr_model: str | None = typer.Option(
        None, "--calibrate-fr-model", help="FR model of --calibrate (as in evaluate)."
    ),
    calibrate_fmr: float = typer.Option(1e-3, "--calibrate-fmr", help="Target FMR of --calibrate."),
    resize: bool = typer.Option(
        False, "--resize", help="Resize reference images that are not the model's input size."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing export in --out (it stays intact until the new one is complete).",
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bar on standard error (when a terminal)."
    ),
) -> None:
    """Export a model for inference: model.safetensors + model_card.json (+ model.onnx).

    The model card records the kind, architecture, input size, the authors' input convention
    (applied inside the exported network and ONNX graph), alignment template, training data, the
    source file's SHA-256, code version, the score calibration learned from --reference, and every
    file of the export with its SHA-256. A model with NaN/inf weights is refused.
    Exit codes: 0 = exported, 2 = usage error (bad checkpoint, reference or output).
    """
    from igfiqa.inference.export import describe_export, export_model

    try:
        expected = None
        if (calibrate_benchmark is None) != (calibrate_fr_model is None):
            raise ConfigError("--calibrate and --calibrate-fr-model go together")
        if calibrate_benchmark is not None and fnmr_calibration is not None:
            raise ConfigError(
                "--calibrate and --fnmr-calibration both give the calibration; pick one"
            )
        if fnmr_calibration is not None:
            expected = read_calibration_file(fnmr_calibration, "--fnmr-calibration")
        elif calibrate_benchmark is not None:
            expected = calibrate_on(
                checkpoint, calibrate_benchmark, calibrate_fr_model, fmr=calibrate_fmr,
                kind=kind, sha256=sha256, options=model_options, progress=progress,
            ).calibration  # fmt: skip
        card = export_model(
            checkpoint,
            out,
            kind=kind,
            sha256=sha256,
            options=model_options,
            onnx=onnx,
            reference=None if reference.strip().lower() == "none" else reference,
            reference_resize=resize,
            overwrite=overwrite,
            progress=progress,
            expected_fnmr=expected,
        )
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    typer.echo(f"exported {describe_export(card)} to {out}")
