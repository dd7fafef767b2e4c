"""``igfiqa models``: the released model kinds igfiqa reads, and the architectures it builds."""

from __future__ import annotations

import typer

from igfiqa.cli import app


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
