"""Helpers of the inference tests: a tiny iResNet, random face-like images, an independent forward."""

from __future__ import annotations

import numpy as np
import torch

from igfiqa.models import create_model

SIZE = 32
FEATURES = 32
SPEC = {
    "name": "iresnet18",
    "num_features": FEATURES,
    "dropout": 0.0,
    "width": 0.125,
    "input_size": SIZE,
}


def tiny_model(seed: int = 0, quality_head: bool = True) -> torch.nn.Module:
    """A tiny r18 with randomised BN statistics (so that eval mode differs from identity BN)."""
    torch.manual_seed(seed)
    spec = {k: v for k, v in SPEC.items() if k != "name"}
    model = create_model("r18", quality_head=quality_head, **spec)
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model.eval()


def reference_forward(model: torch.nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's own forward on uint8 (N, S, S, 3) RGB images, normalised independently."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = (x / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        embedding, quality = model(x)
    return embedding.numpy(), quality[:, 0].numpy()


def random_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth random RGB images (uint8, (n, size, size, 3)): noise plus gradients, like a face crop."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None, None]
    base = rng.uniform(0, 255, (n, 1, 1, 3)) * ramp + rng.uniform(0, 60, (n, size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)
