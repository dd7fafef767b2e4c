"""``igfiqa models``: the released model kinds igfiqa reads, and the architectures it builds;
``igfiqa info MODEL``: what one model's card says."""

from __future__ import annotations

from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.cli.options import kind_option, model_options_option, sha256_option
from igfiqa.errors import IgfiqaError


@app.command("models")
def list_models(
    kind: str | None = typer.Argument(None, help="Show one kind in full."),
    architectures: bool = typer.Option(
        False, "--architectures", help="List the iResNet architectures `igfiqa train` builds."
    ),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as markdown."),
) -> None:
    """List the model kinds: method, paper, architecture, input, output, where the authors publish
    the files, their licences and the file names to look for. No checksums are published: pin a
    file you downloaded with `score --sha256` (load_model reports every file's SHA-256)."""
    if architectures:
        from igfiqa.models import MODEL_LAYERS

        for name, layers in MODEL_LAYERS.items():
            typer.echo(f"{name}\tblocks per stage {list(layers)}")
        return
    from igfiqa.inference.kinds import get_kind, list_kinds

    if kind is not None:
        chosen = get_kind(kind)
        for key, value in chosen.describe().items():
            typer.echo(f"{key:>12}: {value}")
        typer.echo(f"{'file':>12}: {chosen.expects}")
        for option in chosen.options:
            typer.echo(f"{'option':>12}: {option}={chosen.options_help.get(option, '')}")
        typer.echo(f"{'detected':>12}: {'from the file' if chosen.auto else 'only with --kind'}")
        return
    rows = [k.describe() for k in list_kinds()]
    if markdown:
        columns = list(rows[0])
        typer.echo("| " + " | ".join(columns) + " |")
        typer.echo("|" + "---|" * len(columns))
        for row in rows:
            typer.echo("| " + " | ".join(row[c].replace("|", "/") for c in columns) + " |")
        return
    for row in rows:
        typer.echo(f"{row['kind']}  --  {row['method']} [{row['roles']}]")
        for key in ("paper", "architecture", "input", "output", "page", "licence", "files"):
            typer.echo(f"    {key:<12} {row[key]}")


@app.command("info")
def model_info(
    model: Path = typer.Argument(
        ..., help="Model file or export folder (any kind `igfiqa models` lists)."
    ),
    kind: str | None = kind_option(),
    sha256: str | None = sha256_option(),
    model_options: str | None = model_options_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the whole model card as JSON."),
) -> None:
    """Summarise a model's card: kind, architecture, input, outputs, the data it was trained on
    (saying so when that was synthetic faces only: its scores of photographs are then not
    meaningful), what its 0-100 score is a percentile of, and its expected-FNMR calibration."""
    import json

    from igfiqa.files import json_safe
    from igfiqa.inference.card import CARD_FILE, card_summary, read_card

    try:
        if (
            model.is_dir()
            and (model / CARD_FILE).is_file()
            and not (kind or sha256 or model_options)
        ):
            card = read_card(model / CARD_FILE)
        else:
            from igfiqa.inference.model import load_model

            card = load_model(
                model, kind=kind, sha256=sha256, options=model_options, device="cpu"
            ).card
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(json_safe(card), indent=2))
    else:
        typer.echo(f"{'model':>13}: {model}")
        for key, value in card_summary(card):
            typer.echo(f"{key:>13}: {value}")
