"""Folding BatchNorms computes the same function as the network's own forward."""

from __future__ import annotations

import numpy as np
import torch
from inference_helpers import random_images, tiny_model

from igfiqa.inference.fusion import fold_batch_norms
from igfiqa.inference.runners import TorchRunner
from igfiqa.models import create_model


def randomise_affine(network: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return network.eval()


def test_folded_network_equals_original():
    network = randomise_affine(create_model("r34", width=0.0625, input_size=48, num_features=16), 0)
    fused = fold_batch_norms(network)
    x = torch.rand(5, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        embedding, quality = network(x)
        fused_embedding, fused_quality = fused(x)
    scale = embedding.abs().max()
    torch.testing.assert_close(fused_embedding / scale, embedding / scale, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        fused_quality, quality, atol=1e-5 * (1 + quality.abs().max()), rtol=0
    )
    # The original is untouched and the copy has no BatchNorm left except the blocks' first one.
    assert isinstance(network.bn2, torch.nn.BatchNorm2d)
    kinds = [type(m).__name__ for m in fused.modules()]
    assert kinds.count("BatchNorm2d") == sum(network.layers)
    assert "BatchNorm1d" not in kinds


def test_runner_with_and_without_fusion_agree():
    network = randomise_affine(tiny_model(seed=4), 1)
    batch = (random_images(3).transpose(0, 3, 1, 2).astype(np.float32) / 255 - 0.5) / 0.5
    fused = TorchRunner(network, fuse=True)(batch)
    plain = TorchRunner(network, fuse=False)(batch)
    np.testing.assert_allclose(fused[1], plain[1], atol=1e-5)
    np.testing.assert_allclose(fused[0], plain[0], atol=1e-4 * np.abs(plain[0]).max())


def test_bf16_runner_keeps_unfused_network_in_bf16():
    network = tiny_model(seed=2)
    runner = TorchRunner(network, dtype="bf16")
    assert runner.network is network
    assert next(runner.network.parameters()).dtype == torch.bfloat16
    assert isinstance(runner.network.bn2, torch.nn.BatchNorm2d)
