"""Pre-activation 3D ResNets (BN-ReLU-conv blocks), as in the CVPR 2018 release of
kenshohara/3D-ResNets-PyTorch (models/pre_act_resnet.py).

Same trunk and parameter names as hub3d's 3D ResNets (conv1, bn1, layer1..4, fc); only the blocks differ:
each block normalises and activates its input before every convolution, and, as in the original, no BN or
ReLU follows the last block, so forward_features returns layer4's raw sum.
"""
from __future__ import annotations

from torch import nn

from ..registry import register_model
from .cfgs import RANDOM_CFG, hara2018_cfg
from .family import Family
from .layers import conv1x1x1, conv3x3x3
from .resnet3d import ResNet3d, _is_preact, infer_arch_kwargs, is_hara_trunk, shortcut_hint


def detect(state_dict: dict) -> bool:
    return is_hara_trunk(state_dict) and _is_preact(state_dict)


FAMILY = Family("preact_resnet3d", arch_names={"preresnet": "preact_resnet3d"}, infer_arch_kwargs=infer_arch_kwargs,
                detect=detect, load_hint=shortcut_hint)


class PreActBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv3x3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        # The shortcut takes the block's input before activation, as in the original.
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + residual


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + residual


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def preact_resnet3d_18(**kwargs):
    """Pre-activation 3D ResNet-18 (basic blocks [2,2,2,2]), 512-d features."""
    return ResNet3d(PreActBasicBlock, [2, 2, 2, 2], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def preact_resnet3d_34(**kwargs):
    """Pre-activation 3D ResNet-34 (basic blocks [3,4,6,3]), 512-d features."""
    return ResNet3d(PreActBasicBlock, [3, 4, 6, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def preact_resnet3d_50(**kwargs):
    """Pre-activation 3D ResNet-50 (bottlenecks [3,4,6,3]), 2048-d features."""
    return ResNet3d(PreActBottleneck, [3, 4, 6, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def preact_resnet3d_101(**kwargs):
    """Pre-activation 3D ResNet-101 (bottlenecks [3,4,23,3]), 2048-d features."""
    return ResNet3d(PreActBottleneck, [3, 4, 23, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def preact_resnet3d_152(**kwargs):
    """Pre-activation 3D ResNet-152 (bottlenecks [3,8,36,3]), 2048-d features."""
    return ResNet3d(PreActBottleneck, [3, 8, 36, 3], **kwargs)


@register_model(pretrained={"kinetics400": hara2018_cfg("preresnet-200-kinetics.pth", 73.4, shortcut_type="B")},
                family=FAMILY)
def preact_resnet3d_200(**kwargs):
    """Pre-activation 3D ResNet-200 (bottlenecks [3,24,36,3]), 2048-d features."""
    return ResNet3d(PreActBottleneck, [3, 24, 36, 3], **kwargs)
