"""``igfiqa models``: list the model architectures the project can build."""

from __future__ import annotations

import typer

from igfiqa.cli import app


@app.command("models")
def list_models() -> None:
    """List the backbone architectures that `create_model` builds."""
    from igfiqa.models import MODEL_LAYERS

    for name, layers in MODEL_LAYERS.items():
        typer.echo(f"{name}\tblocks per stage {list(layers)}")
