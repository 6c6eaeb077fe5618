"""torchvision's video ResNets (pytorch/vision torchvision/models/video/resnet.py): R3D-18, MC3-18, R(2+1)D-18.

Built under torchvision's own parameter names (stem.0, layer1.0.conv1.0.weight, ..., fc) so its Kinetics-400
state dicts load as they are, without torchvision. Unlike Hara's models: a (3, 7, 7) stem without max pool,
each block's convolution + BN (+ ReLU) grouped in a Sequential, and one (2+1)D width per block (computed from the
block's input and output planes) used by both of its convolutions.
"""
from __future__ import annotations

from torch import nn

from ..registry import register_model
from .base import VideoModel
from .cfgs import torchvision_cfg
from .family import Family, classifier_classes
from .layers import conv1x3x3, conv3x1x1, init_weights, mid_planes_2p1d


class Conv3DSimple(nn.Conv3d):
    """Full 3x3x3 convolution (R3D; MC3's first stage)."""

    def __init__(self, in_planes, out_planes, midplanes=None, stride=1):
        super().__init__(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)

    @staticmethod
    def downsample_stride(stride):
        return (stride, stride, stride)


class Conv3DNoTemporal(nn.Conv3d):
    """1x3x3 convolution, spatial stride only (MC3's later stages)."""

    def __init__(self, in_planes, out_planes, midplanes=None, stride=1):
        super().__init__(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)

    @staticmethod
    def downsample_stride(stride):
        return (1, stride, stride)


class Conv2Plus1D(nn.Sequential):
    """1x3x3 conv to midplanes, BN, ReLU, 3x1x1 conv (R(2+1)D)."""

    def __init__(self, in_planes, out_planes, midplanes, stride=1):
        super().__init__(
            conv1x3x3(in_planes, midplanes, stride),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            conv3x1x1(midplanes, out_planes, stride),
        )

    @staticmethod
    def downsample_stride(stride):
        return (stride, stride, stride)


class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, conv_builder, stride=1, downsample=None):
        super().__init__()
        midplanes = mid_planes_2p1d(in_planes, planes)  # torchvision uses this one width for both convs
        self.conv1 = nn.Sequential(
            conv_builder(in_planes, planes, midplanes, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


def basic_stem(n_input_channels: int = 3) -> nn.Sequential:
    """conv (3, 7, 7) stride (1, 2, 2), BN, ReLU; no max pool."""
    return nn.Sequential(
        nn.Conv3d(n_input_channels, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


def r2plus1d_stem(n_input_channels: int = 3) -> nn.Sequential:
    """conv (1, 7, 7) to 45 channels, BN, ReLU, conv (3, 1, 1) to 64, BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(n_input_channels, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(45),
        nn.ReLU(inplace=True),
        conv3x1x1(45, 64),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


class VideoResNet(VideoModel):
    """torchvision's VideoResNet: stem, four stages of basic blocks (one conv builder per stage), pool, fc."""

    dynamic_input_shapes = True  # convolutions, fixed-padding pools and a global average pool: any size

    def __init__(self, conv_makers, layers, stem, n_input_channels: int = 3, num_classes: int = 400):
        super().__init__()
        self.in_planes = 64
        self.stem = stem(n_input_channels)
        self.layer1 = self._make_layer(conv_makers[0], 64, layers[0])
        self.layer2 = self._make_layer(conv_makers[1], 128, layers[1], stride=2)
        self.layer3 = self._make_layer(conv_makers[2], 256, layers[2], stride=2)
        self.layer4 = self._make_layer(conv_makers[3], 512, layers[3], stride=2)
        self.num_features = self.in_planes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self)
        if isinstance(self.fc, nn.Linear):  # torchvision's fc init
            nn.init.normal_(self.fc.weight, 0, 0.01)
            nn.init.zeros_(self.fc.bias)

    def _make_layer(self, conv_builder, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.in_planes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(self.in_planes, planes, 1, stride=conv_builder.downsample_stride(stride), bias=False),
                nn.BatchNorm3d(planes),
            )
        layers = [TVBasicBlock(self.in_planes, planes, conv_builder, stride, downsample)]
        self.in_planes = planes
        layers += [TVBasicBlock(planes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def infer_arch_kwargs(state_dict: dict) -> dict:
    kwargs = classifier_classes(state_dict, "fc.weight")
    stem = state_dict.get("stem.0.weight")
    if stem is not None:
        kwargs["n_input_channels"] = stem.shape[1]
    return kwargs


def detect(state_dict: dict) -> bool:
    return "stem.0.weight" in state_dict and any(k.startswith("layer4.") for k in state_dict)


FAMILY = Family("torchvision_resnet", infer_arch_kwargs=infer_arch_kwargs, detect=detect)


@register_model(pretrained={"kinetics400": torchvision_cfg("r3d_18-b3b3357e.pth", 63.2, 83.479)}, family=FAMILY)
def r3d_18(**kwargs):
    """torchvision's R3D-18: 3x3x3 convolutions in every stage, 512-d features."""
    return VideoResNet([Conv3DSimple] * 4, [2, 2, 2, 2], basic_stem, **kwargs)


@register_model(pretrained={"kinetics400": torchvision_cfg("mc3_18-a90a0ba3.pth", 63.96, 84.13)}, family=FAMILY)
def mc3_18(**kwargs):
    """torchvision's MC3-18: 3D convolutions in layer1, 2D (1x3x3) in layers 2-4, 512-d features."""
    return VideoResNet([Conv3DSimple] + [Conv3DNoTemporal] * 3, [2, 2, 2, 2], basic_stem, **kwargs)


@register_model(pretrained={"kinetics400": torchvision_cfg("r2plus1d_18-91a641e6.pth", 67.463, 86.175)}, family=FAMILY)
def r2plus1d_18(**kwargs):
    """torchvision's R(2+1)D-18: (2+1)D convolutions everywhere, (2+1)D stem, 512-d features."""
    return VideoResNet([Conv2Plus1D] * 4, [2, 2, 2, 2], r2plus1d_stem, **kwargs)
