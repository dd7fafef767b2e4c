"""The run state and its checkpointing: every part to one checkpoint dict and back."""

from __future__ import annotations

import pytest
import torch

from igfiqa.checkpoint import load_checkpoint
from igfiqa.engine.run_state import RunState
from igfiqa.engine.trainer import Trainer
from igfiqa.errors import CheckpointError

from ._tiny import TensorFaces, tiny_config


def test_run_state_counts_skipped_steps_and_round_trips() -> None:
    state = RunState(step=7, epoch=1)
    assert state.skipped() == 1 and state.skipped() == 2
    state.succeeded()
    state.last_metrics = {"loss": 1.5}
    assert state.state_dict() == {
        "epoch": 1,
        "step": 7,
        "nonfinite": {"total": 2, "in_a_row": 0},
        "metrics": {"loss": 1.5},
    }
    again = RunState()
    again.load_state_dict(state.state_dict())
    assert again == state
    old = RunState(nonfinite_total=5, last_metrics={"loss": 1.0})
    old.load_state_dict({"epoch": 0, "step": 3})  # a checkpoint without the newer keys
    assert old == RunState(step=3)


def _trainer(run_dir, *overrides, classes=6):
    return Trainer(
        tiny_config("method.objective.fiqa_batch=duplicate", *overrides),
        run_dir,
        max_steps=2,
        progress=False,
        dataset=TensorFaces(classes=classes),
    )


def _tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}")
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}[{index}]")


def test_a_checkpoint_restores_every_part_of_another_trainer(tmp_path) -> None:
    first = _trainer(tmp_path / "a")
    result = first.run()
    assert first.checkpointer.last == result.checkpoint and first.checkpointer.saved_at(2)
    assert first.checkpointer.latest() == result.checkpoint
    saved = first.checkpointer.state_dict()
    second = _trainer(tmp_path / "b")
    assert second.step == 0 and not second.checkpointer.saved_at(2)
    second.checkpointer.load_state_dict(load_checkpoint(result.checkpoint), result.checkpoint)
    again = second.checkpointer.state_dict()
    assert second.step == 2 and second.state == first.state
    assert saved.keys() == again.keys()
    ours, theirs = dict(_tensors(saved)), dict(_tensors(again))
    assert ours.keys() == theirs.keys() and len(ours) > 50
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    assert saved["sampler"] == again["sampler"] and saved["scheduler"] == again["scheduler"]


def test_resuming_restores_from_the_newest_checkpoint(tmp_path) -> None:
    done = _trainer(tmp_path).run()
    resumed = Trainer(
        tiny_config("method.objective.fiqa_batch=duplicate"),
        tmp_path,
        resume=True,
        max_steps=2,
        progress=False,
        dataset=TensorFaces(),
    )
    assert resumed.resumed_from == done.checkpoint == resumed.checkpointer.last
    assert resumed.step == 2 and resumed.checkpointer.saved_at(2)


def test_a_checkpoint_of_other_data_is_refused_naming_the_file(tmp_path) -> None:
    done = _trainer(tmp_path / "a").run()
    other = _trainer(tmp_path / "b", classes=5)
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: the checkpoint has 6 classes"):
        other.checkpointer.load_state_dict(load_checkpoint(done.checkpoint), done.checkpoint)
    payload = load_checkpoint(done.checkpoint)
    del payload["sampler"]
    with pytest.raises(CheckpointError, match=r"does not fit this run: KeyError"):
        _trainer(tmp_path / "c").checkpointer.load_state_dict(payload, done.checkpoint)


def _last_step_saved_on_the_cadence(rank: int, world: int, root: str) -> None:
    config = tiny_config("checkpoint.every_steps=3", "checkpoint.at_epoch_end=false")
    trainer = Trainer(config, root, max_steps=3, progress=False, dataset=TensorFaces())
    result = trainer.run()
    assert result.step == 3 and trainer.checkpointer.saved_at(3)
    assert (result.checkpoint is not None) == (rank == 0)  # rank 0 writes the file


@pytest.mark.slow  # two spawned processes
def test_every_rank_agrees_that_the_cadence_saved_the_last_step(tmp_path) -> None:
    """The final save is skipped on every rank alike (rank 1 used to save again, alone, and wait
    in a collective that rank 0 never joined)."""
    from ._dist import run_gloo

    run_gloo(_last_step_saved_on_the_cadence, 2, str(tmp_path))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000003.pt"]
