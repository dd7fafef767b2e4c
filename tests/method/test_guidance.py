"""IntraClassGuidance: EMA update by hand, repeated labels, weights, schedule, state, two processes."""

from __future__ import annotations

import itertools
import os
import statistics

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.method.guidance import GuidanceConfig, IntraClassGuidance


def hand_weights(values: list[float]) -> list[float]:
    """w_c = 1 + clip(z_c, -1, 0) with the unbiased std over all classes (statistics module)."""
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return [1.0 + min(max((v - mean) / (std + 1e-6), -1.0), 0.0) for v in values]


def test_one_update_by_hand_with_a_repeated_label():
    guidance = IntraClassGuidance(5)
    guidance.update(torch.tensor([0, 0, 1, 3]), torch.tensor([0.9, 0.7, 0.5, 0.95]))
    # distance d = 1 - CCS; class 0 repeats: mean of 0.1 and 0.3 = 0.2; alpha = 0.9; v starts at 0.
    expected = [0.1 * 0.2, 0.1 * 0.5, 0.0, 0.1 * 0.05, 0.0]
    torch.testing.assert_close(guidance.values, torch.tensor(expected))
    weights = guidance.weights(torch.tensor([0, 1, 2, 3, 4, 2]))
    w = hand_weights(expected)
    torch.testing.assert_close(weights, torch.tensor([w[0], w[1], w[2], w[3], w[4], w[2]]))
    share = sum(x <= 0 for x in w) / 5
    assert guidance.zero_weight_share().item() == pytest.approx(share)


def test_repeated_labels_are_averaged_in_any_order():
    labels = torch.tensor([2, 0, 2, 2, 1, 0])
    ccs = torch.tensor([0.1, 0.2, 0.4, 0.7, 0.8, 0.5])
    a, b = IntraClassGuidance(4), IntraClassGuidance(4)
    a.update(labels, ccs)
    order = torch.tensor([5, 3, 0, 4, 2, 1])
    b.update(labels[order], ccs[order])
    torch.testing.assert_close(a.values, b.values)
    mean_d_class2 = statistics.fmean([0.9, 0.6, 0.3])
    assert a.values[2].item() == pytest.approx(0.1 * mean_d_class2)


def test_second_update_uses_the_ema_and_leaves_absent_classes_alone():
    guidance = IntraClassGuidance(3)
    guidance.set_epoch(5, 10)  # alpha = 0.95
    guidance.update(torch.tensor([0, 1]), torch.tensor([0.6, 0.2]))
    guidance.update(torch.tensor([0]), torch.tensor([0.0]))
    v0 = 0.95 * (0.05 * 0.4) + 0.05 * 1.0
    v1 = 0.05 * 0.8
    torch.testing.assert_close(guidance.values, torch.tensor([v0, v1, 0.0]))


def test_momentum_schedule_rises_from_09_towards_1():
    guidance = IntraClassGuidance(2)
    assert guidance.momentum == pytest.approx(0.9)
    values = [guidance.set_epoch(e, 20) for e in range(20)]
    np.testing.assert_allclose(values, [0.9 + 0.1 * e / 20 for e in range(20)])
    assert values[0] == pytest.approx(0.9) and values[-1] == pytest.approx(0.995)
    assert all(b > a for a, b in itertools.pairwise(values))
    with pytest.raises(ConfigError, match="epoch"):
        guidance.set_epoch(20, 20)
    with pytest.raises(ConfigError, match="num_epochs"):
        guidance.set_epoch(0, 0)


