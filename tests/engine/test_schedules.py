"""Learning-rate schedules against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from igfiqa.engine.schedules import LRSchedule, multistep_factor, poly_factor


def test_multistep_follows_the_crfiqa_rule() -> None:
    # CR-FIQA: lr * 0.1 ** #{m : m - 1 <= epoch} (0-based epoch), 10 steps per epoch.
    milestones = [20, 28, 32]
    expected = {0: 1.0, 18: 1.0, 19: 0.1, 26: 0.1, 27: 0.01, 31: 0.001, 33: 0.001}
    for epoch, factor in expected.items():
        assert multistep_factor(epoch * 10, 10, milestones) == pytest.approx(factor)
        assert multistep_factor(epoch * 10 + 9, 10, milestones) == pytest.approx(factor)
    # Warm-up multiplies linearly over the first steps.
    assert multistep_factor(0, 10, milestones, warmup_steps=4) == pytest.approx(0.25)
    assert multistep_factor(3, 10, milestones, warmup_steps=4) == pytest.approx(1.0)


def test_poly_with_warmup() -> None:
    assert poly_factor(0, 100, power=2.0, warmup_steps=10) == pytest.approx(0.1)
    assert poly_factor(9, 100, power=2.0, warmup_steps=10) == pytest.approx(1.0)
    assert poly_factor(10, 100, power=2.0, warmup_steps=10) == pytest.approx(1.0)
    assert poly_factor(55, 100, power=2.0, warmup_steps=10) == pytest.approx(0.25)
    assert poly_factor(100, 100, power=2.0, warmup_steps=10) == pytest.approx(0.0)
    assert poly_factor(40, 80, power=1.0) == pytest.approx(0.5)


def test_schedule_drives_several_optimizers_and_restores_its_step() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt_a = torch.optim.SGD([params[0]], lr=0.2)
    opt_b = torch.optim.SGD([params[1]], lr=0.4)
    schedule = LRSchedule(
        [opt_a, opt_b], kind="multistep", steps_per_epoch=2, total_steps=10, milestones=[2]
    )
    assert schedule.get_last_lr() == [0.2, 0.4]
    for _ in range(2):
        schedule.step()
    assert schedule.get_last_lr() == pytest.approx([0.02, 0.04])  # epoch 1 = milestone 2
    state = schedule.state_dict()
    fresh = LRSchedule(
        [torch.optim.SGD([params[0]], lr=0.2), torch.optim.SGD([params[1]], lr=0.4)],
        kind="multistep",
        steps_per_epoch=2,
        total_steps=10,
        milestones=[2],
    )
    fresh.load_state_dict(state)
    assert fresh.step_count == 2 and fresh.get_last_lr() == pytest.approx([0.02, 0.04])
