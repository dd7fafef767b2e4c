"""``igfiqa score``: quality scores for image files, folders and list files, written as they come."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.cli.options import (
    exit_interrupted,
    kind_option,
    max_side_option,
    min_face_option,
    model_options_option,
    progress_option,
    sha256_option,
    threads_option,
    workers_option,
)
from igfiqa.errors import ConfigError, IgfiqaError


class OutputFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


class Backend(str, Enum):
    torch = "torch"
    onnx = "onnx"


EPILOG = (
    "Exit codes: 0 = every image scored; 1 = some images failed (each has a row with its error, "
    "the others were scored); 2 = usage error (bad option, missing input, unreadable model, "
    "output exists without --resume/--overwrite), nothing scored; 130 = interrupted (Ctrl-C), the "
    "rows written so far are kept: rerun with --resume."
)


@app.command("score", epilog=EPILOG)
def score(
    model: Path = typer.Argument(
        ...,
        help="Model file of any kind that `igfiqa models` lists (igfiqa checkpoint or export, "
        "CR-FIQA, MagFace, SDD-FIQA, DifFIQA(R), eDifFIQA, OFIQ ONNX...); with --backend onnx an "
        "export directory holding model.onnx.",
    ),
    inputs: list[str] = typer.Argument(
        ...,
        metavar="INPUT...",
        help="Image files, folders (searched recursively for image files, in sorted order) or "
        "list files (.txt/.lst, one path per line, relative to the list file).",
    ),
    output: str = typer.Option(
        "-", "--output", "-o", help="Output file (CSV or JSON Lines); '-' = standard output."
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.csv, "--format", help="Output format."),
    kind: str | None = kind_option(),
    sha256: str | None = sha256_option(),
    model_options: str | None = model_options_option(),
    calibrated: bool = typer.Option(
        False,
        "--calibrated",
        help="Add what the model card calibrates: 'calibrated', the 0-100 percentile of the score "
        "among the card's reference images (a rank, not a recognition cost), and, for a model "
        "calibrated with `igfiqa calibrate`, the expected FNMR with its 95% band.",
    ),
    landmarks: Path | None = typer.Option(
        None,
        "--landmarks",
        help="Five-point landmarks of loose crops (`name x1 y1 ... x5 y5`, optionally a detector score, per line, IJB "
        "style); each image is aligned to the ArcFace template before scoring.",
    ),
    resize: bool = typer.Option(
        False,
        "--resize",
        help="Resize images that are not the model's input size instead of refusing them.",
    ),
    detect: bool = typer.Option(
        False,
        "--detect",
        help="Find faces in ordinary photographs (MTCNN, five landmarks) and score the largest, "
        'aligned; adds the columns face,x1,y1,x2,y2,detection. Needs pip install "igfiqa\\[detect]".',
    ),
    all_faces: bool = typer.Option(
        False, "--all-faces", help="With --detect: one row per face (face 0 = largest)."
    ),
    min_face: float = min_face_option("With --detect: "),
    max_side: int = max_side_option("With --detect: "),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option(
        "auto", "--device", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N."
    ),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or bfloat16 (torch backend)."),
    backend: Backend = typer.Option(
        Backend.torch, "--backend", help="torch or onnx (onnxruntime, no torch)."
    ),
    workers: int | None = workers_option(),
    threads: int | None = threads_option(),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run: keep the output, skip paths already in it.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = typer.Option(
        False, "--quiet", help="No summary and no progress bar on standard error."
    ),
    progress: bool = progress_option(),
    compile_: bool = typer.Option(
        False,
        "--compile",
        help="Run the network through torch.compile (torch backend): faster on long jobs, slower "
        "to start.",
    ),
) -> None:
    """Score the quality of aligned face images (one row per input, written as it is scored).

    Images must be aligned crops of the model's input size (112x112 for published models) unless
    --detect finds and aligns the faces in ordinary photographs, --landmarks aligns them or --resize
    resizes them; others get an error row (so does a photograph without a face). A file that cannot be
    read or decoded gets a row with its error and the run continues. An interrupted run keeps its
    rows; run it again with --resume to finish it without duplicating any.
    """
    from igfiqa.inference.model import load_model
    from igfiqa.inference.scorer import (
        ResultWriter,
        collect_inputs,
        read_landmarks,
        score_inputs,
        score_settings,
    )
    from igfiqa.progress import ProgressBar

    try:
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")
        if all_faces and not detect:
            raise ConfigError("--all-faces needs --detect")
        if detect and (landmarks is not None or resize):
            raise ConfigError("--detect aligns every face itself: drop --landmarks and --resize")
        items = collect_inputs(inputs)
        table = read_landmarks(landmarks) if landmarks is not None else None
        detector = None
        if detect:
            from igfiqa.detection import load_detector

            detector = load_detector(min_face=min_face)
        loaded = load_model(
            model,
            kind=kind,
            sha256=sha256,
            options=model_options,
            device=device,
            dtype=dtype,
            backend=backend.value,
            threads=threads,
            compile=compile_,
        )
        loaded._require_quality()
        if calibrated and loaded.calibration is None and loaded.fnmr_calibration is None:
            raise ConfigError(
                f"{model} has no score calibration in its model card: drop --calibrated, or "
                "export the model with `igfiqa export` (which learns one) or calibrate it with "
                "`igfiqa calibrate`"
            )
        settings = None
        if output != "-":  # what decides the rows: a resumed output must not mix two of these
            settings = score_settings(
                loaded, calibrated=calibrated, resize=resize, landmarks=landmarks,
                detect={"min_face": min_face, "max_side": max_side, "all_faces": all_faces}
                if detect else None,
            )  # fmt: skip
        with ResultWriter(
            output,
            settings=settings,
            fmt=fmt.value,
            calibrated=calibrated and loaded.calibration is not None,
            expected_fnmr=calibrated and loaded.fnmr_calibration is not None,
            resume=resume,
            overwrite=overwrite,
            detect=detect,
        ) as writer:
            written = [0]
            todo = sum(1 for item in items if item.path not in writer.done)
            bar = ProgressBar("score", todo, enabled=progress and not quiet)

            def on_batch(rows: int) -> None:
                written[0] = rows
                bar.update(rows)

            try:
                summary = score_inputs(
                    loaded,
                    items,
                    writer,
                    batch_size=batch_size,
                    resize=resize,
                    landmarks=table,
                    landmark_source=str(landmarks),
                    detector=detector,
                    all_faces=all_faces,
                    max_side=max_side,
                    workers=workers,
                    on_batch=on_batch,
                )
            except KeyboardInterrupt:
                bar.close()
                writer.close()
                exit_interrupted(
                    f"{written[0]} rows were written to {output}; run the same command with "
                    "--resume to finish"
                )
            finally:
                bar.close()
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if not quiet:
        faces = f" ({summary.faces} faces)" if detect else ""
        print(
            f"scored {summary.scored} images{faces}, {summary.failed} failed, {summary.skipped} skipped "
            f"(already in the output) in {summary.seconds:.1f} s "
            f"({summary.images_per_second:.1f} images/s)",
            file=sys.stderr,
        )
    raise typer.Exit(1 if summary.failed else 0)
