"""Training loop: exact resume, checkpoints, non-finite steps, signals, logging."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import torch

from igfiqa.checkpoint import REQUIRED_KEYS, list_checkpoints, load_checkpoint
from igfiqa.engine.trainer import NonFiniteLossError, train
from igfiqa.errors import CheckpointError

from ._tiny import SPEC, PoisonedFaces, TensorFaces, tiny_config


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
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"]
    )  # killed below
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


# ----------------------------------------------------------------------- issue 25 (items 8, 9, 12, 14)
def _strict_records(path) -> list[dict]:
    """metrics.jsonl parsed as strict JSON (a bare NaN / Infinity is refused)."""

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _all_finite(state: dict) -> bool:
    tensors = [*state["model"].values(), state["head"]["weight"]]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_a_diverging_learning_rate_stops_without_saving_non_finite_weights(tmp_path) -> None:
    """Item 8: a huge optim.lr made NaN weights that were saved; now the run stops with one line
    naming the step and the learning rate, and writes no checkpoint of them."""
    config = tiny_config("optim.lr=1e38", "optim.grad_clip=null", "checkpoint.every_steps=1")
    with pytest.raises(NonFiniteLossError) as caught:
        train(config, out_dir=tmp_path, max_steps=4, progress=False, dataset=TensorFaces())
    message = str(caught.value)
    assert "\n" not in message
    assert "step 1: the weights are no longer finite" in message and "optim.lr=1e+38" in message
    assert "learning rate is too high" in message and "no checkpoint was written" in message
    assert list_checkpoints(tmp_path / "checkpoints") == []
    records = _strict_records(tmp_path / "metrics.jsonl")
    assert records[-1]["kind"] == "error" and records[-1]["step"] == 1
    assert not (tmp_path / ".igfiqa.lock").exists()


def _diverge_after(step: int, monkeypatch) -> None:
    """Make the optimizer step number ``step`` leave a NaN in the backbone's first weight."""
    from igfiqa.engine.trainer import Trainer

    original = Trainer.train_step

    def train_step(self, images, labels):
        metrics = original(self, images, labels)
        if self.step + 1 == step:
            with torch.no_grad():
                self.model.conv1.weight[0, 0, 0, 0] = float("nan")
        return metrics

    monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.mark.parametrize("detected_by", ["loss", "save"])
def test_divergence_keeps_the_last_good_checkpoint_newest(tmp_path, monkeypatch, detected_by):
    """The weights turn NaN in step 3: the loss of step 4 (or the save after step 3) finds them;
    the checkpoint of step 2 stays the newest and loads with finite weights."""
    _diverge_after(3, monkeypatch)
    every = 2 if detected_by == "loss" else 1
    config = tiny_config(f"checkpoint.every_steps={every}", "checkpoint.at_epoch_end=false")
    with pytest.raises(NonFiniteLossError, match=r"^step 3: .* first in model\.conv1\.weight"):
        train(config, out_dir=tmp_path, max_steps=5, progress=False, dataset=TensorFaces())
    found = list_checkpoints(tmp_path / "checkpoints")
    assert [step for step, _ in found][-1] == 2
    assert _all_finite(load_checkpoint(found[-1][1]))
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.suffix == ".tmp"]
    assert (
        "step_00000002.pt is the last good checkpoint"
        in _strict_records(tmp_path / "metrics.jsonl")[-1]["message"]
    )


