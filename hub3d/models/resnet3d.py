"""Hara et al.'s 3D ResNets (ICCV-W 2017, CVPR 2018, the 2020 release) and wide variants.

Layer names follow kenshohara/3D-ResNets-PyTorch so its state dicts load unchanged.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..pretrained import (
    CITATION_HARA_2018,
    DRIVE_2018,
    DRIVE_2020,
    KINETICS400_MEAN_255,
    KINETICS700_MEAN,
    KINETICS700_STD,
    PretrainedCfg,
)
from ..registry import register_model
from .base import VideoModel

BLOCK_INPLANES = (64, 128, 256, 512)


def conv3x3x3(in_planes: int, out_planes: int, stride=1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1x1(in_planes: int, out_planes: int, stride=1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def shortcut_a(x: torch.Tensor, planes: int, stride: int) -> torch.Tensor:
    """Shortcut A: identity, subsampled by stride, with zero-padded extra channels (no parameters)."""
    # The original's avg_pool3d(kernel_size=1, stride) is plain subsampling; slicing gives the same values and also
    # runs in bfloat16 on CPU, where avg_pool3d has no kernel.
    out = x[:, :, ::stride, ::stride, ::stride] if stride != 1 else x
    pad = out.new_zeros(out.size(0), planes - out.size(1), *out.shape[2:])
    return torch.cat([out, pad], dim=1)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class ResNet3d(VideoModel):
    """3D ResNet: conv1 (t x 7 x 7), BN, ReLU, max pool, four stages, global average pool, fc.

    ``block`` is a residual block class whose constructor takes (in_planes, planes, stride, downsample) and
    whose ``expansion`` gives its output width; other families (wide, ResNeXt, pre-activation) reuse this
    trunk with their own blocks.
    """

    def __init__(
        self,
        block,
        layers,
        block_inplanes=BLOCK_INPLANES,
        n_input_channels: int = 3,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
        shortcut_type: str = "B",
        widen_factor: float = 1.0,
        num_classes: int = 400,
        stem_planes: int | None = None,
    ):
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', not {shortcut_type!r}")
        block_inplanes = [int(x * widen_factor) for x in block_inplanes]
        # stem_planes: the 2018 wide ResNet and ResNeXt keep a 64-channel conv1 under wider stages.
        self.in_planes = stem_planes or block_inplanes[0]
        self.no_max_pool = no_max_pool
        self._make_stem(n_input_channels, conv1_t_size, conv1_t_stride)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, block_inplanes[0], layers[0], shortcut_type)
        self.layer2 = self._make_layer(block, block_inplanes[1], layers[1], shortcut_type, stride=2)
        self.layer3 = self._make_layer(block, block_inplanes[2], layers[2], shortcut_type, stride=2)
        self.layer4 = self._make_layer(block, block_inplanes[3], layers[3], shortcut_type, stride=2)
        self.num_features = self.in_planes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self)

    def _make_stem(self, n_input_channels, conv1_t_size, conv1_t_stride):
        """conv1 + bn1 (families with another stem, e.g. R(2+1)D, override this and forward_stem)."""
        self.conv1 = nn.Conv3d(
            n_input_channels,
            self.in_planes,
            kernel_size=(conv1_t_size, 7, 7),
            stride=(conv1_t_stride, 2, 2),
            padding=(conv1_t_size // 2, 3, 3),
            bias=False,
        )
        self.bn1 = nn.BatchNorm3d(self.in_planes)

    def forward_stem(self, x):
        return self.relu(self.bn1(self.conv1(x)))

    def _make_layer(self, block, planes, blocks, shortcut_type, stride=1):
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_planes != out_planes:
            if shortcut_type == "A":
                downsample = partial(shortcut_a, planes=out_planes, stride=stride)
            else:
                downsample = nn.Sequential(conv1x1x1(self.in_planes, out_planes, stride), nn.BatchNorm3d(out_planes))
        layers = [block(self.in_planes, planes, stride=stride, downsample=downsample)]
        self.in_planes = out_planes
        layers += [block(self.in_planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = self.forward_stem(x)
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def init_weights(model: nn.Module) -> None:
    """The original code's init: Kaiming normal (fan_out) convs, unit BN."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm3d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


# ---------------------------------------------------------------------------------------------------------
# Pretrained configs of the two releases.

HARA_2018_METRIC = "kinetics400_val_mean_top1_top5"  # the CVPR 2018 paper reports (top-1 + top-5) / 2


