"""``igfiqa score``: quality scores for image files, folders and list files, written as they come."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from igfiqa.cli import app
from igfiqa.cli.options import (
    batch_size_option,
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
from igfiqa.detection import DEFAULT_MIN_CONFIDENCE
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


def _warn_synthetic(card: dict, where: str) -> None:
    """One line on standard error (even with --quiet) when the model was trained only on synthetic
    faces: its scores of the files given say nothing about them."""
    from igfiqa.inference.card import synthetic_warning

    notice = synthetic_warning(card, where)
    if notice is not None:
        typer.secho(f"warning: {notice}", err=True, fg=typer.colors.YELLOW)


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
        help="Image or video files, folders (searched recursively for image and video files, in "
        "sorted order) or list files (.txt/.lst, one path per line, relative to the list file).",
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
        help="Add what the model card calibrates: 'calibrated', the percentile rank (0-100) of "
        "the raw score among the reference images the card was calibrated on (`igfiqa info "
        "MODEL` names them; synthetic faces unless export --reference said otherwise): an order, "
        "not an ISO/IEC 29794 quality and not a recognition cost; and, for a model calibrated "
        "with `igfiqa calibrate`, the expected FNMR with its 95% band.",
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
        "aligned; adds the columns face,x1,y1,x2,y2,detection,outside (the share of the face's "
        'box outside the photograph). Needs pip install "igfiqa\\[detect]".',
    ),
    all_faces: bool = typer.Option(
        False, "--all-faces", help="With --detect: one row per face (face 0 = largest)."
    ),
    min_face: float = min_face_option("With --detect: "),
    min_confidence: float = typer.Option(
        DEFAULT_MIN_CONFIDENCE,
        "--min-confidence",
        min=0.0,
        max=1.0,
        help="With --detect: least detector confidence (0-1) of a face that is scored; false "
        "detections (a hand, a pattern) on the tested photographs reach 0.94, their real faces "
        "0.98 and more.",
    ),
    max_side: int = max_side_option("With --detect: "),
    every: int = typer.Option(
        1,
        "--every",
        min=1,
        metavar="N",
        help="Videos: score every N-th frame (frames 0, N, 2N...); the rows of a video's frames "
        "carry the columns frame (index) and time (seconds).",
    ),
    best_frames: int = typer.Option(
        0,
        "--best-frames",
        min=0,
        metavar="K",
        help="Videos: write the K faces of highest quality of each video into --frames-out, as the "
        "aligned crops that were scored, named <video>_f<frame>.png.",
    ),
    frames_out: Path | None = typer.Option(
        None, "--frames-out", metavar="DIR", help="Folder for --best-frames (created if missing)."
    ),
    batch_size: int = batch_size_option(),
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
    rows; run it again with --resume to finish it without duplicating any. Videos are scored
    frame by frame (a row per sampled frame and face, with its frame index and time; --every,
    --best-frames).
    """
    from igfiqa.data.video import is_video
    from igfiqa.inference.model import load_model
    from igfiqa.inference.scorer import (
        ResultWriter,
        collect_inputs,
        read_landmarks,
        score_inputs,
        score_settings,
    )
    from igfiqa.inference.video import FrameResultWriter
    from igfiqa.progress import ProgressBar

    try:
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")
        if all_faces and not detect:
            raise ConfigError("--all-faces needs --detect")
        if detect and (landmarks is not None or resize):
            raise ConfigError("--detect aligns every face itself: drop --landmarks and --resize")
        items = collect_inputs(inputs)
        videos = any(is_video(item.path) for item in items)
        if bool(best_frames) != (frames_out is not None):
            raise ConfigError("--best-frames K and --frames-out DIR go together: give both")
        if not videos and (every != 1 or best_frames):
            raise ConfigError("--every and --best-frames apply to videos, and no input is a video")
        if videos and landmarks is not None:
            raise ConfigError(
                "--landmarks names the landmarks of image files; align video frames with --detect"
            )
        table = read_landmarks(landmarks) if landmarks is not None else None
        detector = None
        if detect:
            from igfiqa.detection import load_detector

            detector = load_detector(min_face=min_face, min_confidence=min_confidence)
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
        _warn_synthetic(loaded.card, str(model))
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
                detect={
                    "min_face": min_face, "max_side": max_side, "all_faces": all_faces,
                    "min_confidence": min_confidence,
                } if detect else None,
            )  # fmt: skip
            if videos:  # which frames are sampled decides the rows too
                settings["every"] = every
        with (FrameResultWriter if videos else ResultWriter)(
            output,
            settings=settings,
            fmt=fmt.value,
            calibrated=calibrated and loaded.calibration is not None,
            expected_fnmr=calibrated and loaded.fnmr_calibration is not None,
            resume=resume,
            overwrite=overwrite,
            detect=detect,
        ) as writer:
            todo = sum(1 for item in items if item.path not in writer.done)
            bar = ProgressBar("score", todo, enabled=progress and not quiet)

            def on_batch(rows: int) -> None:
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
                    every=every,
                    best_frames=best_frames,
                    frames_out=frames_out,
                )
            except KeyboardInterrupt:
                bar.close()
                writer.close()
                exit_interrupted(
                    f"{writer.rows_written} rows were written to {output}; run the same command with "
                    "--resume to finish"
                )
            finally:
                bar.close()
    except IgfiqaError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if not quiet:
        faces = f" ({summary.faces} faces)" if detect else ""
        frames = getattr(summary, "frames_per_second", None)
        if frames is None:
            print(
                f"scored {summary.scored} images{faces}, {summary.failed} failed, {summary.skipped} skipped "
                f"(already in the output) in {summary.seconds:.1f} s "
                f"({summary.images_per_second:.1f} images/s)",
                file=sys.stderr,
            )
        else:  # a run with videos
            images = summary.scored + summary.failed - summary.videos
            resumed = summary.frames_skipped
            print(
                f"scored {images} images and {summary.videos} videos ({summary.frames} frames, "
                f"{summary.frame_errors} frame errors){faces}, {summary.failed} failed, "
                f"{summary.skipped} skipped (already in the output)"
                + (f", {resumed} frames already in the output" if resumed else "")
                + (
                    f"; {summary.best_frames_written} best frames in {frames_out}"
                    if frames_out
                    else ""
                )
                + f" in {summary.seconds:.1f} s ({frames:.1f} frames/s)",
                file=sys.stderr,
            )
    raise typer.Exit(1 if summary.failed else 0)
