"""The resumable distributed batch order."""

from __future__ import annotations

import torch

from igfiqa.engine.sampler import FlippedDataset, ResumableDistributedSampler


def _epoch(world: int, batch: int, epoch: int = 0, position: int = 0, n: int = 50):
    per_rank = []
    for rank in range(world):
        sampler = ResumableDistributedSampler(n, batch, rank=rank, world_size=world, seed=3)
        sampler.set_epoch(epoch, position)
        per_rank.append(list(sampler))
    return per_rank


def test_ranks_partition_each_global_batch_and_drop_the_incomplete_tail() -> None:
    ranks = _epoch(world=2, batch=4)  # 50 samples, global batch 8 -> 6 steps, 2 dropped
    assert [len(r) for r in ranks] == [6, 6]
    seen = [i for r in ranks for b in r for i, _ in b]
    assert len(seen) == len(set(seen)) == 48
    order, flips = ResumableDistributedSampler(50, 4, world_size=2, seed=3).epoch_order(0)
    for step in range(6):  # step k = perm[8k : 8k + 8], rank r takes its slice
        block = order[8 * step : 8 * step + 8].tolist()
        assert [i for i, _ in ranks[0][step]] == block[:4]
        assert [i for i, _ in ranks[1][step]] == block[4:]
        assert all(f == bool(flips[i]) for i, f in ranks[0][step])


def test_epochs_differ_and_positions_resume_mid_epoch() -> None:
    assert _epoch(1, 5, epoch=0) != _epoch(1, 5, epoch=1)
    full = _epoch(1, 5, epoch=2)[0]
    assert _epoch(1, 5, epoch=2, position=15)[0] == full[3:]
    # Same world, other batch: the permutation is shared, so samples continue in order.
    assert [i for b in _epoch(1, 10, epoch=2, position=20)[0] for i, _ in b] == [
        i for b in full[4:] for i, _ in b
    ]


def test_flips_follow_the_sampler_and_can_be_turned_off() -> None:
    sampler = ResumableDistributedSampler(20, 4, seed=1, hflip=False)
    assert not any(flip for batch in sampler for _, flip in batch)
    images = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).reshape(2, 3, 2, 3)
    data = FlippedDataset([(images[0], 0), (images[1], 1)])
    flipped, label = data[(1, True)]
    assert label == 1 and torch.equal(flipped, images[1].flip(-1))
    assert torch.equal(data[(0, False)][0], images[0])


def test_state_round_trip_and_world_size_change() -> None:
    a = ResumableDistributedSampler(64, 4, world_size=2, seed=5)
    a.set_epoch(1, 24)
    b = ResumableDistributedSampler(64, 4, world_size=1, seed=0)
    b.load_state_dict(a.state_dict())
    assert (b.epoch, b.position, b.seed) == (1, 24, 5)
    c = ResumableDistributedSampler(64, 4, world_size=4, seed=0)
    c.load_state_dict(a.state_dict())
    assert c.position == 16  # the last complete global batch of 16 before sample 24
