"""The ``igfiqa`` command line: one Typer app; every command only parses and calls the library.

Each command group lives in its own module of this package and registers itself on :data:`app`.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from igfiqa import __version__
from igfiqa.errors import IgfiqaError


def _conventional_help() -> None:
    """Help in the usual Unix notation whatever typer's version: ``MODEL INPUT...`` in the usage
    line (typer 0.27+ writes ``{model} {INPUT}...``) and no ``<bool>`` beside a flag (0.29+)."""
    from typer import core

    argument, option = getattr(core, "TyperArgument", None), getattr(core, "TyperOption", None)
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = self.display_name_raw.upper().removesuffix("...")
            name = name if self.required else f"[{name}]"
            return f"{name}..." if self.nargs != 1 else name

        argument._usage_display_name = usage_name
    if option is not None and hasattr(option, "display_type_rich"):
        shown = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            if getattr(self, "is_flag", False) and self.metavar is None:
                return None
            return shown(self, ctx)

        option.display_type_rich = display_type_rich


_conventional_help()

app = typer.Typer(
    name="igfiqa",
    help="Train, run and evaluate face image quality assessment (FIQA) models with IG-FIQA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"igfiqa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version_callback,
        is_eager=True,
        help="Print the version.",
    ),
) -> None:
    """Train, run and evaluate face image quality assessment (FIQA) models with IG-FIQA."""
    from igfiqa.files import max_file_bytes, max_video_bytes

    try:  # settings from the environment are checked before any command does any work
        max_file_bytes()
        max_video_bytes()
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


# Command modules register themselves on `app` when imported.
from igfiqa.cli import align as _align  # noqa: E402, F401
from igfiqa.cli import calibrate as _calibrate  # noqa: E402, F401
from igfiqa.cli import data as _data  # noqa: E402, F401
from igfiqa.cli import demo as _demo  # noqa: E402, F401
from igfiqa.cli import evaluate as _evaluate  # noqa: E402, F401
from igfiqa.cli import export as _export  # noqa: E402, F401
from igfiqa.cli import info as _info  # noqa: E402, F401
from igfiqa.cli import score as _score  # noqa: E402, F401
from igfiqa.cli import study as _study  # noqa: E402, F401
from igfiqa.cli import train as _train  # noqa: E402, F401


def main() -> None:
    """Entry point of the console script: user errors, and a file system that refuses a write
    (full, read-only), print one clear line and exit with code 2."""
    try:
        app()
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except OSError as error:  # a file problem no command anticipated: still one line
        from igfiqa.files import output_error

        where = error.filename or "a file"
        typer.secho(f"error: {output_error(where, error, 'use')}", err=True, fg=typer.colors.RED)
        sys.exit(2)
