"""Periodic verification: `.bin` accuracy and synthetic EDC against oracle / constant models."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from igfiqa.config import load_config
from igfiqa.engine.validation import run_verification


class ColourOracle(nn.Module):
    """Embedding = one-hot of an image's mean grey level: a perfect identity oracle for images
    painted in one identity colour. Quality is constant (or the mean level, if asked)."""

    input_size = 16

    def __init__(self, informative: bool = True) -> None:
        super().__init__()
        self.informative = informative

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        level = ((x.mean(dim=(1, 2, 3)) * 0.5 + 0.5) * 255).round().long().clamp(0, 255)
        if self.informative:
            embedding = nn.functional.one_hot(level, 256).float()
        else:
            embedding = torch.ones(x.shape[0], 8)
        return embedding, torch.zeros(x.shape[0], 1)


def _write_bin(path, pairs: int = 40) -> None:
    rng = np.random.default_rng(0)
    images, issame = [], []
    for i in range(pairs):
        a = int(rng.integers(20, 230))
        mated = i % 2 == 0
        b = a if mated else (a + int(rng.integers(5, 20))) % 256
        for level in (a, b):
            ok, png = cv2.imencode(".png", np.full((24, 24, 3), level, np.uint8))
            assert ok
            images.append(png.tobytes())
        issame.append(mated)
    path.write_bytes(pickle.dumps((images, issame)))


@pytest.mark.parametrize(("informative", "expected"), [(True, 1.0), (False, 0.5)])
def test_bin_accuracy_of_an_oracle_and_of_a_constant_model(tmp_path, informative, expected) -> None:
    _write_bin(tmp_path / "tiny.bin")
    sets = f"verification.sets=[{{name: tiny, kind: bin, path: '{tmp_path / 'tiny.bin'}'}}]"
    config = load_config("synthetic_demo", overrides=[sets])
    config.check_paths()
    results = run_verification(ColourOracle(informative), config, device=torch.device("cpu"))
    assert results["tiny"]["accuracy"] == pytest.approx(expected)


def test_synthetic_edc_with_a_constant_quality_is_the_random_baseline() -> None:
    spec = "synthetic:identities=6,samples=4,seed=0,first_identity=300,image_size=32"
    config = load_config(
        "synthetic_demo",
        overrides=[f"verification.sets=[{{name: v, kind: synthetic, path: '{spec}'}}]"],
    )
    torch.manual_seed(0)
    from igfiqa.models import create_model

    model = create_model("r18", width=0.125, input_size=32, num_features=16).eval()
    model.qs.weight.data.zero_()  # constant quality: every pair ties, nothing is discarded early
    result = run_verification(model, config, device=torch.device("cpu"))["v"]
    assert result["num_images"] == 24
    assert 0.0 <= result["fnmr_at_fmr"] <= 1.0
    if result["fnmr_at_fmr"] > 0:
        assert result["pauc_20_normalised"] == pytest.approx(1.0)
    assert np.isnan(result["quality_truth_spearman"])  # a constant has no ranking