def test_metrics_are_strict_json(tmp_path) -> None:
    """Item 8: metrics.jsonl held a bare `Infinity`."""
    from igfiqa.engine.run_log import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False)
    log.write({"kind": "train", "step": 1, "lr": float("inf"), "loss": float("nan")})
    log.close()
    assert _strict_records(tmp_path / "metrics.jsonl") == [
        {"kind": "train", "step": 1, "lr": "inf", "loss": None}
    ]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"RANK": "1"}, r"RANK=1 is set without WORLD_SIZE"),
        ({"RANK": "abc", "WORLD_SIZE": "2"}, r"RANK='abc' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, r"RANK=2 must be in 0\.\.1"),
        ({"WORLD_SIZE": "x"}, r"WORLD_SIZE='x' is not an integer"),
        ({"LOCAL_RANK": "0"}, r"LOCAL_RANK=0 is set without RANK and WORLD_SIZE"),
        ({"RANK": "0", "WORLD_SIZE": "2"}, r"WORLD_SIZE=2 is set without LOCAL_RANK"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, r"WORLD_SIZE=0 must be at least 1"),
        (
            {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
            r"LOCAL_RANK=2 must be in 0\.\.1",
        ),
    ],
)
def test_the_torchrun_environment_is_validated(variables, expected) -> None:
    """Item 9: the one reader of RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE."""
    from igfiqa.engine.distributed import LaunchEnv, launch_env
    from igfiqa.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"{expected}.*launch with torchrun or unset it$"):
        launch_env(variables)
    assert launch_env({}) == LaunchEnv(0, 1, 0, 1)
    full = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert launch_env(full) == LaunchEnv(3, 4, 1, 2)
    assert launch_env({"RANK": "0", "WORLD_SIZE": "1"}).is_main


@pytest.mark.parametrize("rank", ["1", "abc"])
def test_a_stray_rank_is_refused_before_any_work(tmp_path, monkeypatch, rank) -> None:
    """Item 9: `RANK=1` without WORLD_SIZE trained without the folder lock; `RANK=abc` was a
    traceback."""
    from igfiqa.errors import ConfigError

    monkeypatch.setenv("RANK", rank)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match=r"RANK.*launch with torchrun or unset it"):
        train(tiny_config(), out_dir=tmp_path / "run", max_steps=1, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "field"),
    [("data.num_workers=10000", "data.num_workers"), ("model.width=1000", "model")],
)
def test_resources_beyond_the_machine_are_refused_before_any_work(tmp_path, override, field):
    """Item 12: 10,000 workers started hundreds of processes; model.width=1000 an allocation
    traceback."""
    from igfiqa.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^{re.escape(field)}: "):
        train(tiny_config(override), out_dir=tmp_path / "run", max_steps=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_read_only_run_folder_is_an_output_error(tmp_path) -> None:
    """Item 14: a read-only output folder ended in a traceback (the lock file)."""
    from igfiqa.errors import OutputError

    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("the chmod does not bite (running as root)")
        with pytest.raises(OutputError, match=r"\.igfiqa\.lock: cannot create the lock file"):
            train(tiny_config(), out_dir=folder, max_steps=1, progress=False)
    finally:
        folder.chmod(0o700)


def test_a_lock_file_that_cannot_be_created_is_an_output_error(tmp_path, monkeypatch) -> None:
    """Item 14 (also as root): the lock file's OSError becomes one line naming it."""
    import errno

    from igfiqa.errors import OutputError
    from igfiqa.files import FolderLock

    def refuse(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.path))

    monkeypatch.setattr(FolderLock, "acquire", refuse)
    with pytest.raises(OutputError, match=r"\.igfiqa\.lock: cannot create the lock file \(Perm"):
        train(tiny_config(), out_dir=tmp_path / "run", max_steps=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_logging_is_an_output_error(tmp_path, monkeypatch) -> None:
    """Item 14: metrics.jsonl on a full disk."""
    import errno
    import io

    import igfiqa.engine.run_log as run_log
    from igfiqa.errors import OutputError

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_log, "open", lambda *a, **k: Full(), raising=False)
    with pytest.raises(OutputError, match=r"metrics\.jsonl: cannot write .*the disk is full"):
        train(tiny_config(), out_dir=tmp_path, max_steps=2, progress=False, dataset=TensorFaces())


