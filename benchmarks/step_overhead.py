"""Training-step overhead of IG-FIQA over CR-FIQA on this CPU (tiny iResNet, batch 64).

Measures, in one run with the modes interleaved round by round (so that load from other processes
hits every mode alike), the median wall time of one full training step (forward, loss, backward,
SGD update) for:

- ``crfiqa``: ``fiqa_batch=same``, no guidance, no augmentation (CR-FIQA);
- ``ig_duplicate``: ``duplicate`` + guidance + augmentation (the IG-FIQA default);
- ``ig_split``: ``split`` (ratio 0.5) + guidance + augmentation;
- ``ig_split_noaug``: ``split`` + guidance, augmentation off (isolates the augmentation's cost);

and, separately, the guidance update (``update`` + ``weights`` + ``zero_weight_share``) for this run's
class count and for MS1MV2's 85,742 classes with a batch of 512, and the augmentation of the
quality half-batch. ``guidance_share`` = guidance time / ``ig_split_step_s`` (the cheaper IG step,
so the larger share). The last stdout line is one JSON object.

Usage: ``python benchmarks/step_overhead.py [--steps 15] [--warmup 3] [--threads 1]``

One intra-op thread by default: on a small shared CPU, more threads make the timings of these tiny
networks depend on other processes' load (each parallel region waits for a busy core), which
penalises modes with more, smaller operations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from igfiqa.method.augment import AugmentConfig, QualityAugmentation
from igfiqa.method.guidance import IntraClassGuidance
from igfiqa.method.objective import ObjectiveConfig, compute_objective
from igfiqa.models import create_model
from igfiqa.models.heads import MarginHead

BATCH = 64
NUM_CLASSES = 1000
MODEL = {"name": "r18", "width": 0.25, "input_size": 56, "num_features": 128}


def build(seed: int):
    torch.manual_seed(seed)
    model = create_model(MODEL["name"], **{k: v for k, v in MODEL.items() if k != "name"})
    head = MarginHead(MODEL["num_features"], NUM_CLASSES)
    optimizer = torch.optim.SGD(
        [*model.parameters(), *head.parameters()], lr=0.01, momentum=0.9, weight_decay=5e-4
    )
    return model, head, optimizer


def make_step(mode: str, augment_on: bool, guided: bool, seed: int):
    model, head, optimizer = build(seed)
    config = ObjectiveConfig(fiqa_batch=mode)
    augment = QualityAugmentation(AugmentConfig(), seed=seed) if augment_on else None
    guidance = IntraClassGuidance(NUM_CLASSES) if guided else None
    if guidance is not None:
        guidance.set_epoch(0, 10)

    def step(images: torch.Tensor, labels: torch.Tensor) -> float:
        start = time.perf_counter()
        out = compute_objective(
            model, head, images, labels, config, guidance=guidance, augment=augment
        )
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def time_guidance(num_classes: int, batch: int, repeats: int) -> float:
    guidance = IntraClassGuidance(num_classes)
    guidance.set_epoch(1, 10)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        labels = torch.randint(0, num_classes, (batch,), generator=generator)
        ccs = torch.rand(batch, generator=generator) * 2 - 1
        start = time.perf_counter()
        guidance.update(labels, ccs)
        guidance.weights(labels)
        guidance.zero_weight_share()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_augment(batch: int, repeats: int) -> float:
    augment = QualityAugmentation(AugmentConfig(), seed=0)
    size = MODEL["input_size"]
    images = torch.rand(batch, 3, size, size) * 2 - 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        augment(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 = stable on a shared CPU; 0 = torch's default)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    size = MODEL["input_size"]
    generator = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.rand(BATCH, 3, size, size, generator=generator) * 2 - 1,
            torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator),
        )
        for _ in range(4)
    ]
    modes = {
        "crfiqa": make_step("same", augment_on=False, guided=False, seed=0),
        "ig_duplicate": make_step("duplicate", augment_on=True, guided=True, seed=0),
        "ig_split": make_step("split", augment_on=True, guided=True, seed=0),
        "ig_split_noaug": make_step("split", augment_on=False, guided=True, seed=0),
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    for round_index in range(args.warmup + args.steps):
        images, labels = batches[round_index % len(batches)]
        for name, step in modes.items():
            elapsed = step(images, labels)
            if round_index >= args.warmup:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}

    guidance_s = time_guidance(NUM_CLASSES, BATCH, 200)
    guidance_large_s = time_guidance(85742, 512, 50)
    augment_half_s = time_augment(BATCH // 2, 20)
    augment_full_s = time_augment(BATCH, 20)
    result = {
        "benchmark": "step_overhead",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "model": MODEL,
        "batch": BATCH,
        "num_classes": NUM_CLASSES,
        "steps": args.steps,
        "crfiqa_step_s": medians["crfiqa"],
        "ig_duplicate_step_s": medians["ig_duplicate"],
        "ig_split_step_s": medians["ig_split"],
        "ig_split_noaug_step_s": medians["ig_split_noaug"],
        "split_vs_crfiqa": medians["ig_split"] / medians["crfiqa"] - 1.0,
        "split_noaug_vs_crfiqa": medians["ig_split_noaug"] / medians["crfiqa"] - 1.0,
        "duplicate_vs_crfiqa": medians["ig_duplicate"] / medians["crfiqa"] - 1.0,
        "augment_half_batch_s": augment_half_s,
        "augment_full_batch_s": augment_full_s,
        "guidance_update_s": guidance_s,
        "guidance_share": guidance_s / medians["ig_split"],
        "guidance_share_of_duplicate": guidance_s / medians["ig_duplicate"],
        "guidance_update_85742_classes_batch512_s": guidance_large_s,
    }
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.4f} s over {len(values)} steps")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
