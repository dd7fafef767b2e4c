"""Synthetic face generation speed on one core (target >= 500 images/s at 112x112).

Renders fresh (identity, sample) images, degradation included, at 112 and at the demo's small size,
in the order a shuffled training epoch would ask for them. Prints one JSON object as the last line.
Throughput is per CPU-second of this process (time.process_time, one thread), so that
other processes on a shared machine distort it less than wall-clock time would.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 48])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from igfiqa.data.synthetic import SyntheticFaces

    result: dict[str, object] = {"benchmark": "synthetic_generation", "images": args.images}
    for size in args.sizes:
        best = 0.0
        for repeat in range(args.repeats):
            # A new generator each time: identity caches start cold, as in a new worker.
            faces = SyntheticFaces(args.images // 10, 10, seed=repeat, image_size=size)
            order = np.random.default_rng(repeat).permutation(len(faces))
            start = time.process_time()
            for index in order:
                faces.render(*faces.locate(int(index)))
            best = max(best, len(order) / (time.process_time() - start))
        result[f"images_per_s_{size}"] = round(best)
    result["target_images_per_s_112"] = 500
    result["meets_target"] = result.get("images_per_s_112", 0) >= 500
    result["threads"] = 1
    print(json.dumps(result))


if __name__ == "__main__":
    main()
