"""Throughput of `igfiqa score` end to end versus the network alone (torch fp32, torch bf16, ORT).

End to end = the scoring pipeline the CLI runs after loading the model (:func:`score_inputs`): list
the folder, decode the JPEGs in the thread pool, normalise, batch, run the network, write and flush
CSV rows. Model alone = the same network on already-normalised float32 batches. Both are timed after
one warm-up batch, on a folder of 112x112 JPEGs rendered from the synthetic faces; the two are
measured alternately on chunks of the images (ABBA order) and summarised by the median time per
image over the chunks, so that bursts of load from other processes, which hit single chunks, do not
decide the result (the per-chunk times and the mean-based ratio are in the JSON too).

    python benchmarks/score_speed.py --images 512 --batch-size 64 --model r50
    python benchmarks/score_speed.py --kind magface --model r100   # any quality kind's file layout

``--kind`` writes a randomly initialised model in that kind's released file layout (crfiqa,
magface, diffiqa-r, ediffiqa, sddfiqa; ``--model`` picks the iResNet, SDD-FIQA is always IR-50)
and compares igfiqa's scoring of it with the same network (as that kind builds it, authors' input
convention included) run in plain PyTorch.

Prints one JSON object as the last line. Numbers measured while other jobs use the CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from igfiqa.data.pixels import normalise_batch
from igfiqa.inference import load_model
from igfiqa.inference.export import export_model
from igfiqa.inference.preprocess import to_rgb_array
from igfiqa.inference.scorer import ResultWriter, collect_inputs, score_inputs
from igfiqa.models import create_model


def make_folder(folder: Path, count: int, size: int) -> None:
    from igfiqa.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(max(1, count // 8), 8, seed=7, image_size=size)
    for index in range(count):
        image, _ = faces.render(*faces.locate(index % len(faces)))
        cv2.imwrite(
            str(folder / f"{index:05d}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90]
        )


def _set_batch_norm_statistics(network: torch.nn.Module) -> torch.nn.Module:
    """BN statistics from one random batch (sane activations for a randomly initialised network)."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    network.train()
    with torch.no_grad():
        network(torch.rand(8, 3, 112, 112) * 2 - 1)
    return network.eval()


def make_model(name: str, path: Path, kind: str = "crfiqa") -> None:
    """A randomly initialised model of ``kind`` saved in its authors' file layout."""
    torch.manual_seed(0)
    if kind == "sddfiqa":
        from igfiqa.models.irse import SDDFIQANet

        state = _set_batch_norm_statistics(SDDFIQANet(50)).state_dict()
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
        return
    network = _set_batch_norm_statistics(
        create_model(name, input_size=112, quality_head=kind == "crfiqa")
    )
    state = network.state_dict()
    if kind == "crfiqa":
        torch.save(state, path)
    elif kind == "magface":
        torch.save({"state_dict": {f"features.module.{k}": v for k, v in state.items()}}, path)
    elif kind == "diffiqa-r":
        head = torch.nn.Linear(512, 1).state_dict()
        torch.save({**{f"base.{k}": v for k, v in state.items()},
                    **{f"linear.{k}": v for k, v in head.items()}}, path)  # fmt: skip
    elif kind == "ediffiqa":
        from igfiqa.models.scoring import MLPRegressor

        head = MLPRegressor(512, 1024).state_dict()
        torch.save({**{f"base_model.{k}": v for k, v in state.items()},
                    **{f"mlp.{k}": v for k, v in head.items()}}, path)  # fmt: skip
    else:
        raise SystemExit(f"--kind {kind}: choose crfiqa, magface, diffiqa-r, ediffiqa or sddfiqa")


def time_alone(model, batches: list[np.ndarray]) -> float:
    """Seconds for the network alone on already-normalised batches."""
    start = time.perf_counter()
    for batch in batches:
        model.forward_batch(batch)
    return time.perf_counter() - start


def plain_reference(path: Path, dtype: str, channels_last: bool) -> torch.nn.Module:
    """The same network in plain PyTorch, as a user would run it: no igfiqa runner, no folding
    (the network the kind builds from the file, its authors' input convention included)."""
    from igfiqa.inference.kinds import load_kind

    network = load_kind(path).network.eval()
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network


def time_plain(network, batches: list[np.ndarray], dtype: str, channels_last: bool) -> float:
    """Seconds for plain PyTorch (bf16 through autocast) on already-normalised batches."""
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bfloat16"):
        for batch in batches:
            x = torch.from_numpy(batch)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            network(x)
    return time.perf_counter() - start


