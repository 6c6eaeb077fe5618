"""3D ResNeXts of the CVPR 2018 release of kenshohara/3D-ResNets-PyTorch (models/resnext.py).

Bottlenecks of expansion 2 whose 3x3x3 convolution is grouped (cardinality 32) on stages of 128, 256, 512 and
1024 planes under a 64-channel conv1: 2048-d features.
"""
from __future__ import annotations

from functools import partial

from torch import nn

from ..registry import register_model
from .resnet3d import RANDOM_CFG, Bottleneck, ResNet3d, conv1x1x1, hara2018_cfg

RESNEXT_INPLANES = (128, 256, 512, 1024)


class ResNeXtBottleneck(Bottleneck):
    """Bottleneck.forward on a grouped, differently sized set of the same layers."""

    expansion = 2

    def __init__(self, in_planes, planes, stride=1, downsample=None, cardinality: int = 32):
        nn.Module.__init__(self)  # not Bottleneck.__init__: its (discarded) layers would cost time and memory
        mid_planes = cardinality * int(planes / 32)  # the original's width rule
        if mid_planes == 0:
            raise ValueError(f"a ResNeXt stage needs at least 32 planes; got {planes} (widen_factor too small?)")
        self.conv1 = conv1x1x1(in_planes, mid_planes)
        self.bn1 = nn.BatchNorm3d(mid_planes)
        self.conv2 = nn.Conv3d(
            mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn2 = nn.BatchNorm3d(mid_planes)
        self.conv3 = conv1x1x1(mid_planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


def _resnext3d(layers, cardinality: int = 32, **kwargs):
    block = partial(ResNeXtBottleneck, cardinality=cardinality)
    block.expansion = ResNeXtBottleneck.expansion  # the trunk reads the block's expansion
    return ResNet3d(block, layers, block_inplanes=RESNEXT_INPLANES, stem_planes=64, **kwargs)


def _finetuned_cfg(file, dataset, classes, labels, clip_len):
    """A ResNeXt-101 of the 2018 release fine-tuned on UCF-101 / HMDB-51 split 1 (same preprocessing)."""
    return hara2018_cfg(file, None, shortcut_type="B").replace(
        num_classes=classes,
        labels=labels,
        labels_verified=False,
        clip_len=clip_len,
        dataset=dataset,
        metrics={},
        notes=f"Fine-tuned from Kinetics-400. Label order assumed to be {labels}'s (the order of the original "
        "annotation scripts), not verified against the weights.",
    )


@register_model(random_cfg=RANDOM_CFG)
def resnext3d_50(**kwargs):
    """3D ResNeXt-50 (32 groups, bottlenecks [3,4,6,3]), 2048-d features."""
    return _resnext3d([3, 4, 6, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnext-101-kinetics.pth", 75.4, shortcut_type="B"),
        "kinetics400_64f": hara2018_cfg("resnext-101-64f-kinetics.pth", None, shortcut_type="B").replace(
            clip_len=64, metrics={}
        ),
        "ucf101_split1": _finetuned_cfg("resnext-101-kinetics-ucf101_split1.pth", "ucf101", 101, "ucf101.txt", 16),
        "hmdb51_split1": _finetuned_cfg("resnext-101-kinetics-hmdb51_split1.pth", "hmdb51", 51, "hmdb51.txt", 16),
        "ucf101_split1_64f": _finetuned_cfg(
            "resnext-101-64f-kinetics-ucf101_split1.pth", "ucf101", 101, "ucf101.txt", 64
        ),
        "hmdb51_split1_64f": _finetuned_cfg(
            "resnext-101-64f-kinetics-hmdb51_split1.pth", "hmdb51", 51, "hmdb51.txt", 64
        ),
    }
)
def resnext3d_101(**kwargs):
    """3D ResNeXt-101 (32 groups, bottlenecks [3,4,23,3]), 2048-d features."""
    return _resnext3d([3, 4, 23, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG)
def resnext3d_152(**kwargs):
    """3D ResNeXt-152 (32 groups, bottlenecks [3,8,36,3]), 2048-d features."""
    return _resnext3d([3, 8, 36, 3], **kwargs)
