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
    from igfiqa.models.iresnet import IResNet
    from igfiqa.models.scoring import ScoringNetwork

    if isinstance(network, ScoringNetwork):
        copied = copy.deepcopy(network).float().eval()
        if network.quality_rule != "serfiq":  # SER-FIQ's dropout acts between bn2 and fc
            copied.backbone = fold_batch_norms(copied.backbone)
        for parameter in copied.parameters():
            parameter.requires_grad_(False)
        return copied
    if not isinstance(network, IResNet):
        fused = copy.deepcopy(network).float().eval()
        for parameter in fused.parameters():
            parameter.requires_grad_(False)
        return fused
    fused = copy.deepcopy(network).float().eval()
    fused.conv1 = fold_conv_bn(fused.conv1, fused.bn1)
    fused.bn1 = nn.Identity()
    for stage in (fused.layer1, fused.layer2, fused.layer3, fused.layer4):
        for block in stage:
            block.conv1 = fold_conv_bn(block.conv1, block.bn2)
            block.bn2 = nn.Identity()
            block.conv2 = fold_conv_bn(block.conv2, block.bn3)
            block.bn3 = nn.Identity()
            if block.downsample is not None:
                block.downsample = fold_conv_bn(block.downsample[0], block.downsample[1])
    spatial = fused.fc.in_features // fused.bn2.num_features
    fc = fold_bn_linear(fused.bn2, fused.fc, spatial)
    fused.fc = fold_linear_bn(fc, fused.features)
    fused.bn2 = nn.Identity()
    fused.features = nn.Identity()
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


__all__ = ["fold_batch_norms", "fold_bn_linear", "fold_conv_bn", "fold_linear_bn"]
