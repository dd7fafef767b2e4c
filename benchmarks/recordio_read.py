"""RecordIO read + JPEG decode speed on one core (target >= 3,000 images/s at 112x112).

Writes a temporary insightface RecordIO of synthetic 112x112 JPEGs (quality 95), then reads every
record in a shuffled order through RecordIODataset.read_image (read, join chunks, unpack, decode to
RGB) and, separately, through the full __getitem__ (+ flip and tensor conversion).
Prints one JSON object as the last line. Throughput is per CPU-second of this process (time.process_time, one thread), so that
other processes on a shared machine distort it less than wall-clock time would.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from igfiqa.data.convert import write_recordio
    from igfiqa.data.datasets import RecordIODataset, open_training_dataset

    identities = max(args.images // 20, 1)
    spec = f"synthetic:identities={identities},samples=20,image_size={args.size}"
    with tempfile.TemporaryDirectory() as tmp:
        source = open_training_dataset(spec, hflip=False)
        write_recordio(source, tmp, image_format="jpg", quality=95)
        rec_bytes = os.path.getsize(os.path.join(tmp, "train.rec"))
        dataset = RecordIODataset(os.path.join(tmp, "train.rec"), hflip=True)
        order = np.random.default_rng(0).permutation(len(dataset))
        best_decode = best_item = 0.0
        for _ in range(args.repeats):
            start = time.process_time()
            for index in order:
                dataset.read_image(int(index))
            best_decode = max(best_decode, len(order) / (time.process_time() - start))
            start = time.process_time()
            for index in order:
                dataset[int(index)]
            best_item = max(best_item, len(order) / (time.process_time() - start))
    result = {
        "benchmark": "recordio_read",
        "images": len(order),
        "image_size": args.size,
        "mean_record_bytes": round(rec_bytes / len(order)),
        "read_decode_images_per_s": round(best_decode),
        "getitem_images_per_s": round(best_item),
        "target_images_per_s": 3000,
        "meets_target": best_decode >= 3000,
        "threads": 1,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