def hara2018_cfg(file: str, metric: float, **arch_kwargs) -> PretrainedCfg:
    """A Kinetics-400 model of the CVPR 2018 release: 0-255 frames, mean subtraction only."""
    return PretrainedCfg(
        num_classes=400,
        labels="kinetics400.txt",
        labels_verified=True,
        arch_kwargs=arch_kwargs,
        value_scale=255.0,
        mean=KINETICS400_MEAN_255,
        std=(1.0, 1.0, 1.0),
        resize=112,
        crop_size=112,
        clip_len=16,
        dataset="kinetics400",
        file=file,
        drive_folder=DRIVE_2018,
        release="3D-ResNets-PyTorch CVPR 2018 release",
        metrics={HARA_2018_METRIC: metric},
        license="MIT",
        paper="https://arxiv.org/abs/1711.09577",
        citation=CITATION_HARA_2018,
    )


# 2020 release: dataset code in the file name -> (tag, classes, label file, dataset).
HARA_2020_DATASETS = {
    "K": ("kinetics700", 700, None, "kinetics700"),
    "KM": ("kinetics700_moments", 1039, None, "kinetics700+moments_in_time"),
    "KMS": ("kinetics700_moments_stair", 1139, None, "kinetics700+moments_in_time+stair_actions"),
    "KS": ("kinetics700_stair", 800, None, "kinetics700+stair_actions"),
    "M": ("moments", 339, "moments_in_time.txt", "moments_in_time"),
    "MS": ("moments_stair", 439, None, "moments_in_time+stair_actions"),
    "S": ("stair", 100, None, "stair_actions"),
}
KINETICS700_ORDER_NOTE = (
    "Class order is the first appearance of each label in the official Kinetics-700 train CSV, which hub3d "
    "does not ship: names are class_i until you give them: model.labels = hub3d.class_order_from_csv(train_csv)."
)


def hara2020_cfgs(prefix: str, codes=("K", "KM")) -> dict[str, PretrainedCfg]:
    """The 2020 release's tags for one architecture, e.g. prefix 'r3d50' -> r3d50_K_200ep.pth ..."""
    cfgs = {}
    for code in codes:
        tag, classes, labels, dataset = HARA_2020_DATASETS[code]
        cfgs[tag] = PretrainedCfg(
            num_classes=classes,
            labels=labels,
            labels_verified=False,
            arch_kwargs={"shortcut_type": "B", "conv1_t_size": 7},
            value_scale=1.0,
            mean=KINETICS700_MEAN,
            std=KINETICS700_STD,
            resize=112,
            crop_size=112,
            clip_len=16,
            dataset=dataset,
            file=f"{prefix}_{code}_200ep.pth",
            drive_folder=DRIVE_2020,
            release="3D-ResNets-PyTorch 2020 release",
            license="MIT",
            paper="https://arxiv.org/abs/2004.04968",
            citation=CITATION_HARA_2018,
            notes=KINETICS700_ORDER_NOTE if labels is None else "Label order unverified against the weights.",
        )
    return cfgs


R3D50_CODES = ("K", "KM", "KMS", "KS", "M", "MS", "S")
RANDOM_CFG = hara2020_cfgs("none")["kinetics700"].replace(num_classes=400, notes=None, dataset=None)


def _resnet3d(block, layers, **kwargs):
    return ResNet3d(block, layers, **kwargs)


@register_model(random_cfg=RANDOM_CFG)
def resnet3d_10(**kwargs):
    """3D ResNet-10 (basic blocks [1,1,1,1]), 512-d features."""
    return _resnet3d(BasicBlock, [1, 1, 1, 1], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-18-kinetics.pth", 66.1, shortcut_type="A"),
        **hara2020_cfgs("r3d18"),
    }
)
def resnet3d_18(**kwargs):
    """3D ResNet-18 (basic blocks [2,2,2,2]), 512-d features."""
    return _resnet3d(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-34-kinetics.pth", 71.0, shortcut_type="A"),
        **hara2020_cfgs("r3d34"),
    }
)
def resnet3d_34(**kwargs):
    """3D ResNet-34 (basic blocks [3,4,6,3]), 512-d features."""
    return _resnet3d(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-50-kinetics.pth", 72.2, shortcut_type="B"),
        **hara2020_cfgs("r3d50", R3D50_CODES),
    }
)
def resnet3d_50(**kwargs):
    """3D ResNet-50 (bottlenecks [3,4,6,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-101-kinetics.pth", 73.3, shortcut_type="B"),
        **hara2020_cfgs("r3d101"),
    }
)
def resnet3d_101(**kwargs):
    """3D ResNet-101 (bottlenecks [3,4,23,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-152-kinetics.pth", 73.7, shortcut_type="B"),
        **hara2020_cfgs("r3d152"),
    }
)
def resnet3d_152(**kwargs):
    """3D ResNet-152 (bottlenecks [3,8,36,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 8, 36, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-200-kinetics.pth", 73.7, shortcut_type="B"),
        **hara2020_cfgs("r3d200"),
    }
)
def resnet3d_200(**kwargs):
    """3D ResNet-200 (bottlenecks [3,24,36,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 24, 36, 3], **kwargs)