def simulate(statistic: str) -> IntraClassGuidance:
    """Class 0's samples sit at their prototype (CCS 1); classes 1-7 spread around CCS 0.5."""
    generator = torch.Generator().manual_seed(0)
    guidance = IntraClassGuidance(8, statistic=statistic)
    for step in range(30):
        guidance.set_epoch(step // 10, 3)
        labels = torch.arange(8).repeat(4)
        ccs = 0.5 + 0.2 * torch.randn(32, generator=generator)
        ccs[labels == 0] = 1.0
        guidance.update(labels, ccs.clamp(-1, 1))
    return guidance


def test_class_at_its_prototype_is_down_weighted_under_distance_and_mirrored_under_similarity():
    distance, similarity = simulate("distance"), simulate("similarity")
    v = distance.values.tolist()
    assert v[0] == pytest.approx(0.0, abs=1e-7)  # d = 1 - 1 = 0 throughout
    w_distance = distance.weights(torch.arange(8))
    assert w_distance[0].item() < 1.0
    torch.testing.assert_close(w_distance, torch.tensor(hand_weights(v)), atol=1e-5, rtol=0)
    # similarity tracks 1 - d, so its z is minus the distance z: w = 1 + clip(-z, -1, 0).
    torch.testing.assert_close(similarity.values, 1.0 - distance.values, atol=1e-6, rtol=0)
    mean, std = statistics.fmean(v), statistics.stdev(v)
    mirrored = [1.0 + min(max(-(x - mean) / (std + 1e-6), -1.0), 0.0) for x in v]
    w_similarity = similarity.weights(torch.arange(8))
    torch.testing.assert_close(w_similarity, torch.tensor(mirrored), atol=1e-4, rtol=0)
    assert w_similarity[0].item() == 1.0


def test_equal_values_give_weight_one():
    guidance = IntraClassGuidance(6)
    assert guidance.weights(torch.arange(6)).tolist() == [1.0] * 6
    assert guidance.zero_weight_share().item() == 0.0


def test_init_first_starts_each_class_at_its_first_value():
    guidance = IntraClassGuidance(4, init="first")
    guidance.update(torch.tensor([1, 1, 2]), torch.tensor([0.4, 0.6, 0.9]))
    torch.testing.assert_close(guidance.values, torch.tensor([0.0, 0.5, 0.1, 0.0]))
    assert guidance.seen.tolist() == [False, True, True, False]
    guidance.update(torch.tensor([1]), torch.tensor([1.0]))
    assert guidance.values[1].item() == pytest.approx(0.9 * 0.5)
    # mean/std over the seen classes; unseen classes keep weight 1.
    w = guidance.weights(torch.arange(4)).tolist()
    seen = hand_weights([0.45, 0.1])
    assert w == pytest.approx([1.0, seen[0], seen[1], 1.0], abs=1e-6)


def test_state_dict_round_trip_through_a_file(tmp_path):
    guidance = IntraClassGuidance(5, statistic="similarity", init="first")
    guidance.set_epoch(3, 10)
    guidance.update(torch.tensor([0, 4, 4]), torch.tensor([0.3, 0.8, 0.6]))
    torch.save(guidance.state_dict(), tmp_path / "g.pt")
    restored = IntraClassGuidance(5, statistic="similarity", init="first")
    restored.load_state_dict(torch.load(tmp_path / "g.pt", weights_only=True))
    assert restored.momentum == pytest.approx(0.93)
    torch.testing.assert_close(restored.values, guidance.values)
    for g in (guidance, restored):
        g.update(torch.tensor([1, 4]), torch.tensor([0.5, 0.1]))
    torch.testing.assert_close(restored.values, guidance.values, rtol=0, atol=0)
    torch.testing.assert_close(restored.weights(torch.arange(5)), guidance.weights(torch.arange(5)))


def test_load_state_dict_names_what_does_not_fit():
    state = IntraClassGuidance(5).state_dict()
    with pytest.raises(CheckpointError, match="num_classes"):
        IntraClassGuidance(6).load_state_dict(state)
    with pytest.raises(CheckpointError, match="statistic"):
        IntraClassGuidance(5, statistic="similarity").load_state_dict(state)
    with pytest.raises(CheckpointError, match="lacks"):
        IntraClassGuidance(5).load_state_dict({"values": torch.zeros(5)})
    bad = dict(state, values=torch.tensor([0.0, float("nan"), 0.0, 0.0, 0.0]))
    with pytest.raises(CheckpointError, match="NaN"):
        IntraClassGuidance(5).load_state_dict(bad)
    with pytest.raises(CheckpointError, match="values"):
        IntraClassGuidance(5).load_state_dict(dict(state, values=torch.zeros(4)))


def test_config_validation_and_build():
    with pytest.raises(ConfigError, match="statistic"):
        GuidanceConfig(statistic="variance")
    with pytest.raises(ConfigError, match="init"):
        GuidanceConfig(init="zero")
    assert GuidanceConfig(enabled=False).build(10) is None
    built = GuidanceConfig(statistic="similarity").build(10)
    assert built is not None and built.statistic == "similarity" and built.num_classes == 10


# ---------------------------------------------------------------------------- two processes (gloo)

NUM_CLASSES = 7
# Per step: rank 0 and rank 1 see batches of different sizes, with labels shared across ranks.
BATCHES = {
    0: [([0, 1, 1, 3, 6], [0.9, 0.2, 0.4, 0.7, 0.5]), ([2, 2], [0.1, 0.3]), ([5], [0.6])],
    1: [
        ([1, 4, 6], [0.8, 0.3, 0.1]),
        ([0, 2, 4, 4, 3, 1], [0.5, 0.6, 0.2, 0.9, 0.4, 0.7]),
        ([5, 0], [0.2, 0.4]),
    ],
}


def _worker(rank: int, world: int, store_path: str, out_dir: str) -> None:
    store = dist.FileStore(store_path, world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    try:
        guidance = IntraClassGuidance(NUM_CLASSES)
        for step, (labels, ccs) in enumerate(BATCHES[rank]):
            guidance.set_epoch(step, 3)
            guidance.update(torch.tensor(labels), torch.tensor(ccs))
        torch.save(guidance.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_end_with_identical_state_equal_to_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.testing.assert_close(states[0]["values"], states[1]["values"], rtol=0, atol=0)
    assert states[0]["seen"].tolist() == states[1]["seen"].tolist()

    single = IntraClassGuidance(NUM_CLASSES, distributed=False)
    for step in range(3):
        labels = BATCHES[0][step][0] + BATCHES[1][step][0]
        ccs = BATCHES[0][step][1] + BATCHES[1][step][1]
        single.set_epoch(step, 3)
        single.update(torch.tensor(labels), torch.tensor(ccs))
    torch.testing.assert_close(states[0]["values"], single.values, rtol=0, atol=1e-7)
    # and the state is not trivially the local one
    local = IntraClassGuidance(NUM_CLASSES)
    for step, (labels, ccs) in enumerate(BATCHES[0]):
        local.set_epoch(step, 3)
        local.update(torch.tensor(labels), torch.tensor(ccs))
    assert not torch.allclose(local.values, single.values)
