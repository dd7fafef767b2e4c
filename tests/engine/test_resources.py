"""Training's machine bounds (docs/robustness.md): workers, model size and batch activations."""

from __future__ import annotations

import pytest

from igfiqa.config import load_config
from igfiqa.engine import resources
from igfiqa.engine.resources import check_resources
from igfiqa.errors import ConfigError


def test_resources_beyond_the_machine_are_refused_naming_the_field(monkeypatch) -> None:
    """Issue 25 item 12: no upper bounds on workers, model size, batch size."""
    monkeypatch.setattr(resources, "available_cores", lambda: 2)
    monkeypatch.setattr(resources, "machine_memory", lambda: 8 * 2**30)
    small = ["train.device=cpu", "data.num_workers=2"]
    check_resources(load_config("synthetic_demo", overrides=small))  # fits
    cases = [
        ("data.num_workers=10000", r"data\.num_workers: 10000 .* at most 8 \(4 per CPU core, 2"),
        ("model.width=1000", r"model: iresnet18 with model\.width=1000.*more than this machine's"),
        ("model.num_features=10000000000", r"model:.*lower model\.width, model\.num_features"),
        ("model.width=1e15", r"model:.*too large to build"),
        ("data.batch_size=10000000", r"data\.batch_size: 10000000 images of 48x48 need about"),
        ("verification.batch_size=1000000000", r"verification\.batch_size: 1000000000 images"),
    ]
    for override, expected in cases:
        config = load_config("synthetic_demo", overrides=[*small, override])
        with pytest.raises(ConfigError, match=expected):
            check_resources(config)
