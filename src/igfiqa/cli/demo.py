"""``igfiqa demo``: train CR-FIQA and IG-FIQA on synthetic faces and compare their EDC."""

from __future__ import annotations

from pathlib import Path

import typer

from igfiqa.cli import app


@app.command("demo")
def demo(
    out: Path = typer.Option(
        Path("demo_out"), "--out", "-o", help="Folder for report.md, plots and runs."
    ),
    budget_minutes: float = typer.Option(
        6.0,  # igfiqa.demo.DEFAULT_BUDGET_MINUTES (a literal keeps `igfiqa --help` free of torch)
        "--budget-minutes",
        min=0.1,
        help="Training budget for all variants together, on a 2-core CPU; sets the (fixed, "
        "reproducible) number of epochs. Data rendering and evaluation add about a minute.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the data, the initialisation and training."
    ),
    identities: int = typer.Option(200, "--identities", min=10, help="Training identities."),
    samples: int = typer.Option(20, "--samples", min=2, help="Images per training identity."),
    test_identities: int = typer.Option(
        100, "--test-identities", min=2, help="Held-out identities."
    ),
    test_samples: int = typer.Option(
        10, "--test-samples", min=2, help="Images per held-out identity."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Training batch size."),
    low_variance_share: float = typer.Option(
        0.2, "--low-variance-share", min=0.0, max=0.95, help="Share of low-variance identities."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Epochs per variant (overrides --budget-minutes)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train CR-FIQA and IG-FIQA variants on synthetic faces and compare their EDC.

    Renders identity-labelled synthetic faces (a share of low-variance identities), trains the
    CR-FIQA baseline and IG-FIQA (distance, similarity, no augmentation) with the same tiny
    backbone and epochs, evaluates them on held-out identities, writes OUT/report.md with EDC plots
    and prints the table. One demo at a time per OUT (a second is refused); a run folder
    OUT/runs/VARIANT holding a file igfiqa did not write is refused, never deleted.
    """
    from igfiqa.demo import DemoSettings, DemoStopped, run_demo

    settings = DemoSettings(
        seed=seed,
        train_identities=identities,
        samples_per_identity=samples,
        test_identities=test_identities,
        test_samples_per_identity=test_samples,
        batch_size=batch_size,
        low_variance_share=low_variance_share,
        budget_minutes=budget_minutes,
        epochs=epochs,
    )
    try:
        result = run_demo(out, settings, progress=progress, log=typer.echo)
    except DemoStopped as stopped:  # Ctrl-C or SIGTERM: 130/143, as a shell reports it
        typer.secho(f"interrupted: {stopped}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(128 + stopped.signum) from None
    typer.echo("")
    typer.echo(result.table())
    for warning in result.warnings:
        typer.secho(f"WARNING: {warning}", fg=typer.colors.YELLOW)
    typer.echo(f"\nreport: {out / 'report.md'}  ({result.seconds:.0f} s)")
