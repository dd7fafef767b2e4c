"""What several commands share, declared once so that it means the same everywhere: options, and
how a batch command stops on Ctrl-C."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer

from igfiqa.detection import DEFAULT_MAX_SIDE


def min_face_option(context: str = "") -> Any:
    """``--min-face``: the smallest face side the detector searches."""
    return typer.Option(
        20.0, "--min-face", min=8.0, help=f"{context}Smallest face side searched, in pixels."
    )


def max_side_option(context: str = "") -> Any:
    """``--max-side``: larger photographs are searched shrunk (crops cut at full resolution)."""
    return typer.Option(
        DEFAULT_MAX_SIDE,
        "--max-side",
        min=64,
        help=f"{context}Larger photographs are searched shrunk to this longest side (crops are "
        "cut at full resolution).",
    )


def workers_option() -> Any:
    """``--workers``: decode threads."""
    return typer.Option(
        None, "--workers", min=0, help="Decode threads (default: CPU cores, at most 8; 0 = none)."
    )


def progress_option() -> Any:
    """``--progress/--no-progress``: a progress bar on standard error, for a person watching."""
    return typer.Option(
        True, "--progress/--no-progress", help="Progress bar on standard error (when a terminal)."
    )


def kind_option() -> Any:
    """``--kind``: a model file's kind (``igfiqa models``) where the file does not say it."""
    return typer.Option(
        None,
        "--kind",
        help="The model's kind (igfiqa models) where it cannot be recognised from the file, "
        "e.g. ofiq-uqs, serfiq.",
    )


def sha256_option() -> Any:
    """``--sha256``: pin a model file; a mismatch loads nothing."""
    return typer.Option(
        None, "--sha256", help="Pin the model file's SHA-256: a mismatch loads nothing."
    )


def model_options_option() -> Any:
    """``--model-option``: a kind's options."""
    return typer.Option(
        None,
        "--model-option",
        help="The kind's options, KEY=VALUE,... (e.g. serfiq: T=100,p=0.5; magface: colour=RGB).",
    )


def exit_interrupted(message: str) -> NoReturn:
    """After Ctrl-C, with the output already closed: say ``message`` and exit 130 at once (a decode
    thread may be stuck on a hung read and would block a normal exit)."""
    typer.secho(f"interrupted: {message}", err=True, fg=typer.colors.YELLOW)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
