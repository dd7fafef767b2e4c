"""What several commands share, declared once so that it means the same everywhere: options, and
how a batch command stops on Ctrl-C."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer

from igfiqa.detection import DEFAULT_MAX_SIDE, MAX_SIDE_LIMIT
from igfiqa.errors import ConfigError


def _check_search_pair(context: typer.Context, name: str, value: Any) -> Any:
    """``--min-face`` and ``--max-side`` are checked together, by whichever is parsed second (click
    parses the options given first, then the defaults, in declaration order)."""
    from igfiqa.detection import check_max_side, check_search

    other = {"min_face": "max_side", "max_side": "min_face"}[name]
    try:
        if name == "max_side":
            check_max_side(value)
        if context.params.get(other) is None:
            return value
        pair = {name: value, other: context.params[other]}
        check_search(pair["max_side"], pair["min_face"])
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def _min_face_callback(context: typer.Context, value: float) -> float:
    return _check_search_pair(context, "min_face", value)


def _max_side_callback(context: typer.Context, value: int) -> int:
    return _check_search_pair(context, "max_side", value)


def min_face_option(context: str = "") -> Any:
    """``--min-face``: the smallest face side the detector searches."""
    return typer.Option(
        20.0,
        "--min-face",
        min=8.0,
        max=10000.0,
        callback=_min_face_callback,
        help=f"{context}Smallest face side searched, in pixels.",
    )


def max_side_option(context: str = "") -> Any:
    """``--max-side``: larger photographs are searched shrunk (crops cut at full resolution)."""
    return typer.Option(
        DEFAULT_MAX_SIDE,
        "--max-side",
        min=64,
        callback=_max_side_callback,
        help=f"{context}Larger photographs are searched shrunk to this longest side (crops are "
        f"cut at full resolution); at most {MAX_SIDE_LIMIT} and 200 x --min-face (a search of "
        "about 1.2 GB).",
    )


def _workers_callback(value: int | None) -> int | None:
    from igfiqa.inference.pipeline import check_workers

    try:
        return check_workers(value)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None


MAX_BATCH_SIZE = 4096
"""Largest ``--batch-size`` of scoring and evaluation: a batch of 112x112 images and the decoded
images queued behind it (three batches) then take about 2.4 GB, which any machine that runs a
published model has; larger batches are not faster on any device."""


def batch_size_option(help: str = "Images per forward pass.") -> Any:
    """``--batch-size`` of the commands that run a model forward: 1 to :data:`MAX_BATCH_SIZE`."""
    return typer.Option(64, "--batch-size", min=1, max=MAX_BATCH_SIZE, help=help)


def workers_option() -> Any:
    """``--workers``: decode threads, at most 4 per CPU core (and what memory allows)."""
    return typer.Option(
        None,
        "--workers",
        min=0,
        callback=_workers_callback,
        help="Decode threads (default: CPU cores, at most 8; 0 = none; at most 4 per core).",
    )


def _threads_callback(value: int | None) -> int | None:
    from igfiqa.inference.runners import check_threads

    try:
        return check_threads(value)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None


def threads_option() -> Any:
    """``--threads``: the network's threads, at most the CPU cores available."""
    return typer.Option(
        None,
        "--threads",
        min=1,
        callback=_threads_callback,
        help="Threads of the network (default: all cores available; at most that many).",
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
