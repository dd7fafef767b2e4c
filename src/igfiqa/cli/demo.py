"""``igfiqa demo``: train CR-FIQA and IG-FIQA on synthetic faces and compare their EDC."""

from __future__ import annotations

from pathlib import Path

import typer

from igfiqa.cli import app


@app.command("demo")
def demo(
    out: Path = typer.Option(
        Path("demo_out"), "--out", "--output", "-o", help="Folder for report.md, plots and runs."
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        min=1,
        help="Epochs per variant, the same for all (default 6). The demo's length is this "
        "number, not a clock, so a rerun gives the same table on any machine; each epoch takes "
        "about 5 minutes on 2 CPU cores.",
        show_default=False,
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the interrupted demo in OUT: reuse the variants it finished, continue the "
        "one it was training from its last checkpoint; the table is that of an uninterrupted run. "
        "Needs the options it was started with (a difference is refused, and listed).",
    ),
    budget_minutes: float | None = typer.Option(
        None,
        "--budget-minutes",
        min=0.1,
        help="Deprecated, and not a time limit: picks --epochs from a fixed cost model (6 gives "
        "the default 6 epochs; real machines are slower). Use --epochs.",
        show_default=False,
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
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train CR-FIQA and IG-FIQA variants on synthetic faces and compare their EDC.

    Renders identity-labelled synthetic faces (a share of low-variance identities), trains the
    CR-FIQA baseline and IG-FIQA (distance, similarity, no augmentation) with the same tiny
    backbone and epochs, evaluates them on held-out identities, writes OUT/report.md with EDC plots
    and prints the table. The default (6 epochs) takes about 30 minutes on 2 CPU cores (about 5
    per epoch, plus a minute); the log gives the measured time left after the first variant.
    Stopped (Ctrl-C, SIGTERM), it keeps what it trained: rerun the same command with --resume to
    continue. Without --resume, earlier runs in OUT are deleted and every variant trains afresh.
    One demo at a time per OUT (a second is refused); a run folder OUT/runs/VARIANT holding a
    file igfiqa did not write is refused, never deleted.
    """
    import warnings

    from igfiqa.experiments import ExperimentStopped, demo_settings, run_demo

    with warnings.catch_warnings():  # budget_minutes: the warning below says it for the CLI
        warnings.simplefilter("ignore", DeprecationWarning)
        settings = demo_settings(
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
    if budget_minutes is not None:
        chosen = settings.resolved_epochs()
        what = (
            "--epochs wins"
            if epochs is not None
            else f"--budget-minutes {budget_minutes:g} trains {chosen} epoch(s) per variant"
        )
        typer.secho(
            f"warning: --budget-minutes is deprecated and never limited the time: it picks the "
            f"epochs from a fixed cost model ({what}); use --epochs {chosen}",
            err=True,
            fg=typer.colors.YELLOW,
        )
    try:
        result = run_demo(out, settings, progress=progress, log=typer.echo, resume=resume)
    except ExperimentStopped as stopped:  # Ctrl-C or SIGTERM: 130/143, as a shell reports it
        typer.secho(f"interrupted: {stopped}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(128 + stopped.signum) from None
    typer.echo("")
    typer.echo(result.table())
    for warning in result.warnings:
        typer.secho(f"WARNING: {warning}", fg=typer.colors.YELLOW)
    typer.echo(f"\nreport: {out / 'report.md'}  ({result.seconds:.0f} s)")