@pytest.mark.parametrize("failure", ["runtime", "oserror"])
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(
    tmp_path, monkeypatch, failure
) -> None:
    """Item 14: a full disk while saving said "unexpected pos 765248 vs 765144", no word of the
    disk. Now: one line naming the file and the free bytes; the previous checkpoint stays valid
    and no temporary file remains."""
    import errno
    import shutil
    from collections import namedtuple

    from igfiqa.errors import OutputError

    config = tiny_config("checkpoint.every_steps=2", "checkpoint.at_epoch_end=false")
    save = torch.save
    calls = []

    def full_after_the_first(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return save(obj, handle, *args, **kwargs)
        handle.write(b"partial")
        if failure == "runtime":
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 765248 vs 765144"
            )
        raise OSError(errno.ENOSPC, "No space left on device")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full_after_the_first)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    expected = (
        r"step_00000004\.pt: cannot write the checkpoint \(the disk is full: 4,096 bytes free"
        if failure == "runtime"
        else r"step_00000004\.pt: cannot write \(No space left on device\); the disk is full"
    )
    with pytest.raises(OutputError, match=expected) as caught:
        train(config, out_dir=tmp_path, max_steps=5, progress=False, dataset=TensorFaces())
    assert "\n" not in str(caught.value)
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000002.pt"]
    monkeypatch.setattr(torch, "save", save)
    assert load_checkpoint(folder / "step_00000002.pt")["step"] == 2


# ------------------------------------------------------------------ text log (issue 26 item 4)
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
STEP_LINE = re.compile(
    rf"^({STAMP}) step (\d+)/(\d+) epoch (\d+)/(\d+) loss (\S+) lr (\S+) img/s (\S+) "
    r"eta (\d+:\d\d:\d\d)$"
)


def _text_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if re.match(STAMP + " ", line)]


def test_without_a_terminal_training_writes_a_text_line_every_n_steps(tmp_path, capsys) -> None:
    """stderr is not a terminal (captured): a line every 2 steps, at the start, the epoch end
    (4 steps per epoch), the end and on resume; a bar asked for is not shown, so lines replace it."""
    config = tiny_config("logging.stderr_every_steps=2", "logging.progress=true")
    train(config, out_dir=tmp_path, max_steps=3, progress=True, dataset=TensorFaces())
    first = capsys.readouterr()
    train(config, out_dir=tmp_path, resume=True, max_steps=6, progress=True, dataset=TensorFaces())
    second = capsys.readouterr()
    assert first.out == second.out == ""  # standard output stays for data
    lines = _text_lines(first.err) + _text_lines(second.err)
    steps = [STEP_LINE.match(line) for line in lines if " step " in line[:25]]
    assert all(steps), lines
    assert [int(m.group(2)) for m in steps] == [2, 4, 6]
    assert [int(m.group(3)) for m in steps] == [3, 6, 6]  # the step the run stops at
    assert [int(m.group(4)) for m in steps] == [1, 1, 2] and {m.group(5) for m in steps} == {"3"}
    for match in steps:
        assert float(match.group(6)) > 0 and float(match.group(7)) > 0
        assert float(match.group(8)) > 0
    kinds = [line.split(" ")[2] for line in lines]
    assert kinds == ["start", "step", "finished", "resumed", "step", "end", "step", "finished"]
    assert re.search(r" resumed step 3/6 epoch 1/3 from \S+step_00000003\.pt$", lines[3])
    assert re.search(
        r" end of epoch 1/3 step 4/6 loss \d+\.\d{4} img/s \S+ time \d+:\d\d:\d\d ", lines[5]
    )
    assert re.search(r" finished max_steps step 6/6 time \d+:\d\d:\d\d img/s \S+$", lines[-1])


def test_no_text_lines_with_stderr_every_steps_0(tmp_path, capsys) -> None:
    config = tiny_config("logging.stderr_every_steps=0")
    train(config, out_dir=tmp_path, max_steps=2, progress=False, dataset=TensorFaces())
    assert _text_lines(capsys.readouterr().err) == []


def test_a_progress_bar_on_a_terminal_replaces_the_text_lines(
    tmp_path, capsys, monkeypatch
) -> None:
    """On a terminal the bar is shown and no text line duplicates it; with the bar off the
    lines come back."""
    monkeypatch.setattr("igfiqa.progress.stderr_is_terminal", lambda: True)
    config = tiny_config("logging.stderr_every_steps=1", "logging.progress=true")
    train(config, out_dir=tmp_path / "bar", max_steps=2, progress=True, dataset=TensorFaces())
    assert _text_lines(capsys.readouterr().err) == []
    train(config, out_dir=tmp_path / "off", max_steps=2, progress=False, dataset=TensorFaces())
    lines = _text_lines(capsys.readouterr().err)
    assert [line.split(" ")[2] for line in lines] == ["start", "step", "step", "finished"]


