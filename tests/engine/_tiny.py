"""Tiny configs and datasets shared by the engine tests."""

from __future__ import annotations

from typing import Any

import torch

from igfiqa.config import IgfiqaConfig, load_config

SPEC = "synthetic:identities=10,samples=4,seed=0,low_variance_share=0.3,image_size=32"


def tiny_config(*overrides: str, preset: str = "synthetic_demo") -> IgfiqaConfig:
    """An iResNet-18 of width 1/8 on 32x32 synthetic faces, batch 8, 5 steps per epoch."""
    base = [
        f"data.source={SPEC}",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.input_size=32",
        "model.width=0.125",
        "model.num_features=16",
        "model.dropout=0.2",
        "head.s=16",
        "train.epochs=3",
        "train.deterministic=true",
        "checkpoint.every_steps=0",
        "logging.every_steps=1",
        "logging.progress=false",
        "verification.sets=[]",
    ]
    return load_config(preset, overrides=[*base, *overrides])


class TensorFaces(torch.utils.data.Dataset):
    """A fixed random tensor dataset with the FaceDataset attributes (fast: no rendering)."""

    def __init__(self, classes: int = 6, per_class: int = 6, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(classes * per_class, 3, size, size, generator=g) * 2 - 1
        self.labels_t = torch.arange(classes).repeat_interleave(per_class)
        self.labels = self.labels_t.numpy()
        self.num_classes = classes
        self.class_names = [f"id{i}" for i in range(classes)]

    def __len__(self) -> int:
        return len(self.labels_t)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels_t[index])


class PoisonedFaces(TensorFaces):
    """Returns NaN images for the ``__getitem__`` calls numbered in ``poisoned`` (num_workers=0)."""

    def __init__(self, poisoned: range, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poisoned = poisoned
        self.calls = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = super().__getitem__(index)
        if self.calls in self.poisoned:
            image = torch.full_like(image, float("nan"))
        self.calls += 1
        return image, label
