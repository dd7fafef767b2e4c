"""Resumable, distributed batch order and deterministic horizontal flips.

Every epoch draws one global permutation of the dataset from ``(seed, epoch)``. Global step ``k``
consumes the contiguous block ``perm[k*W*B : (k+1)*W*B]`` (``W`` ranks, ``B`` images per rank) and rank
``r`` takes its slice ``[r*B : (r+1)*B]`` of it; the incomplete last block is dropped. So the position
in an epoch is one number (global samples consumed), a run can stop and resume mid-epoch exactly,
and a resume with another world size continues in the same permutation from the first new global
batch that was not fully consumed (at most one global batch is seen twice).

Flips are decided per (epoch, sample) by the same generator, not by data-loader workers, so the
images do not depend on the number of workers or on where a run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from igfiqa.data.datasets import mirror
from igfiqa.errors import CheckpointError, ConfigError


class ResumableDistributedSampler(Sampler[list[tuple[int, bool]]]):
    """A batch sampler yielding this rank's ``[(index, flip), ...]`` batches (see module doc).

    Args:
        num_samples: dataset length N.
        batch_size: images per rank and step B.
        rank, world_size: this process and the number of processes W.
        seed: base seed; epoch ``e`` uses ``seed * 100003 + e``.
        shuffle: permute (True) or keep dataset order (False).
        hflip: draw a horizontal flip with probability 0.5 per sample.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        hflip: bool = True,
    ) -> None:
        if num_samples < batch_size * world_size:
            raise ConfigError(
                f"the dataset has {num_samples} images, fewer than one global batch of "
                f"{batch_size} x {world_size} processes: lower data.batch_size"
            )
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.hflip = hflip
        self.epoch = 0
        self.position = 0  # global samples consumed in the current epoch

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def __len__(self) -> int:
        """Batches left in the current epoch from the current position."""
        return self.steps_per_epoch - self.position // self.global_batch

    def set_epoch(self, epoch: int, position: int = 0) -> None:
        """Start ``epoch`` at global sample ``position`` (a multiple of the global batch)."""
        self.epoch = int(epoch)
        self.position = int(position)

    def advance(self, steps: int = 1) -> None:
        """Record that ``steps`` global batches of the current epoch were consumed."""
        self.position += steps * self.global_batch

    def epoch_order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(permutation (N,), flips (N,) bool indexed by sample) of ``epoch``."""
        generator = torch.Generator().manual_seed(self.seed * 100003 + int(epoch))
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        flips = torch.randint(0, 2, (self.num_samples,), generator=generator).bool()
        if not self.hflip:
            flips.zero_()
        return order, flips

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        order, flips = self.epoch_order(self.epoch)
        start = self.position
        B, G = self.batch_size, self.global_batch
        for block in range(start, self.steps_per_epoch * G, G):
            rows = order[block + self.rank * B : block + (self.rank + 1) * B].tolist()
            yield [(index, bool(flips[index])) for index in rows]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "shuffle": self.shuffle,
            "hflip": self.hflip,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the epoch and position; a different world size or batch keeps the sample position."""
        if int(state["num_samples"]) != self.num_samples:
            raise CheckpointError(
                f"the checkpoint was trained on {state['num_samples']} images but the dataset now "
                f"has {self.num_samples}: resume with the same data.source"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        position = int(state["position"])
        # Another world size / batch: continue at the first global batch not fully consumed.
        self.position = (position // self.global_batch) * self.global_batch


class FlippedDataset(Dataset):
    """Wraps a dataset of ``(image (3,S,S), label)``; item ``(index, flip)`` flips the image width."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, bool]) -> tuple[torch.Tensor, int]:
        index, flip = item
        image, label = self.dataset[index]
        if flip:
            image = mirror(image)
        return image, label