def test_text_lines_do_not_change_the_training(tmp_path, capsys) -> None:
    """The log only reads numbers the trainer already has: same seed, same checkpoint."""
    for every in (0, 1):
        config = tiny_config(f"logging.stderr_every_steps={every}")
        train(config, out_dir=tmp_path / str(every), max_steps=3, progress=False,
              dataset=TensorFaces())  # fmt: skip
    _assert_bitwise_equal(_final_state(tmp_path / "0"), _final_state(tmp_path / "1"))


def test_text_log_counts_skipped_steps_and_writes_long_etas(capsys) -> None:
    from igfiqa.engine.textlog import TrainingLog, clock

    assert clock(90061) == "25:01:01" and clock(float("nan")) == "-"
    log = TrainingLog(2, enabled=True, total=10, epochs=5, steps_per_epoch=2)
    log.step(1, loss=None, lr=0.1, images=8)
    log.step(2, loss=3.0, lr=0.1, images=8)
    log.step(3, loss=None, lr=0.05, images=8)
    log.step(4, loss=float("nan"), lr=0.05, images=8)
    lines = _text_lines(capsys.readouterr().err)
    assert re.search(r" step 2/10 epoch 1/5 loss 3\.0000 lr 0\.1 .* skipped 1$", lines[0])
    assert re.search(r" step 4/10 epoch 2/5 loss nan lr 0\.05 .* skipped 2$", lines[1])
    TrainingLog(2, enabled=False, total=10, epochs=5, steps_per_epoch=2).step(
        2, loss=1.0, lr=0.1, images=8
    )
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------- a thin loop (issue 24, item 4)
def test_every_trainer_attribute_is_set_in_init(tmp_path) -> None:
    """A reader finds all of a Trainer's state in ``__init__``: no method assigns ``self.X``, and
    a run adds no attribute (the loop's changing state lives in its parts)."""
    import ast
    import inspect
    import textwrap

    from igfiqa.engine.trainer import Trainer

    tree = ast.parse(textwrap.dedent(inspect.getsource(Trainer)))
    assigned_outside = set()
    for method in ast.walk(tree):
        if not isinstance(method, ast.FunctionDef) or method.name == "__init__":
            continue
        for node in ast.walk(method):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for target in targets:
                for part in ast.walk(target):
                    if (
                        isinstance(part, ast.Attribute)
                        and isinstance(part.value, ast.Name)
                        and part.value.id == "self"
                    ):
                        assigned_outside.add(f"{method.name}: self.{part.attr}")
    assert not assigned_outside
    trainer = Trainer(tiny_config(), tmp_path, max_steps=2, progress=False, dataset=TensorFaces())
    before = dict(vars(trainer))
    result = trainer.run()
    assert result.step == trainer.step == trainer.state.step == 2
    assert vars(trainer).keys() == before.keys()
    assert all(vars(trainer)[name] is value for name, value in before.items())


def test_periodic_verification_is_due_on_its_cadence_and_keeps_the_model_training(
    monkeypatch,
) -> None:
    import igfiqa.engine.validation as validation

    config = tiny_config(
        f"verification.sets=[{{name: v, kind: synthetic, path: '{SPEC}'}}]",
        "verification.every_steps=3",
    )
    seen = []

    def fake(model, config, *, device):
        seen.append(model.training)
        return {"v": {"accuracy": 0.5}}

    monkeypatch.setattr(validation, "run_verification", fake)
    model = torch.nn.Linear(2, 2)
    main = validation.PeriodicVerification(config, device=torch.device("cpu"), main=True)
    other = validation.PeriodicVerification(config, device=torch.device("cpu"), main=False)
    assert [step for step in range(1, 8) if main.due(step)] == [3, 6] and main.due_at_end
    assert main.results == {} and main(model) == {"v": {"accuracy": 0.5}} == main.results
    assert seen == [False] and model.training  # evaluated in eval mode, handed back training
    assert other(model) == {} and seen == [False]  # rank 0 alone computes
    never = validation.PeriodicVerification(tiny_config(), device=torch.device("cpu"), main=True)
    assert not never.due(3) and not never.due_at_end
