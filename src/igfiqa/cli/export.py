"""``igfiqa export``: safetensors weights + model card with a 0-100 calibration, optionally ONNX."""

from __future__ import annotations

from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.errors import IgfiqaError


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(
        ..., help="A model file of any torch kind that `igfiqa models` lists, or an export."
    ),
    kind: str | None = typer.Option(
        None, "--kind", help="The model's kind where it cannot be recognised from the file."
    ),
    sha256: str | None = typer.Option(
        None, "--sha256", help="Pin the model file's SHA-256: a mismatch exports nothing."
    ),
    model_options: str | None = typer.Option(
        None, "--model-option", help="The kind's options, KEY=VALUE,... (e.g. serfiq: T=100)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write the export into."),
    onnx: bool = typer.Option(
        False, "--onnx", help="Also write model.onnx (opset 18, dynamic batch)."
    ),
    reference: str = typer.Option(
        "synthetic:identities=64,samples=8,seed=12345",
        "--reference",
        help="Reference set for the 0-100 calibration: a folder or list file of aligned face crops "
        "(recommended: real images like those you will score), a synthetic:... spec, or 'none'.",
    ),
    resize: bool = typer.Option(
        False, "--resize", help="Resize reference images that are not the model's input size."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing export in --out."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bar on standard error (when a terminal)."
    ),
) -> None:
    """Export a model for inference: model.safetensors + model_card.json (+ model.onnx).

    The model card records the kind, architecture, input size, the authors' input convention
    (applied inside the exported network and ONNX graph), alignment template, training data, the
    source file's SHA-256, code version and the score calibration learned from --reference.
    Exit codes: 0 = exported, 2 = usage error (bad checkpoint, reference or output).
    """
    from igfiqa.inference.export import describe_export, export_model

    try:
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
        )
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    typer.echo(f"exported {describe_export(card)} to {out}")
