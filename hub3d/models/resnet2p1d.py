"""R(2+1)D ResNets of the 2020 release of kenshohara/3D-ResNets-PyTorch (models/resnet2p1d.py).

Every t x k x k convolution of a 3D ResNet is split into a 1 x k x k spatial convolution (``*_s``) to
``mid_planes`` channels, BN, ReLU and a t x 1 x 1 temporal one (``*_t``), with ``mid_planes`` chosen so the pair
has about as many parameters as the 3D convolution it replaces (Tran et al., CVPR 2018). The trunk, the
shortcuts and the names of everything else are hub3d's 3D ResNet's.
"""
from __future__ import annotations

from torch import nn

from ..registry import register_model
from .cfgs import RANDOM_CFG, hara2020_cfgs
from .family import Family
from .layers import conv1x1x1, conv1x3x3, conv3x1x1, mid_planes_2p1d
from .resnet3d import ResNet3d, infer_arch_kwargs, is_hara_trunk, shortcut_hint


def detect(state_dict: dict) -> bool:
    return is_hara_trunk(state_dict, stem_key="conv1_s.weight")


FAMILY = Family("resnet2p1d", arch_names={"resnet2p1d": "resnet2p1d"}, infer_arch_kwargs=infer_arch_kwargs,
                detect=detect, load_hint=shortcut_hint)


class BasicBlock2p1d(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        mid1 = mid_planes_2p1d(in_planes, planes)
        self.conv1_s = conv1x3x3(in_planes, mid1, stride)
        self.bn1_s = nn.BatchNorm3d(mid1)
        self.conv1_t = conv3x1x1(mid1, planes, stride)
        self.bn1_t = nn.BatchNorm3d(planes)
        mid2 = mid_planes_2p1d(planes, planes)
        self.conv2_s = conv1x3x3(planes, mid2)
        self.bn2_s = nn.BatchNorm3d(mid2)
        self.conv2_t = conv3x1x1(mid2, planes)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1_s(self.conv1_s(x)))
        out = self.relu(self.bn1_t(self.conv1_t(out)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.bn2_t(self.conv2_t(out))
        return self.relu(out + residual)


class Bottleneck2p1d(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        mid = mid_planes_2p1d(planes, planes)
        self.conv2_s = conv1x3x3(planes, mid, stride)
        self.bn2_s = nn.BatchNorm3d(mid)
        self.conv2_t = conv3x1x1(mid, planes, stride)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.relu(self.bn2_t(self.conv2_t(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class ResNet2p1d(ResNet3d):
    """3D ResNet trunk with a (2+1)D stem: conv1_s (1x7x7) + bn1_s + ReLU, conv1_t (t x 1 x 1) + bn1_t + ReLU."""

    def _make_stem(self, n_input_channels, conv1_t_size, conv1_t_stride):
        # The original sizes the stem for 3 input channels whatever n_input_channels is.
        mid = mid_planes_2p1d(3, self.in_planes, t=conv1_t_size, k=7)
        self.conv1_s = nn.Conv3d(n_input_channels, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1_s = nn.BatchNorm3d(mid)
        self.conv1_t = nn.Conv3d(
            mid,
            self.in_planes,
            (conv1_t_size, 1, 1),
            stride=(conv1_t_stride, 1, 1),
            padding=(conv1_t_size // 2, 0, 0),
            bias=False,
        )
        self.bn1_t = nn.BatchNorm3d(self.in_planes)

    def forward_stem(self, x):
        x = self.relu(self.bn1_s(self.conv1_s(x)))
        return self.relu(self.bn1_t(self.conv1_t(x)))


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def resnet2p1d_10(**kwargs):
    """R(2+1)D-10 (basic blocks [1,1,1,1]), 512-d features."""
    return ResNet2p1d(BasicBlock2p1d, [1, 1, 1, 1], **kwargs)


@register_model(pretrained=hara2020_cfgs("r2p1d18"), family=FAMILY)
def resnet2p1d_18(**kwargs):
    """R(2+1)D-18 (basic blocks [2,2,2,2]), 512-d features."""
    return ResNet2p1d(BasicBlock2p1d, [2, 2, 2, 2], **kwargs)


@register_model(pretrained=hara2020_cfgs("r2p1d34"), family=FAMILY)
def resnet2p1d_34(**kwargs):
    """R(2+1)D-34 (basic blocks [3,4,6,3]), 512-d features."""
    return ResNet2p1d(BasicBlock2p1d, [3, 4, 6, 3], **kwargs)


@register_model(pretrained=hara2020_cfgs("r2p1d50"), family=FAMILY)
def resnet2p1d_50(**kwargs):
    """R(2+1)D-50 (bottlenecks [3,4,6,3]), 2048-d features."""
    return ResNet2p1d(Bottleneck2p1d, [3, 4, 6, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def resnet2p1d_101(**kwargs):
    """R(2+1)D-101 (bottlenecks [3,4,23,3]), 2048-d features."""
    return ResNet2p1d(Bottleneck2p1d, [3, 4, 23, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def resnet2p1d_152(**kwargs):
    """R(2+1)D-152 (bottlenecks [3,8,36,3]), 2048-d features."""
    return ResNet2p1d(Bottleneck2p1d, [3, 8, 36, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def resnet2p1d_200(**kwargs):
    """R(2+1)D-200 (bottlenecks [3,24,36,3]), 2048-d features."""
    return ResNet2p1d(Bottleneck2p1d, [3, 24, 36, 3], **kwargs)
