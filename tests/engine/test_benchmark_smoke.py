"""The GPU benchmark's Python part runs on the CPU with tiny models (gpu.sh's own arguments)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gpu_sh_arguments() -> list[str]:
    text = (ROOT / "benchmarks" / "gpu.sh").read_text()
    command = re.search(r"python benchmarks/train_speed\.py(.*?)--out", text, re.DOTALL)
    assert command, "gpu.sh must call benchmarks/train_speed.py"
    return shlex.split(command.group(1).replace("\\\n", " "))


def test_gpu_benchmark_arguments_run_on_cpu_with_tiny_models(capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        "train_speed", ROOT / "benchmarks" / "train_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = _gpu_sh_arguments()
    assert "--device" in args and "cuda" in args
    # Same configurations as on the GPU, but tiny, one step each, no compile (minutes on a CPU).
    cpu = ["--device", "cpu", "--tiny", "--models", "r18", "--batches", "8,16",
           "--compile-variants", "", "--seconds", "0", "--warmup", "1", "--min-steps", "1",
           "--num-classes", "50"]  # fmt: skip
    summary = module.main([*args, *cpu])
    assert set(summary["images_per_s"]) == {
        f"r18/b{b}/bf16_cl/{mode}" for b in (8, 16) for mode in ("crfiqa", "duplicate", "split")
    }
    assert all(v > 0 for v in summary["images_per_s"].values())
    assert summary["failed"] == [] and summary["skipped_for_time"] == []
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("{") and '"benchmark": "train_speed"' in last
