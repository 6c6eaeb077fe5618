"""Hara et al.'s 3D ResNets (ICCV-W 2017, CVPR 2018, the 2020 release) and wide variants.

Layer names follow kenshohara/3D-ResNets-PyTorch so its state dicts load unchanged.
"""
from __future__ import annotations

from functools import partial

from torch import nn

from ..registry import register_model
from .base import VideoModel
from .cfgs import R3D50_CODES, RANDOM_CFG, hara2018_cfg, hara2020_cfgs
from .family import Family, classifier_classes
from .layers import conv1x1x1, conv3x3x3, init_weights, shortcut_a

BLOCK_INPLANES = (64, 128, 256, 512)


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
    """conv1x1x1 - conv3x3x3 (stride, ``groups``) - conv1x1x1 to ``planes * expansion``; shared by the plain
    (expansion 4), wide (expansion 2) and ResNeXt (groups 32, width 32, expansion 2) 3D ResNets.

    The middle width is ``planes``, or with ``width``, the original ResNeXt's rule ``groups * int(planes / width)``.
    """

    expansion = 4

    def __init__(self, in_planes, planes, stride=1, downsample=None, groups: int = 1, width=None,
                 expansion: int = 4):
        super().__init__()
        self.expansion = expansion
        mid = planes if width is None else groups * int(planes / width)
        if mid == 0:
            raise ValueError(f"a grouped stage needs at least {width} planes; got {planes} (widen_factor too small?)")
        self.conv1 = conv1x1x1(in_planes, mid)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = conv3x3x3(mid, mid, stride, groups=groups)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = conv1x1x1(mid, planes * expansion)
        self.bn3 = nn.BatchNorm3d(planes * expansion)
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

    ``block`` is a residual block class whose constructor takes (in_planes, planes, stride, downsample,
    **block_kwargs); its output width is planes * expansion (``block_kwargs['expansion']``, else the class's).
    Other families (wide, ResNeXt, pre-activation, R(2+1)D) reuse this trunk with their blocks or arguments.
    """

    dynamic_input_shapes = True  # convolutions, fixed-padding pools and a global average pool: any size

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
        block_kwargs: dict | None = None,
    ):
        super().__init__()
        self.block_kwargs = dict(block_kwargs or {})
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
        out_planes = planes * self.block_kwargs.get("expansion", block.expansion)
        downsample = None
        if stride != 1 or self.in_planes != out_planes:
            if shortcut_type == "A":
                downsample = partial(shortcut_a, planes=out_planes, stride=stride)
            else:
                downsample = nn.Sequential(conv1x1x1(self.in_planes, out_planes, stride), nn.BatchNorm3d(out_planes))
        layers = [block(self.in_planes, planes, stride=stride, downsample=downsample, **self.block_kwargs)]
        self.in_planes = out_planes
        layers += [block(self.in_planes, planes, **self.block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = self.forward_stem(x)
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


# ---------------------------------------------------------------------------------------------------------
# The family: what a checkpoint of Hara's ResNet trunk says about its architecture.


def independent_stem_kwargs(state_dict: dict, stem_planes: int = 64) -> dict:
    """The plain ResNet's arguments for trunks whose stem width does not follow the stages (Wide, ResNeXt):
    conv1's width becomes stem_planes instead of a widen factor (the family reads its own width after)."""
    kwargs = infer_arch_kwargs(state_dict)
    kwargs.pop("widen_factor", None)
    stem = state_dict.get("conv1.weight")
    if stem is not None and stem.shape[0] != stem_planes:
        kwargs["stem_planes"] = stem.shape[0]
    return kwargs


def infer_arch_kwargs(state_dict: dict) -> dict:
    """Architecture arguments a state dict determines by itself (classes, input channels, shortcut, stem, groups)."""
    kwargs = classifier_classes(state_dict, "fc.weight")
    stem = state_dict.get("conv1.weight")
    if stem is None:
        stem = state_dict.get("conv1_t.weight")  # R(2+1)D: temporal half of the stem
        if stem is not None:
            kwargs["n_input_channels"] = state_dict["conv1_s.weight"].shape[1]
    else:
        kwargs["n_input_channels"] = stem.shape[1]
    if stem is not None:
        kwargs["conv1_t_size"] = stem.shape[2]
        if stem.shape[0] != 64:  # reduced or widened nets: the stem has 64 x widen_factor channels
            kwargs["widen_factor"] = stem.shape[0] / 64
        kwargs["shortcut_type"] = "B" if any(".downsample." in k for k in state_dict) else "A"
        grouped = state_dict.get("layer1.0.conv2.weight")
        if grouped is not None and grouped.dim() == 5 and grouped.shape[0] != grouped.shape[1] and (
            "layer1.0.conv3.weight" in state_dict
        ):
            groups = grouped.shape[0] // grouped.shape[1]
            if groups > 1:
                kwargs["cardinality"] = groups
    return kwargs


def _is_preact(state_dict: dict) -> bool:
    # A pre-activation block normalises its input (bn1 over conv1's input channels), a plain one conv1's output;
    # layer2.0 changes the width, so the two differ there.
    bn, conv = state_dict.get("layer2.0.bn1.weight"), state_dict.get("layer2.0.conv1.weight")
    return bn is not None and conv is not None and bn.shape[0] == conv.shape[1] != conv.shape[0]


def expansion_of(state_dict: dict) -> int | None:
    """Output over middle width of the first bottleneck (4 plain, 2 wide / ResNeXt); None for basic blocks."""
    c1, c3 = state_dict.get("layer1.0.conv1.weight"), state_dict.get("layer1.0.conv3.weight")
    return None if c1 is None or c3 is None else c3.shape[0] // c1.shape[0]


def is_grouped(state_dict: dict) -> bool:
    conv2 = state_dict.get("layer1.0.conv2.weight")
    return conv2 is not None and conv2.dim() == 5 and conv2.shape[0] != conv2.shape[1]


def is_hara_trunk(state_dict: dict, stem_key: str = "conv1.weight") -> bool:
    """conv1 (or R(2+1)D's conv1_s) stem, layer1..layer4, fc: the names of Hara's ResNet code."""
    return stem_key in state_dict and "fc.weight" in state_dict and any(k.startswith("layer4.") for k in state_dict)


def detect(state_dict: dict) -> bool:
    """A plain 3D ResNet: conv1 stem, post-activation blocks, basic or expansion-4 bottlenecks, not grouped."""
    return (is_hara_trunk(state_dict) and not _is_preact(state_dict) and not is_grouped(state_dict)
            and expansion_of(state_dict) in (None, 4))


def shortcut_hint(keys: list) -> str:
    """Shortcut A has no parameters, shortcut B a conv + BN under 'downsample': a mismatch names them."""
    return " (a shortcut A/B mismatch: pass shortcut_type='A' or 'B')" if any("downsample" in k for k in keys) else ""


FAMILY = Family(
    "resnet3d",
    arch_names={"resnet": "resnet3d"},
    infer_arch_kwargs=infer_arch_kwargs,
    detect=detect,
    load_hint=shortcut_hint,
)


def _resnet3d(block, layers, **kwargs):
    return ResNet3d(block, layers, **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def resnet3d_10(**kwargs):
    """3D ResNet-10 (basic blocks [1,1,1,1]), 512-d features."""
    return _resnet3d(BasicBlock, [1, 1, 1, 1], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-18-kinetics.pth", 66.1, shortcut_type="A"),
        **hara2020_cfgs("r3d18"),
    },
    family=FAMILY,
)
def resnet3d_18(**kwargs):
    """3D ResNet-18 (basic blocks [2,2,2,2]), 512-d features."""
    return _resnet3d(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-34-kinetics.pth", 71.0, shortcut_type="A"),
        **hara2020_cfgs("r3d34"),
    },
    family=FAMILY,
)
def resnet3d_34(**kwargs):
    """3D ResNet-34 (basic blocks [3,4,6,3]), 512-d features."""
    return _resnet3d(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-50-kinetics.pth", 72.2, shortcut_type="B"),
        **hara2020_cfgs("r3d50", R3D50_CODES),
    },
    family=FAMILY,
)
def resnet3d_50(**kwargs):
    """3D ResNet-50 (bottlenecks [3,4,6,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-101-kinetics.pth", 73.3, shortcut_type="B"),
        **hara2020_cfgs("r3d101"),
    },
    family=FAMILY,
)
def resnet3d_101(**kwargs):
    """3D ResNet-101 (bottlenecks [3,4,23,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-152-kinetics.pth", 73.7, shortcut_type="B"),
        **hara2020_cfgs("r3d152"),
    },
    family=FAMILY,
)
def resnet3d_152(**kwargs):
    """3D ResNet-152 (bottlenecks [3,8,36,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 8, 36, 3], **kwargs)


@register_model(
    pretrained={
        "kinetics400": hara2018_cfg("resnet-200-kinetics.pth", 73.7, shortcut_type="B"),
        **hara2020_cfgs("r3d200"),
    },
    family=FAMILY,
)
def resnet3d_200(**kwargs):
    """3D ResNet-200 (bottlenecks [3,24,36,3]), 2048-d features."""
    return _resnet3d(Bottleneck, [3, 24, 36, 3], **kwargs)
