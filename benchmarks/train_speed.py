"""Training throughput (images/s) of the real training step, on synthetic tensors (no data loading).

Each configuration builds the engine's :class:`~igfiqa.engine.trainer.Trainer` (model, margin head,
SGD, schedule, AMP, guidance, augmentation, optional torch.compile) and times
``Trainer.train_step`` on random images already on the device: warm-up steps first, then as many
timed steps as fit in ``--seconds`` (at least ``--min-steps``).

CPU (default): iResNet-18 and -50 at batch 32, fp32 / bf16 / channels_last, CR-FIQA mode::

    python benchmarks/train_speed.py

GPU (see benchmarks/gpu.sh): iResNet-50/100, bf16 + channels_last (+ compile), batch 128/256,
CR-FIQA and IG-FIQA duplicate/split, peak memory::

    python benchmarks/train_speed.py --device cuda --models r50,r100 --batches 128,256 \\
        --variants bf16_cl --modes crfiqa,duplicate,split --compile-variants bf16_cl_compile

Prints one JSON object per configuration as it goes and a summary JSON object as the last line.
Numbers measured while other processes use the CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from typing import Any

import torch

from igfiqa.config import load_config
from igfiqa.engine.trainer import Trainer

VARIANTS = {
    "fp32": {"train.amp": "none", "train.channels_last": "false", "train.compile": "false"},
    "bf16": {"train.amp": "bf16", "train.channels_last": "false", "train.compile": "false"},
    "channels_last": {"train.amp": "none", "train.channels_last": "true", "train.compile": "false"},
    "bf16_cl": {"train.amp": "bf16", "train.channels_last": "true", "train.compile": "false"},
    "bf16_cl_compile": {
        "train.amp": "bf16",
        "train.channels_last": "true",
        "train.compile": "true",
    },
}
MODES = {
    "crfiqa": [
        "method.guidance.enabled=false",
        "method.augment.enabled=false",
        "method.objective.fiqa_batch=same",
    ],
    "duplicate": ["method.objective.fiqa_batch=duplicate"],
    "split": ["method.objective.fiqa_batch=split", "method.objective.split_ratio=0.5"],
}
DEFAULT_CLASSES = {"r18": 10572, "r50": 10572, "r100": 85742}


class _Shapes:
    """Stands in for a dataset: only its length and class count are read."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.class_names = [str(i) for i in range(num_classes)]

    def __len__(self) -> int:
        return 10_000_000


def measure(
    model: str,
    batch: int,
    variant: str,
    mode: str,
    *,
    device: str,
    tiny: bool,
    num_classes: int,
    seconds: float,
    warmup: int,
    min_steps: int,
) -> dict[str, Any]:
    overrides = [
        f"model.name={model}",
        f"data.batch_size={batch}",
        f"train.device={device}",
        "verification.sets=[]",
        "logging.progress=false",
        *[f"{k}={v}" for k, v in VARIANTS[variant].items()],
        *MODES[mode],
    ]
    size = 112
    if tiny:
        size = 32
        overrides += ["model.input_size=32", "model.width=0.125", "model.num_features=32"]
    config = load_config("casia_r50", overrides=overrides)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out, progress=False, dataset=_Shapes(num_classes))
        dev = trainer.device
        generator = torch.Generator(device="cpu").manual_seed(0)
        images = (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(dev)
        if config.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, num_classes, (batch,), generator=generator).to(dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        start = time.perf_counter()
        for _ in range(warmup):
            trainer.train_step(images, labels)
        sync()
        warmup_s = time.perf_counter() - start
        steps, start = 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - start < seconds:
            trainer.train_step(images, labels)
            steps += 1
            if steps % 5 == 0:
                sync()
        sync()
        elapsed = time.perf_counter() - start
        result = {
            "model": model,
            "batch": batch,
            "variant": variant,
            "mode": mode,
            "device": str(dev),
            "input_size": size,
            "num_classes": num_classes,
            "steps": steps,
            "seconds_per_step": elapsed / steps,
            "images_per_s": batch * steps / elapsed,
            "warmup_s": warmup_s,
        }
        if dev.type == "cuda":
            result["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        del trainer
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", default="r18,r50")
    parser.add_argument("--batches", default="32")
    parser.add_argument("--variants", default="fp32,bf16,channels_last")
    parser.add_argument("--modes", default="crfiqa")
    parser.add_argument(
        "--compile-variants", default="", help="variants run only for the largest batch, last"
    )
    parser.add_argument("--compile-modes", default="duplicate")
    parser.add_argument("--num-classes", type=int, default=0, help="0 = by model (CASIA/MS1MV2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per config")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-steps", type=int, default=2)
    parser.add_argument(
        "--budget", type=float, default=math.inf, help="total seconds; skip the rest"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--tiny", action="store_true", help="tiny models at 32x32 (smoke test)")
    parser.add_argument("--out", default="", help="also write the summary JSON here")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        summary = {"benchmark": "train_speed", "error": "CUDA is not available on this machine"}
        print(json.dumps(summary))
        return summary
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    models = [m for m in args.models.split(",") if m]
    batches = [int(b) for b in args.batches.split(",") if b]
    plan = [
        (model, batch, variant, mode)
        for model in models
        for batch in batches
        for variant in args.variants.split(",")
        if variant
        for mode in args.modes.split(",")
        if mode
    ]
    plan += [
        (model, max(batches), variant, mode)
        for model in models
        for variant in args.compile_variants.split(",")
        if variant
        for mode in args.compile_modes.split(",")
        if mode
    ]
    started = time.perf_counter()
    results, skipped, failed = [], [], []
    summary: dict[str, Any] = {}
    for model, batch, variant, mode in plan:
        name = f"{model}/b{batch}/{variant}/{mode}"
        if time.perf_counter() - started > args.budget:
            skipped.append(name)
            continue
        classes = args.num_classes or DEFAULT_CLASSES.get(model, 10572)
        try:
            result = measure(
                model, batch, variant, mode, device=args.device, tiny=args.tiny,
                num_classes=classes, seconds=args.seconds, warmup=args.warmup,
                min_steps=args.min_steps,
            )  # fmt: skip
        except Exception as error:  # keep going: one failing config must not lose the others
            failed.append({"config": name, "error": f"{type(error).__name__}: {error}"[:300]})
            if args.device == "cuda":
                torch.cuda.empty_cache()
            continue
        results.append(result)
        print(json.dumps(result), flush=True)
        summary = {
            "benchmark": "train_speed",
            "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "images_per_s": {
                f"{r['model']}/b{r['batch']}/{r['variant']}/{r['mode']}": round(
                    r["images_per_s"], 2
                )
                for r in results
            },
            "peak_memory_gib": {
                f"{r['model']}/b{r['batch']}/{r['variant']}/{r['mode']}": round(
                    r["peak_memory_gib"], 2
                )
                for r in results
                if "peak_memory_gib" in r
            },
            "skipped_for_time": skipped,
            "failed": failed,
            "elapsed_s": round(time.perf_counter() - started, 1),
        }
        if args.out:
            with open(args.out, "w", encoding="utf-8") as handle:
                json.dump(summary, handle)
    summary.update(skipped_for_time=skipped, failed=failed,
                   elapsed_s=round(time.perf_counter() - started, 1))  # fmt: skip
    summary.setdefault("benchmark", "train_speed")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main().get("images_per_s") else 1)
