"""``igfiqa data``: inspect a data set and convert between formats."""

from __future__ import annotations

import json
from contextlib import nullcontext
from enum import Enum
from pathlib import Path

import typer

from igfiqa.cli import app

data_app = typer.Typer(
    name="data",
    help="Inspect face data sets and convert them (RecordIO, folders, .bin, synthetic).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

_BENCHMARK_ONLY = ("bin", "xqlfw", "ijbb", "ijbc")


@data_app.command("inspect")
def inspect(
    path: str = typer.Argument(
        ...,
        help="Data set: RecordIO folder, identity folder, list file, "
        ".bin, XQLFW/IJB folder, or a 'synthetic:...' spec.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    sheet: Path | None = typer.Option(
        None,
        "--sheet",
        help="Write a PNG contact sheet (one row of images per class) to this file.",
    ),
    classes: int = typer.Option(8, help="Classes shown on the contact sheet (one row each)."),
    per_class: int = typer.Option(8, help="Images per class on the contact sheet."),
) -> None:
    """Detect the format and report images, classes and images per class (and, with --sheet, write
    a contact sheet)."""
    import numpy as np

    from igfiqa.data.benchmarks import detect_kind, open_benchmark
    from igfiqa.data.datasets import detect_format, open_training_dataset
    from igfiqa.data.preview import contact_sheet, write_png
    from igfiqa.errors import ImageDecodeError

    kind = detect_kind(path)
    failures: list[str] = []

    def safe(load, index):
        try:
            return load(index)
        except ImageDecodeError as error:
            failures.append(str(error))
            return None

    if kind in _BENCHMARK_ONLY:
        bench = open_benchmark(kind, path)
        summary = {"format": kind, **bench.describe()}
        summary.pop("detector_score", None)
        shown = list(range(min(bench.num_samples, classes * per_class)))
        tiles = [safe(bench.load_sample, i) for i in shown]
    else:
        detect_format(path)  # clear error for a missing path before anything else
        dataset = open_training_dataset(path, hflip=False)
        summary = dataset.describe()
        order = np.argsort(dataset.labels, kind="stable")
        starts = np.searchsorted(dataset.labels[order], np.arange(dataset.num_classes))
        counts = dataset.images_per_class()
        shown_classes = np.flatnonzero(counts)[:classes]
        per_class = int(min(per_class, counts.max())) if counts.size else per_class
        tiles = []
        for cls in shown_classes:
            members = order[starts[cls] : starts[cls] + min(counts[cls], per_class)]
            row = [safe(dataset.load_image, int(i)) for i in members]
            tiles.extend(row + [np.full((8, 8, 3), 255, np.uint8)] * (per_class - len(row)))
    summary["unreadable_in_sheet"] = failures
    if sheet is not None and tiles:
        write_png(sheet, contact_sheet(tiles, columns=per_class))
        summary["contact_sheet"] = str(sheet)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    for key, value in summary.items():
        if key == "unreadable_in_sheet":
            typer.echo(f"unreadable images (of those shown): {len(value)}")
            for message in value[:10]:
                typer.echo(f"  {message}")
        elif isinstance(value, dict):
            typer.echo(f"{key}: " + ", ".join(f"{k} {v:g}" for k, v in value.items()))
        else:
            typer.echo(f"{key}: {value}")


class ConvertFormat(str, Enum):
    rec = "rec"
    folder = "folder"
    bin = "bin"


class ImageFormat(str, Enum):
    jpg = "jpg"
    png = "png"


@data_app.command("convert")
def convert(
    src: str = typer.Argument(
        ..., help="Source: identity folder, list file, RecordIO, or 'synthetic:...'."
    ),
    dst: Path = typer.Argument(..., help="Destination folder (rec, folder) or file (bin)."),
    to: ConvertFormat = typer.Option(
        ConvertFormat.rec,
        "--format",
        case_sensitive=False,
        help="rec (insightface RecordIO), folder (identity folders) or bin (verification pairs).",
    ),
    image_format: ImageFormat = typer.Option(
        ImageFormat.jpg, case_sensitive=False, help="How images are stored (png is lossless)."
    ),
    quality: int = typer.Option(95, min=1, max=100, help="JPEG quality."),
    image_size: int | None = typer.Option(
        None, help="Resize images to this size (default: as stored)."
    ),
    pairs: int = typer.Option(6000, help="bin only: number of pairs (half mated)."),
    seed: int = typer.Option(0, help="bin only: seed of the pair sampling."),
    overwrite: bool = typer.Option(False, help="Write into a non-empty destination."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bar on standard error (when a terminal)."
    ),
) -> None:
    """Convert a data set to insightface RecordIO, an identity folder, or a verification .bin."""
    from igfiqa.data.convert import write_identity_folder, write_recordio, write_verification_bin
    from igfiqa.data.datasets import open_training_dataset
    from igfiqa.errors import ConfigError
    from igfiqa.files import FolderLock, ensure_dir, writing
    from igfiqa.progress import ProgressBar

    to, image_format = to.value, image_format.value
    if dst.exists() and not overwrite and (dst.is_file() or any(dst.iterdir())):
        raise ConfigError(
            f"{dst}: already exists and is not empty; pass --overwrite or choose another path"
        )
    dataset = open_training_dataset(src, image_size=image_size, hflip=False)
    # one writer per destination folder; a .bin is written atomically (whole or not at all)
    lock = nullcontext() if to == "bin" else FolderLock(ensure_dir(dst, "DST"), "conversion folder")
    with lock, writing(dst), ProgressBar(f"convert to {to}", None, enabled=progress) as bar:

        def step(done: int, total: int) -> None:
            bar.update(done, total)

        if to == "bin":
            path = write_verification_bin(
                dataset, dst, num_pairs=pairs, seed=seed, image_format=image_format,
                quality=quality, progress=step,
            )  # fmt: skip
            result = {"path": str(path), "written": 2 * pairs, "failed": 0}
        else:
            writer = write_recordio if to == "rec" else write_identity_folder
            report = writer(dataset, dst, image_format=image_format, quality=quality, progress=step)
            result = report.as_dict()
    for failure in result.get("failures", []):
        typer.echo(f"skipped: {failure['error']}", err=True)
    typer.echo(
        f"wrote {result['written']} images to {result['path']} ({to}); "
        f"{result['failed']} unreadable image(s) skipped"
    )
