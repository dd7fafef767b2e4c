"""Training loop: exact resume, checkpoints, non-finite steps, signals, logging."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from igfiqa.checkpoint import REQUIRED_KEYS, list_checkpoints, load_checkpoint
from igfiqa.engine.trainer import NonFiniteLossError, train
from igfiqa.errors import CheckpointError

from ._tiny import PoisonedFaces, TensorFaces, tiny_config


def _final_state(run_dir):
    path = list_checkpoints(run_dir / "checkpoints")[-1][1]
    return load_checkpoint(path)


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["head"]["weight"], b["head"]["weight"])
    if a["guidance"] is not None:
        assert torch.equal(a["guidance"]["values"], b["guidance"]["values"])
        assert torch.equal(a["guidance"]["seen"], b["guidance"]["seen"])
        assert a["guidance"]["momentum"] == b["guidance"]["momentum"]
    sa, sb = a["optimizer"]["backbone"]["state"], b["optimizer"]["backbone"]["state"]
    for key in sa:
        assert torch.equal(sa[key]["momentum_buffer"], sb[key]["momentum_buffer"])
    assert a["sampler"] == b["sampler"]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bitwise_identical_to_uninterrupted_run(tmp_path, workers) -> None:
    """N steps + resume + N steps == 2N steps (weights, guidance, optimizer, sampler), mid-epoch."""
    config = tiny_config(f"data.num_workers={workers}", "method.objective.fiqa_batch=duplicate")
    n = 4  # 5 steps per epoch: the first run stops mid-epoch, the second crosses an epoch end
    full = train(config, out_dir=tmp_path / "full", max_steps=2 * n, progress=False)
    first = train(config, out_dir=tmp_path / "resumed", max_steps=n, progress=False)
    assert first.stopped == "max_steps" and first.step == n
    second = train(
        config, out_dir=tmp_path / "resumed", resume=True, max_steps=2 * n, progress=False
    )
    assert second.step == full.step == 2 * n
    _assert_bitwise_equal(_final_state(tmp_path / "full"), _final_state(tmp_path / "resumed"))
    assert not torch.are_deterministic_algorithms_enabled()  # train() restored the global switch
    # The guidance really moved and the augmentation ran (duplicate mode).
    state = _final_state(tmp_path / "full")
    assert state["guidance"]["seen"].any() and state["augment"] is not None


def test_checkpoint_contents_and_weights_only_loading(tmp_path) -> None:
    config = tiny_config("checkpoint.every_steps=2", "checkpoint.keep=2")
    result = train(config, out_dir=tmp_path, max_steps=6, progress=False)
    steps = [step for step, _ in list_checkpoints(tmp_path / "checkpoints")]
    assert steps == [5, 6]  # every 2 steps + the epoch end (5); keep=2 removed steps 2 and 4
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.suffix == ".tmp"]
    payload = torch.load(result.checkpoint, weights_only=True)
    assert set(REQUIRED_KEYS) <= set(payload)
    assert payload["format"] == "igfiqa.checkpoint" and payload["format_version"] == 1
    assert payload["model_spec"] == config.model.spec()
    assert "qs.weight" in payload["model"]
    assert payload["config"]["method"]["guidance"]["statistic"] == "distance"
    assert payload["step"] == 6 and payload["epoch"] == 1
    assert payload["sampler"]["position"] == 8  # one global batch into epoch 1
    assert len(payload["class_names"]) == 10
    # The saved config and the metrics log are in the run folder.
    assert (tmp_path / "config.yaml").is_file()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "start" and kinds[-1] == "end"
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert all(r["images_per_s"] > 0 and "fr_loss" in r and "lr" in r for r in train_records)


def test_wrong_or_corrupt_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    corrupt = folder / "step_00000009.pt"
    corrupt.write_bytes(b"\x80\x02 this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"step_00000009\.pt"):
        load_checkpoint(corrupt)
    other = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=r"weights\.pt.*not an igfiqa training checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match=r"step_00000009\.pt"):
        train(tiny_config(), out_dir=tmp_path / "run", resume=True, progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_config(), out_dir=tmp_path / "empty", resume=True, progress=False)


def test_non_finite_loss_skips_the_step_and_is_logged(tmp_path) -> None:
    batch = 8
    data = PoisonedFaces(range(2 * batch, 3 * batch))  # the third step sees NaN images
    config = tiny_config("method.objective.fiqa_batch=same", "method.augment.enabled=false")
    result = train(config, out_dir=tmp_path, max_steps=4, progress=False, dataset=data)
    assert result.nonfinite_steps == 1 and result.step == 4
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r["kind"] == "nonfinite"]
    assert [(r["step"], r["in_a_row"], r["total"]) for r in skipped] == [(3, 1, 1)]
    state = load_checkpoint(result.checkpoint)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert torch.isfinite(state["guidance"]["values"]).all()


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_too_many_non_finite_steps_in_a_row_abort_with_a_clear_message(tmp_path) -> None:
    data = PoisonedFaces(range(8, 10_000))  # every step from the second one on
    config = tiny_config("train.max_nonfinite_in_a_row=3")
    with pytest.raises(NonFiniteLossError, match="3 steps in a row had a non-finite loss"):
        train(config, out_dir=tmp_path, max_steps=10, progress=False, dataset=data)


class _SignalFaces(TensorFaces):
    """Sends SIGTERM to this process while the third batch is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __getitem__(self, index: int):
        self.calls += 1
        if self.calls == 2 * 8 + 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(index)


