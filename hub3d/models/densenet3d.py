"""3D DenseNets (DenseNet-BC) of kenshohara/3D-ResNets-PyTorch (models/densenet.py, 2018 and 2020 code).

Parameter names follow the original (features.conv0 ... features.denseblockN.denselayerM ... features.norm5,
classifier), except that the 2018 code named a dense layer's modules 'norm.1', 'relu.1', 'conv.1', 'norm.2',
'relu.2', 'conv.2', which PyTorch no longer accepts as module names: here they are norm1 ... conv2 (as in
torchvision's DenseNet), and the 2020 code named the stem conv1/norm1/pool1 (here conv0/norm0/pool0):
``remap_state_dict`` renames the keys of either release's checkpoints.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model
from .base import VideoModel
from .cfgs import RANDOM_CFG, hara2018_cfg
from .family import Family, classifier_classes
from .layers import init_weights


class DenseLayer(nn.Sequential):
    """BN-ReLU-conv1x1x1 (bn_size * growth channels), BN-ReLU-conv3x3x3 (growth channels), concatenated to x."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(in_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x):
        new = super().forward(x)
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return torch.cat([x, new], 1)


class DenseBlock(nn.Sequential):
    def __init__(self, num_layers: int, in_features: int, bn_size: int, growth_rate: int, drop_rate: float):
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_features + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1x1 halving the channels, then 2x2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.norm = nn.BatchNorm3d(in_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=1, bias=False)
        self.pool = nn.AvgPool3d(kernel_size=2, stride=2)


# 'features.denseblock1.denselayer1.norm.1.weight' (2018 checkpoints) -> '...denselayer1.norm1.weight'
_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.([^.]+)$")


# 'features.conv1.weight' / 'features.norm1.*' (the 2020 code's stem) -> 'features.conv0.weight' / 'features.norm0.*'
_STEM_2020 = re.compile(r"^features\.(conv|norm)1\.")


def remap_state_dict(state_dict: dict) -> dict:
    """Rename the 2018 release's dense-layer keys ('norm.1', 'conv.2', ...) and the 2020 code's stem keys
    (features.conv1 / norm1) to this module's; others unchanged. The layout is told from the keys."""
    stem_2020 = "features.conv1.weight" in state_dict
    out = OrderedDict()
    for k, v in state_dict.items():
        k = _LEGACY_KEY.sub(r"\1\2.\3", k)
        if stem_2020:
            k = _STEM_2020.sub(r"features.\g<1>0.", k)
        out[k] = v
    return out


def infer_arch_kwargs(state_dict: dict) -> dict:
    """Classes, input channels and the stem's temporal kernel (either release's key names)."""
    kwargs = classifier_classes(state_dict, "classifier.weight")
    stem = state_dict.get("features.conv0.weight", state_dict.get("features.conv1.weight"))
    if stem is not None:
        kwargs["n_input_channels"] = stem.shape[1]
        if stem.shape[2] != 7:
            kwargs["conv1_t_size"] = stem.shape[2]
    return kwargs


def detect(state_dict: dict) -> bool:
    keys = remap_state_dict(state_dict)
    return "features.conv0.weight" in keys and "features.denseblock1.denselayer1.conv1.weight" in keys


FAMILY = Family("densenet3d", arch_names={"densenet": "densenet3d"}, remap_state_dict=remap_state_dict,
                infer_arch_kwargs=infer_arch_kwargs, detect=detect)


class DenseNet3d(VideoModel):
    """3D DenseNet-BC: 7x7x7 conv0, max pool, four dense blocks with transitions, norm5, ReLU, pool, classifier."""

    dynamic_input_shapes = True  # convolutions, fixed-padding pools and a global average pool: any size

    classifier_name = "classifier"
    # The original code's fine-tuning names (model.py's get_module_name drops 'features.'), and the 2020 stem's.
    stage_aliases = {
        "conv0": "stem",
        "conv1": "stem",
        **{f"{kind}{i}": f"features.{kind}{i}" for kind in ("denseblock", "transition") for i in range(1, 5)},
        "norm5": "features.norm5",
    }

    def __init__(
        self,
        block_config=(6, 12, 24, 16),
        growth_rate: int = 32,
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        n_input_channels: int = 3,
        num_classes: int = 400,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
    ):
        super().__init__()
        # conv1_t_size / conv1_t_stride / no_max_pool: the 2020 code's options (the 2018 code: 7, 1, False).
        conv0 = nn.Conv3d(
            n_input_channels,
            num_init_features,
            kernel_size=(conv1_t_size, 7, 7),
            stride=(conv1_t_stride, 2, 2),
            padding=(conv1_t_size // 2, 3, 3),
            bias=False,
        )
        stem = OrderedDict(conv0=conv0, norm0=nn.BatchNorm3d(num_init_features), relu0=nn.ReLU(inplace=True))
        if not no_max_pool:
            stem["pool0"] = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.features = nn.Sequential(stem)
        n = num_init_features
        stages = ["stem"]  # conv0, norm0, pool0
        for i, num_layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{i}", DenseBlock(num_layers, n, bn_size, growth_rate, drop_rate))
            stages.append(f"features.denseblock{i}")
            n += num_layers * growth_rate
            if i != len(block_config):
                self.features.add_module(f"transition{i}", Transition(n, n // 2))
                stages.append(f"features.transition{i}")
                n //= 2
        # The original's norm5 is a BatchNorm2d; its state (and so its checkpoint keys) is the same as a 3d one's.
        self.features.add_module("norm5", nn.BatchNorm3d(n))
        stages.append("features.norm5")
        self.stage_names = tuple(stages)
        self.num_features = n
        self.classifier = nn.Linear(n, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self)

    def forward_features(self, x):
        return F.relu(self.features(x), inplace=True)


RANDOM_CFG_DENSENET = RANDOM_CFG.replace(arch_kwargs={})  # no ResNet arguments


def _densenet3d(block_config, **kwargs):
    return DenseNet3d(block_config=block_config, **kwargs)


@register_model(pretrained={"kinetics400": hara2018_cfg("densenet-121-kinetics.pth", 70.8)}, family=FAMILY)
def densenet3d_121(**kwargs):
    """3D DenseNet-121 (blocks [6,12,24,16], growth 32), 1024-d features."""
    return _densenet3d((6, 12, 24, 16), **kwargs)


@register_model(random_cfg=RANDOM_CFG_DENSENET, family=FAMILY)
def densenet3d_169(**kwargs):
    """3D DenseNet-169 (blocks [6,12,32,32], growth 32), 1664-d features."""
    return _densenet3d((6, 12, 32, 32), **kwargs)


@register_model(pretrained={"kinetics400": hara2018_cfg("densenet-201-kinetics.pth", 72.3)}, family=FAMILY)
def densenet3d_201(**kwargs):
    """3D DenseNet-201 (blocks [6,12,48,32], growth 32), 1920-d features."""
    return _densenet3d((6, 12, 48, 32), **kwargs)


@register_model(random_cfg=RANDOM_CFG_DENSENET, family=FAMILY)
def densenet3d_264(**kwargs):
    """3D DenseNet-264 (blocks [6,12,64,48], growth 32), 2688-d features."""
    return _densenet3d((6, 12, 64, 48), **kwargs)
