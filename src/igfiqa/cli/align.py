"""``igfiqa align``: find the faces in photographs and write aligned ArcFace crops."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.cli.options import (
    exit_interrupted,
    max_side_option,
    min_face_option,
    progress_option,
    workers_option,
)
from igfiqa.detection import DEFAULT_MIN_CONFIDENCE
from igfiqa.errors import ConfigError, IgfiqaError

EPILOG = (
    "Exit codes: 0 = every input gave a face; 1 = some inputs failed (no face, unreadable: each "
    "has a row with its error in faces.csv, the others were written); 2 = usage error, nothing "
    "written; 130 = interrupted, what was written is kept: rerun with --resume."
)


@app.command("align", epilog=EPILOG)
def align(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="INPUT...",
        help="Image files, folders (searched recursively) or list files (.txt/.lst).",
    ),
    out: Path = typer.Option(
        ..., "--out", "--output", "-o", help="Folder for the crops, faces.csv and landmarks.txt."
    ),
    size: int = typer.Option(112, "--size", min=16, max=1024, help="Side of the aligned crops."),
    all_faces: bool = typer.Option(
        False, "--all-faces", help="Every face (NAME_0.png = largest, ...), not only the largest."
    ),
    min_face: float = min_face_option(),
    min_confidence: float = typer.Option(
        DEFAULT_MIN_CONFIDENCE,
        "--min-confidence",
        min=0.0,
        max=1.0,
        help="Least detector confidence (0-1) of a face that is kept; false detections (a hand, "
        "a pattern) on the tested photographs reach 0.94, their real faces 0.98 and more.",
    ),
    max_side: int = max_side_option(),
    workers: int | None = workers_option(),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run: skip inputs already in faces.csv."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start again in a folder that holds an alignment."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No summary and no progress bar."),
    progress: bool = progress_option(),
) -> None:
    """Detect faces (MTCNN, five landmarks) and write ArcFace-aligned crops.

    Writes OUT/NAME.png per input (the largest face; with --all-faces NAME_0.png, NAME_1.png, ...
    largest first), OUT/faces.csv (every face: box, detection confidence, the share of the box
    outside the photograph, landmarks; and one row with its error per input that failed) and
    OUT/landmarks.txt (each input's largest face, the file `igfiqa score INPUT... --landmarks`
    reads). Faces below --min-confidence are not kept. Needs pip install "igfiqa\\[detect]".
    """
    from igfiqa.detection import load_detector
    from igfiqa.files import ensure_dir
    from igfiqa.inference.aligner import FACES_FILE, align_inputs
    from igfiqa.inference.scorer import collect_inputs
    from igfiqa.progress import ProgressBar

    try:
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")
        items = collect_inputs(inputs)
        detector = load_detector(min_face=min_face, min_confidence=min_confidence)
        folder = ensure_dir(out, "--out")
        bar = ProgressBar("align", len(items), enabled=progress and not quiet)
        try:
            summary = align_inputs(
                items, folder, detector, size=size, all_faces=all_faces, max_side=max_side,
                resume=resume, overwrite=overwrite, workers=workers, on_batch=bar.update,
                detector_settings={
                    "detector": type(detector).__name__, "min_face": min_face,
                    "min_confidence": min_confidence,
                },
            )  # fmt: skip
        except KeyboardInterrupt:
            bar.close()
            exit_interrupted(
                f"the faces written so far are in {folder / FACES_FILE}; run the same command "
                "with --resume to finish"
            )
        finally:
            bar.close()
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if not quiet:
        print(
            f"aligned {summary.faces} faces from {summary.aligned} inputs, {summary.failed} failed "
            f"(see {folder / FACES_FILE}), {summary.skipped} skipped (done earlier) in "
            f"{summary.seconds:.1f} s",
            file=sys.stderr,
        )
    raise typer.Exit(1 if summary.failed else 0)