def test_sigterm_finishes_the_step_saves_and_returns(tmp_path) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    result = train(
        tiny_config(), out_dir=tmp_path, max_steps=20, progress=False, dataset=_SignalFaces()
    )
    assert result.stopped == "signal" and result.signum == signal.SIGTERM  # CLI exits 143
    assert result.step == 3  # the step whose batch was loading when the signal came
    assert load_checkpoint(result.checkpoint)["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    # and the run continues from there
    again = train(
        tiny_config(),
        out_dir=tmp_path,
        resume=True,
        max_steps=5,
        progress=False,
        dataset=TensorFaces(),
    )
    assert again.step == 5 and again.stopped == "max_steps"


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_and_channels_last_train_on_cpu(tmp_path, amp) -> None:
    config = tiny_config(
        f"train.amp={amp}", "train.channels_last=true", "train.deterministic=false"
    )
    result = train(config, out_dir=tmp_path, max_steps=2, progress=False, dataset=TensorFaces())
    assert result.step == 2
    assert all(
        torch.isfinite(v).all()
        for v in load_checkpoint(result.checkpoint)["model"].values()
        if v.is_floating_point()
    )


@pytest.mark.parametrize("trainable", [False, True])
def test_embedding_bn_scale_trains_only_when_switched_on(tmp_path, trainable) -> None:
    """optim.train_embedding_bn_scale: the official CR-FIQA training lets features.weight train."""
    config = tiny_config(f"optim.train_embedding_bn_scale={str(trainable).lower()}")
    train(config, out_dir=tmp_path, max_steps=3, progress=False)
    state = _final_state(tmp_path)
    scale = state["model"]["features.weight"]
    assert torch.equal(scale, torch.ones_like(scale)) is not trainable
    moved = state["model"]["features.bias"]  # the shift trains in both cases
    assert not torch.equal(moved, torch.zeros_like(moved))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_is_a_config_error(tmp_path) -> None:
    from igfiqa.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"train\.device: 'cuda' requested but CUDA is not available"
    ):
        train(tiny_config("train.device=cuda"), out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_file_as_run_folder_is_a_config_error(tmp_path) -> None:
    from igfiqa.errors import ConfigError

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="afile exists and is not a folder"):
        train(tiny_config(), out_dir=afile, max_steps=1, progress=False)


def _steps_logged(run_dir) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r.get("kind") == "train"]


def test_resume_after_a_kill_logs_each_step_once(tmp_path) -> None:
    """kill -9 after the last checkpoint: the steps after it are dropped from metrics.jsonl."""
    config = tiny_config(
        "checkpoint.every_steps=2", "checkpoint.at_epoch_end=false", "logging.every_steps=1"
    )
    train(config, out_dir=tmp_path, max_steps=4, progress=False)
    # simulate the kill: the checkpoint of step 4 never landed, and the log has a torn last line
    (tmp_path / "checkpoints" / "step_00000004.pt").unlink()
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind": "train", "st')
    torn = tmp_path / "checkpoints" / ".step_00000004.pt.abc123.tmp"  # the half-written save
    torn.write_bytes(b"partial")
    train(config, out_dir=tmp_path, resume=True, max_steps=5, progress=False)
    assert not torn.exists()
    steps = _steps_logged(tmp_path)
    assert steps == sorted(set(steps)) and steps[-1] == 5 and 3 in steps and 4 in steps


def test_resuming_a_finished_run_keeps_its_final_checkpoint(tmp_path) -> None:
    config = tiny_config()
    done = train(config, out_dir=tmp_path, max_steps=3, progress=False)
    before = done.checkpoint.read_bytes()
    again = train(config, out_dir=tmp_path, resume=True, max_steps=3, progress=False)
    assert again.checkpoint == done.checkpoint and done.checkpoint.read_bytes() == before
    assert again.metrics == done.metrics


def test_a_folder_with_another_runs_files_is_refused(tmp_path) -> None:
    from igfiqa.errors import ConfigError

    (tmp_path / "config.yaml").write_text("name: other\n")
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(ConfigError, match=r"holds another run's config\.yaml and metrics\.jsonl"):
        train(tiny_config(), out_dir=tmp_path, max_steps=1, progress=False)
    assert (tmp_path / "config.yaml").read_text() == "name: other\n"


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    from igfiqa.errors import ConfigError
    from igfiqa.files import LOCK_FILE

    lock = tmp_path / LOCK_FILE
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(
            ConfigError, match=rf"in use by another igfiqa process \(PID {holder.pid}"
        ):
            train(tiny_config(), out_dir=tmp_path, max_steps=1, progress=False)
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its lock is stale and taken over; released at the end
    result = train(tiny_config(), out_dir=tmp_path, max_steps=1, progress=False)
    assert result.step == 1 and not lock.exists()
