"""The one rank / world-size interface (:mod:`igfiqa.collective`): the same answers in one process
and in a gloo group; ``engine.distributed.setup`` reports what it says."""

from __future__ import annotations

import torch

from igfiqa import collective
from igfiqa.engine import distributed

from ._dist import run_gloo


def test_a_single_process_is_rank_0_of_1_and_gets_its_input_back() -> None:
    assert not collective.active()
    assert (collective.rank(), collective.world_size()) == (0, 1)
    assert collective.any_rank(True) and not collective.any_rank(False)
    assert collective.gather_objects({"a": 1}) == [{"a": 1}]


def _ranks(rank: int, world: int) -> None:
    assert collective.active()
    assert (collective.rank(), collective.world_size()) == (rank, world)
    assert collective.any_rank(rank == world - 1, torch.device("cpu"))  # true on one rank only
    assert not collective.any_rank(False)
    assert collective.gather_objects({"rank": rank}) == [{"rank": r} for r in range(world)]
    info = distributed.setup("cpu")  # a group that exists is used as it is
    assert (info.rank, info.world_size, info.initialised_here) == (rank, world, False)


def test_ranks_agree_in_a_process_group() -> None:
    run_gloo(_ranks, 2)
