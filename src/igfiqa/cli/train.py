"""``igfiqa train``: train a FIQA model from a preset or config file (also under ``torchrun``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from igfiqa.cli import app
from igfiqa.errors import ConfigError

RECIPE_SECTIONS = ("model", "head", "method", "data")
OPTION_FIELDS = {"--device": "train.device", "--seed": "train.seed"}
"""Options that set one config field each; a ``--set`` of the same field with them is refused."""


def _option_overrides(overrides: list[str], given: dict[str, object]) -> list[str]:
    """``--set`` overrides for the options given (``{option: value}``, None = not given), after
    refusing an option and a ``--set`` of the same field together: which of the two should win is
    not obvious, so the command asks for one."""
    from igfiqa.config import parse_override

    set_fields = {".".join(parse_override(text)[0]) for text in overrides}
    extra = []
    for option, value in given.items():
        if value is None:
            continue
        field = OPTION_FIELDS[option]
        if field in set_fields:
            raise ConfigError(
                f"{option} and --set {field}=... both set {field}: give only one of them"
            )
        extra.append(f"{field}={value}")
    return extra


def _given(context: typer.Context, name: str) -> bool:
    """Whether option ``name`` was on the command line (or in the environment), not its default."""
    source = context.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _device_callback(value: str) -> str:
    """``--device`` takes what ``train.device`` takes (auto, cpu, cuda, cuda:N)."""
    from pydantic import ValidationError

    from igfiqa.config import TrainConfig

    try:
        TrainConfig(device=value)
    except ValidationError:
        raise typer.BadParameter(f"{value!r}: use auto, cpu, cuda or cuda:N") from None
    return value


def _check_resumed_recipe(config: Any, saved: Any, run_dir: Path) -> None:
    """A resumed run keeps its model, head, method and data; anything else may change."""
    new, old = config.to_dict(), saved.to_dict()
    changed = [
        f"{section}.{key}"
        for section in RECIPE_SECTIONS
        for key in sorted(set(new[section]) | set(old[section]))
        if new[section].get(key) != old[section].get(key)
    ]
    if changed:
        raise ConfigError(
            f"--resume {run_dir}: this would change {', '.join(changed[:6])} of the run's own "
            f"config.yaml; resume without --preset/--config (the run's recipe is kept), or start "
            "a new run in another --out folder"
        )


@app.command("train")
def train_command(
    context: typer.Context,
    preset: str | None = typer.Option(
        None, "--preset", "-p", help="Packaged preset name (see --list-presets) or a YAML file."
    ),
    config_file: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file merged on top of the preset (or used alone)."
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        help="Training data: RecordIO folder, identity folder, list file or synthetic:...",
    ),
    out: Path | None = typer.Option(
        None, "--out", "--output", "-o", help="Run folder (default runs/<config name>)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a value: --set train.amp=bf16 (repeatable; YAML values)."
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        callback=_device_callback,
        help="Training device: auto, cpu, cuda or cuda:N (sets train.device; not given: the "
        "config's).",
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        min=0,
        help="Random seed (sets train.seed; not given: the config's).",
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Stop after this many optimizer steps in total."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the newest checkpoint of this run folder exactly."
    ),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Progress bar on standard error when it is a terminal; else (or with --no-progress) "
        "a text line every logging.stderr_every_steps steps.",
    ),
    list_presets_: bool = typer.Option(False, "--list-presets", help="List presets and exit."),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config as YAML and exit."
    ),
) -> None:
    """Train IG-FIQA / CR-FIQA. Single process on a CPU or GPU; run the same command under
    `torchrun --nproc_per_node N` for data-parallel training on N GPUs (several nodes too)."""
    from igfiqa.config import list_presets, load_config, preset_text
    from igfiqa.engine.distributed import launch_env
    from igfiqa.engine.resources import check_resources
    from igfiqa.errors import ConfigError
    from igfiqa.files import json_safe

    if list_presets_:
        for name in list_presets():
            text = preset_text(name)
            line = next((x for x in text.splitlines() if x.startswith("description:")), "")
            typer.echo(f"{name:24s} {line.removeprefix('description:').strip()}")
        raise typer.Exit()

    launch = launch_env()  # a stray or malformed RANK / WORLD_SIZE is refused before any work
    if resume is not None:
        run_dir = Path(resume)
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise ConfigError(
                "--resume RUN_DIR continues in RUN_DIR: drop --out or make them equal"
            )
        saved = run_dir / "config.yaml"
        if preset is None and config_file is None:
            if not saved.is_file():
                raise ConfigError(
                    f"cannot resume {run_dir}: it has no config.yaml (is it a run folder?)"
                )
            preset = str(saved)
    # --device / --seed set their field over the preset, --config and --data (as --set does);
    # with a --set of the same field they are refused rather than one silently winning.
    given_device = device if _given(context, "device") else None
    overrides = [
        *overrides,
        *_option_overrides(overrides, {"--device": given_device, "--seed": seed}),
    ]
    config = load_config(preset, config_file=config_file, data=data, overrides=overrides)
    if resume is not None and (run_dir / "config.yaml").is_file():
        _check_resumed_recipe(config, load_config(str(run_dir / "config.yaml")), run_dir)
    if print_config:
        typer.echo(config.to_yaml(), nl=False)
        raise typer.Exit()
    run_dir = Path(resume) if resume is not None else (out or Path("runs") / config.name)
    if given_device is not None and given_device.startswith("cuda"):  # named as the user gave it
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {given_device}: CUDA is not available on this machine (no GPU or a CPU "
                "build of torch); use --device cpu or auto"
            )
    check_resources(config)

    from igfiqa.engine.trainer import train

    result = train(
        config,
        out_dir=run_dir,
        resume=resume is not None,
        max_steps=max_steps,
        progress=progress,
    )
    if launch.is_main:
        summary = {
            "run_dir": str(result.run_dir),
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            "step": result.step,
            "epoch": result.epoch,
            "stopped": result.stopped,
            "nonfinite_steps": result.nonfinite_steps,
            "images_per_second": round(result.images_per_second, 2),
            "metrics": result.metrics,
            "verification": result.verification,
        }
        safe = json_safe(summary, infinite_as_text=True)
        typer.echo(json.dumps(safe, indent=2, allow_nan=False))
    if result.signum is not None:  # stopped by SIGTERM/SIGINT after saving: 143/130, as a shell
        raise typer.Exit(128 + int(result.signum))
