"""Layers shared by the ResNet-like families (Hara's 3D ResNets and their variants, torchvision's video ResNets)."""
from __future__ import annotations

import torch
from torch import nn


def conv3x3x3(in_planes: int, out_planes: int, stride=1, groups: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1x1(in_planes: int, out_planes: int, stride=1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def conv1x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """Spatial half of a (2+1)D convolution."""
    return nn.Conv3d(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)


def conv3x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """Temporal half of a (2+1)D convolution."""
    return nn.Conv3d(in_planes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False)


def mid_planes_2p1d(in_planes: int, planes: int, t: int = 3, k: int = 3) -> int:
    """Channels between the spatial and the temporal half: in*out*t*k*k // (in*k*k + t*out)."""
    return (in_planes * planes * t * k * k) // (in_planes * k * k + t * planes)


def shortcut_a(x: torch.Tensor, planes: int, stride: int) -> torch.Tensor:
    """Shortcut A: identity, subsampled by stride, with zero-padded extra channels (no parameters)."""
    # The original's avg_pool3d(kernel_size=1, stride) is plain subsampling; slicing gives the same values and also
    # runs in bfloat16 on CPU, where avg_pool3d has no kernel.
    out = x[:, :, ::stride, ::stride, ::stride] if stride != 1 else x
    pad = out.new_zeros(out.size(0), planes - out.size(1), *out.shape[2:])
    return torch.cat([out, pad], dim=1)


def init_weights(model: nn.Module) -> None:
    """The original code's init: Kaiming normal (fan_out) convs, unit BN."""
    if any(p.is_meta for p in model.parameters()):
        return  # built on "meta" to receive a checkpoint's tensors: nothing to fill (and meta init is slow)
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm3d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
