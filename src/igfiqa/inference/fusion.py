"""Fold eval-mode BatchNorm layers into the neighbouring convolution / linear layers.

In eval mode a BatchNorm is the per-channel affine map ``y = (x - mean) * g / sqrt(var + eps) + b``.
After a convolution or linear layer it folds into that layer's weights and bias; the iResNet's ``bn2``
before the flatten folds into ``fc`` (each channel's scale/shift repeated over the spatial positions).
The pre-activation ``bn1`` of each residual block precedes a zero-padded convolution and is kept (its
fold would be wrong at the border). The result computes the same function with fewer passes over
memory, which is what inference on a CPU is bound by.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) = x * scale + shift`` per channel in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution with bias equal to ``bn(conv(x))`` for eval-mode ``bn``."""
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    )
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    fused.bias.copy_(bias * scale + shift)
    return fused


def fold_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    """A linear layer equal to ``bn(linear(x))`` for eval-mode ``bn``."""
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight.copy_(linear.weight * scale[:, None])
    fused.bias.copy_(linear.bias * scale + shift)
    return fused


def fold_bn_linear(bn: nn.BatchNorm2d, linear: nn.Linear, spatial: int) -> nn.Linear:
    """A linear layer equal to ``linear(flatten(bn(x)))`` for eval-mode ``bn`` on (C, H, W) inputs
    with ``spatial = H * W``."""
    scale, shift = _bn_scale_shift(bn)
    scale_flat = scale.repeat_interleave(spatial)
    shift_flat = shift.repeat_interleave(spatial)
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight.copy_(linear.weight * scale_flat[None, :])
    fused.bias.copy_(linear.bias + linear.weight @ shift_flat)
    return fused


@torch.no_grad()
def fold_batch_norms(network: nn.Module) -> nn.Module:
    """An eval-mode float32 copy of a scoring network with every foldable BatchNorm of its iResNet
    folded (see module docstring); other architectures are copied unchanged."""
    fused = _fold_in_place(copy.deepcopy(network).float().eval())
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def _fold_in_place(network: nn.Module) -> nn.Module:
    from igfiqa.models.iresnet import IResNet
    from igfiqa.models.scoring import ScoringNetwork

    if isinstance(network, ScoringNetwork):
        if network.quality_rule != "serfiq":  # SER-FIQ's dropout acts between bn2 and fc
            network.backbone = _fold_in_place(network.backbone)
        return network
    if not isinstance(network, IResNet):
        return network
    network.conv1 = fold_conv_bn(network.conv1, network.bn1)
    network.bn1 = nn.Identity()
    for stage in (network.layer1, network.layer2, network.layer3, network.layer4):
        for block in stage:
            block.conv1 = fold_conv_bn(block.conv1, block.bn2)
            block.bn2 = nn.Identity()
            block.conv2 = fold_conv_bn(block.conv2, block.bn3)
            block.bn3 = nn.Identity()
            if block.downsample is not None:
                block.downsample = fold_conv_bn(block.downsample[0], block.downsample[1])
    spatial = network.fc.in_features // network.bn2.num_features
    fc = fold_bn_linear(network.bn2, network.fc, spatial)
    network.fc = fold_linear_bn(fc, network.features)
    network.bn2 = nn.Identity()
    network.features = nn.Identity()
    return network


__all__ = ["fold_batch_norms", "fold_bn_linear", "fold_conv_bn", "fold_linear_bn"]