def time_end_to_end(model, listing: Path, out: Path, batch_size: int, workers: int | None) -> float:
    """Seconds for the scoring pipeline on the images of a list file (list, decode, ..., CSV rows)."""
    start = time.perf_counter()
    items = collect_inputs([listing])
    with ResultWriter(out, overwrite=True) as writer:
        summary = score_inputs(model, items, writer, batch_size=batch_size, workers=workers)
    elapsed = time.perf_counter() - start
    assert summary.failed == 0 and summary.scored == len(items)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="r50")
    parser.add_argument("--kind", default="crfiqa", help="file layout of a quality kind")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--backends", default="torch_fp32,torch_bf16,onnxruntime")
    parser.add_argument(
        "--chunk", type=int, default=1, help="batches per alternation of alone / end to end"
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "faces"
        folder.mkdir()
        make_folder(folder, args.images, 112)
        make_model(args.model, root / "backbone.pth", args.kind)
        if "onnxruntime" in backends:
            export_model(root / "backbone.pth", root / "export", onnx=True, reference=None)
        paths = sorted(folder.iterdir())
        images = [to_rgb_array(path) for path in paths]
        # Chunks of `chunk` batches; the two measurements alternate chunk by chunk (ABBA order), so
        # that load from other processes drifting over time hits both alike.
        step = args.batch_size * args.chunk
        chunks = []
        for index, start in enumerate(range(0, len(paths), step)):
            listing = root / f"chunk_{index}.txt"
            listing.write_text("".join(f"faces/{p.name}\n" for p in paths[start : start + step]))
            batches = [
                normalise_batch(images[i : i + args.batch_size])
                for i in range(start, min(start + step, len(paths)), args.batch_size)
            ]
            chunks.append((listing, batches))
        for backend in backends:
            if backend == "onnxruntime":
                model = load_model(root / "export", backend="onnx")
            else:
                dtype = "bfloat16" if backend == "torch_bf16" else "float32"
                model = load_model(root / "backbone.pth", dtype=dtype)
            model.forward_batch(chunks[0][1][0])  # warm-up (primitive creation, allocations)
            torch_dtype = "bfloat16" if backend == "torch_bf16" else "float32"
            plain = {
                layout: plain_reference(root / "backbone.pth", torch_dtype, layout == "nhwc")
                for layout in ("nchw", "nhwc")
            }
            for layout, network in plain.items():  # warm-up
                time_plain(network, chunks[0][1][:1], torch_dtype, layout == "nhwc")
            alone, e2e = [], []  # seconds per image, chunk by chunk
            reference: dict[str, list[float]] = {layout: [] for layout in plain}
            for index, (listing, batches) in enumerate(chunks):
                out = root / f"{backend}_{index}.csv"
                count = sum(len(batch) for batch in batches)
                order = ["alone", "end_to_end", *plain]
                for kind in order if index % 2 == 0 else reversed(order):
                    if kind == "alone":
                        alone.append(time_alone(model, batches) / count)
                    elif kind == "end_to_end":
                        seconds = time_end_to_end(
                            model, listing, out, args.batch_size, args.workers
                        )
                        e2e.append(seconds / count)
                    else:
                        seconds = time_plain(plain[kind], batches, torch_dtype, kind == "nhwc")
                        reference[kind].append(seconds / count)
            best_layout = min(reference, key=lambda lay: float(np.median(reference[lay])))
            best = float(np.median(reference[best_layout]))
            results[backend] = {
                "model_alone_images_per_s": round(1 / float(np.median(alone)), 2),
                "end_to_end_images_per_s": round(1 / float(np.median(e2e)), 2),
                "end_to_end_over_alone": round(float(np.median(alone) / np.median(e2e)), 3),
                "mean_based_end_to_end_over_alone": round(float(np.mean(alone) / np.mean(e2e)), 3),
                "plain_pytorch_images_per_s": {
                    lay: round(1 / float(np.median(v)), 2) for lay, v in reference.items()
                },
                "end_to_end_over_best_plain_pytorch": round(best / float(np.median(e2e)), 3),
                "best_plain_layout": best_layout,
                "chunk_seconds_per_image_alone": [round(v, 4) for v in alone],
                "chunk_seconds_per_image_end_to_end": [round(v, 4) for v in e2e],
            }
            print(backend, results[backend], flush=True)
    summary = {
        "benchmark": "score_speed",
        "model": args.model,
        "kind": args.kind,
        "images": args.images,
        "batch_size": args.batch_size,
        "chunk_batches": args.chunk,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        **results,
        "targets": {
            "end_to_end_at_least_95_percent_of_best_plain_pytorch": {
                name: value["end_to_end_over_best_plain_pytorch"] >= 0.95
                for name, value in results.items()
                if "end_to_end_over_best_plain_pytorch" in value
            },
            "end_to_end_within_15_percent": {
                name: value["end_to_end_over_alone"] >= 0.85 for name, value in results.items()
            },
            "onnxruntime_at_least_torch_fp32": (
                results["onnxruntime"]["model_alone_images_per_s"]
                >= results["torch_fp32"]["model_alone_images_per_s"]
                if {"onnxruntime", "torch_fp32"} <= set(results)
                else None
            ),
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
