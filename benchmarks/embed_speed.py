"""Throughput of `igfiqa evaluate`'s embedding pass versus the same network in plain PyTorch.

The embedding pass (:func:`igfiqa.evaluation.runner.image_pass` with the FR model of
:func:`load_fr_model`) decodes a folder benchmark's JPEGs in the thread pool, batches them and runs
the network; plain PyTorch runs the same network (NCHW and NHWC) on already-normalised batches.
The passes alternate (ABC CBA ...) and are summarised by their medians.

    python benchmarks/embed_speed.py --images 256 --batch-size 32 --model r50 --repeats 3

Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from igfiqa.data.benchmarks import open_benchmark
from igfiqa.data.pixels import normalise_batch
from igfiqa.evaluation.runner import image_pass, load_fr_model
from igfiqa.inference.preprocess import to_rgb_array
from igfiqa.models import create_model
from score_speed import make_folder, make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="r50")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        flat = root / "flat"
        flat.mkdir()
        make_folder(flat, args.images, 112)
        bench = root / "bench"
        for index, path in enumerate(sorted(flat.iterdir())):  # 8 images per identity folder
            target = bench / f"id{index // 8:04d}"
            target.mkdir(parents=True, exist_ok=True)
            path.rename(target / path.name)
        make_model(args.model, root / "backbone.pth")
        pairset = open_benchmark("folder", str(bench))
        fr = load_fr_model(root / "backbone.pth", device="cpu")
        width = int(fr.embed(np.zeros((1, 112, 112, 3), np.uint8)).shape[1])
        images = [to_rgb_array(p) for p in sorted(bench.rglob("*.jpg"))]
        batches = [
            normalise_batch(images[i : i + args.batch_size])
            for i in range(0, len(images), args.batch_size)
        ]
        plain = {}
        for layout in ("nchw", "nhwc"):
            network = create_model(args.model, input_size=112)
            network.load_state_dict(torch.load(root / "backbone.pth", weights_only=True))
            network = network.eval()
            if layout == "nhwc":
                network = network.to(memory_format=torch.channels_last)
            plain[layout] = network

        def run_plain(layout: str) -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                for batch in batches:
                    x = torch.from_numpy(batch)
                    if layout == "nhwc":
                        x = x.contiguous(memory_format=torch.channels_last)
                    plain[layout](x)
            return time.perf_counter() - start

        def run_pass() -> float:
            start = time.perf_counter()
            out, failures = image_pass(
                pairset,
                {"embedding": (fr.embed, width)},
                batch_size=args.batch_size,
                workers=args.workers,
            )
            assert not failures and np.isfinite(out["embedding"]).all()
            return time.perf_counter() - start

        run_pass(), run_plain("nchw"), run_plain("nhwc")  # warm-up
        times: dict[str, list[float]] = {"embedding_pass": [], "nchw": [], "nhwc": []}
        order = ["embedding_pass", "nchw", "nhwc"]
        for repeat in range(args.repeats):
            for kind in order if repeat % 2 == 0 else reversed(order):
                times[kind].append(run_pass() if kind == "embedding_pass" else run_plain(kind))
    rate = {k: round(len(images) / float(np.median(v)), 2) for k, v in times.items()}
    best = max(rate["nchw"], rate["nhwc"])
    print(
        json.dumps(
            {
                "benchmark": "embed_speed",
                "model": args.model,
                "images": len(images),
                "batch_size": args.batch_size,
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "images_per_s": rate,
                "embedding_pass_over_best_plain_pytorch": round(rate["embedding_pass"] / best, 3),
                "targets": {"at_least_95_percent": rate["embedding_pass"] >= 0.95 * best},
            }
        )
    )


if __name__ == "__main__":
    main()
