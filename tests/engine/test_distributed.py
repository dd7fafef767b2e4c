"""Data-parallel training in two gloo processes on the CPU (what torchrun does on GPUs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from igfiqa.checkpoint import load_checkpoint
from igfiqa.engine.trainer import Trainer, train

from ._dist import run_gloo
from ._tiny import TensorFaces, tiny_config


def _same_on_all_ranks(tensor: torch.Tensor) -> bool:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return all(torch.equal(parts[0], p) for p in parts[1:])


def _worker(rank: int, world: int, root: str) -> None:
    for sharded in (False, True):
        out = Path(root) / ("sharded" if sharded else "replicated")
        config = tiny_config(
            f"head.sharded={str(sharded).lower()}", "method.objective.fiqa_batch=duplicate"
        )
        trainer = Trainer(config, out, max_steps=3, progress=False, dataset=TensorFaces())
        assert trainer.info.world_size == 2 and trainer.info.rank == rank
        result = trainer.run()
        assert result.step == 3
        # The guidance statistic saw the (label, CCS) pairs of both ranks and is identical.
        assert trainer.guidance.seen.sum() > 0
        assert _same_on_all_ranks(trainer.guidance.values)
        assert _same_on_all_ranks(trainer.guidance.seen.to(torch.uint8))
        # DDP kept the backbone identical; a replicated head too, a sharded one is split.
        for param in trainer.model.parameters():
            assert _same_on_all_ranks(param.detach())
        if sharded:
            assert trainer.head.weight.shape[0] == 3  # 6 classes over 2 ranks
        else:
            assert _same_on_all_ranks(trainer.head.weight.detach())
        dist.barrier()


@pytest.mark.slow  # two spawned processes: ~10 s on a loaded 2-core machine
def test_two_process_training_keeps_ranks_in_step_and_writes_from_rank_0(tmp_path) -> None:
    run_gloo(_worker, 2, str(tmp_path))
    for name in ("replicated", "sharded"):
        records = [
            json.loads(line)
            for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["kind"] for r in records].count("start") == 1  # rank 0 only
        assert records[0]["world_size"] == 2
        assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    state = load_checkpoint(tmp_path / "sharded" / "checkpoints" / "step_00000003.pt")
    replicated = load_checkpoint(tmp_path / "replicated" / "checkpoints" / "step_00000003.pt")
    # Sharded and replicated heads are the same maths: same seed and data, same weights after
    # 3 steps (up to float summation order), backbone and prototypes alike.
    for key, value in replicated["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(state["model"][key], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        state["head"]["weight"], replicated["head"]["weight"], rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(state["guidance"]["values"], replicated["guidance"]["values"])
    assert state["world_size"] == 2
    assert state["head"]["weight"].shape == (6, 16)  # the full matrix, assembled from shards
    assert state["optimizer"]["head"]["state"][0]["momentum_buffer"].shape == (6, 16)
    # Resume the sharded two-process run in one process: the head is re-split (here: unsplit).
    config = tiny_config("head.sharded=true", "method.objective.fiqa_batch=duplicate")
    result = train(
        config,
        out_dir=tmp_path / "sharded",
        resume=True,
        max_steps=8,
        progress=False,
        dataset=TensorFaces(),
    )
    assert result.step == 8  # 3 steps of 16 images = 6 steps of 8, then 2 more
    after = load_checkpoint(result.checkpoint)
    assert after["world_size"] == 1 and after["head"]["weight"].shape == (6, 16)
