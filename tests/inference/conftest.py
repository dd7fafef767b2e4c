"""Shared fixtures of the inference tests: a tiny iResNet and its weights in every supported form."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from inference_helpers import FEATURES, SPEC, tiny_model


@pytest.fixture(scope="session")
def model() -> torch.nn.Module:
    return tiny_model()


@pytest.fixture(scope="session")
def backbone_path(tmp_path_factory: pytest.TempPathFactory, model: torch.nn.Module) -> Path:
    """The tiny model saved as a bare state dict, like CR-FIQA's ``*backbone.pth``."""
    path = tmp_path_factory.mktemp("weights") / "181952backbone.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory, model: torch.nn.Module) -> Path:
    """The tiny model in the training checkpoint format of the contract."""
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    torch.save(
        {
            "format": "igfiqa.checkpoint",
            "format_version": 1,
            "model_spec": dict(SPEC),
            "model": model.state_dict(),
            "head": {"weight": torch.zeros(3, FEATURES)},
            "optimizer": {},
            "scheduler": {},
            "scaler": {},
            "epoch": 2,
            "step": 40,
            "guidance": {},
            "augment": {},
            "sampler": {},
            "rng": {},
            "config": {"data": {"train": "synthetic:identities=3,samples=4"}, "method": "igfiqa"},
            "class_names": ["a", "b", "c"],
            "igfiqa_version": "0.1.0",
        },
        path,
    )
    return path
