"""X3D (Feichtenhofer, CVPR 2020) as PyTorchVideo builds it (pytorchvideo/models/x3d.py, hub/x3d.py), and
PyTorchVideo's mobile-CPU EfficientX3d (models/accelerator/mobile_cpu/efficient_x3d.py, hub/efficient_x3d_mobile_cpu
.py), under their original parameter names so the released files load strictly.

X3D: ``blocks.0`` stem (a (1, 3, 3) conv named ``conv.conv_t`` then a depthwise (5, 1, 1) conv named
``conv.conv_xy``: PyTorchVideo swapped the names, we keep them), ``blocks.1-4`` stages of depthwise bottlenecks with
squeeze-excitation on every other block (``branch2.norm_b.1.block.{0,2}``) and Swish, ``blocks.5`` the head:
1x1x1 conv to 432 x gamma_w, BN, ReLU, average pool with a fixed kernel (T, ceil(crop / 32), ceil(crop / 32)) of
the training clip (stride 1), 1x1x1 conv to 2048, ReLU, then ``proj`` on every position and the average. At the
training size that is one position and the output equals the original's; at larger sizes (the 182 / 256 / 356
test crops) we pool the same way as the original; along a dimension smaller than the kernel the kernel shrinks to
it (global average; the original raises). ``forward_features`` includes the head's pool and gives those
2048-d positions, (B, 2048, t, h, w); ``pre_logits`` is their mean.

EfficientX3d pools globally (AdaptiveAvgPool3d), so any input size behaves the same as in the original.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ..registry import register_model
from .base import VideoModel
from .family import Family
from .pytorchvideo_resnet import (
    PTV_NOTE,
    BasicHead,
    BasicStem,
    Bottleneck,
    Conv2plus1d,
    PTVNet,
    ResBlock,
    ResStage,
    bn,
    conv,
    fixed_kernel_pool,
    init_ptv_weights,
    pytorchvideo_cfg,
)

CITATION_X3D = (
    "@inproceedings{feichtenhofer2020x3d, author={Christoph Feichtenhofer}, title={X3D: Expanding Architectures "
    "for Efficient Video Recognition}, booktitle={CVPR}, year={2020}}"
)
X3D_PAPER = "https://arxiv.org/abs/2004.04730"


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """PyTorchVideo's round_width: width x multiplier to a multiple of divisor, never under 90% of it."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * width else out)


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class SqueezeExcitation(nn.Module):
    """fvcore's SqueezeExcitation (3d): x * sigmoid(conv(relu(conv(mean(x))))); ``block.0`` / ``block.2``."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv3d(channels, reduced, 1), nn.ReLU(inplace=True),
                                   nn.Conv3d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class ProjectedPool(nn.Module):
    """X3D head pool: pre_conv, pre_norm, ReLU, fixed-kernel average (stride 1), post_conv, ReLU."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, kernel):
        super().__init__()
        self.kernel = tuple(kernel)
        self.pre_conv = conv(dim_in, dim_inner, 1)
        self.pre_norm = bn(dim_inner)
        self.pre_act = nn.ReLU(inplace=True)
        self.post_conv = conv(dim_inner, dim_out, 1)
        self.post_act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = fixed_kernel_pool(self.pre_act(self.pre_norm(self.pre_conv(x))), self.kernel)
        return self.post_act(self.post_conv(x))


def x3d_stage(depth: int, dim_in: int, dim_inner: int, dim_out: int, se_ratio: float = 0.0625) -> ResStage:
    """create_x3d_res_stage: spatial stride 2 in the first block; SE on blocks 0, 2, 4, ...; the shortcut
    conv has a BN only when the channels change (X3D's res2 keeps 24 channels: a bare strided conv)."""
    blocks = []
    for i in range(depth):
        c_in, stride = (dim_in, (1, 2, 2)) if i == 0 else (dim_out, (1, 1, 1))
        se = SqueezeExcitation(dim_inner, round_width(dim_inner, se_ratio)) if i % 2 == 0 else nn.Identity()
        branch2 = Bottleneck(conv(c_in, dim_inner, 1), bn(dim_inner),
                             conv(dim_inner, dim_inner, 3, stride=stride, groups=dim_inner),
                             nn.Sequential(bn(dim_inner), se), conv(dim_inner, dim_out, 1), bn(dim_out), act_b=Swish())
        shortcut = conv(c_in, dim_out, 1, stride=stride) if (c_in != dim_out or stride != (1, 1, 1)) else None
        blocks.append(ResBlock(branch2, shortcut, bn(dim_out) if c_in != dim_out else None))
    return ResStage(blocks)


def build_x3d(clip_len: int, crop_size: int, depth_factor: float = 2.2, width_factor: float = 2.0,
              bottleneck_factor: float = 2.25, num_classes: int = 400, n_input_channels: int = 3,
              dropout: float = 0.5, head_dim: int = 2048) -> PTVNet:
    """create_x3d. clip_len and crop_size are the training clip's: they fix the head's pooling kernel."""
    stem_dim = round_width(12, width_factor)
    stem = BasicStem(Conv2plus1d(conv(n_input_channels, stem_dim, (1, 3, 3), stride=(1, 2, 2)),
                                 conv(stem_dim, stem_dim, (5, 1, 1), groups=stem_dim)), stem_dim)
    blocks = [stem]
    dims = [12]
    for _ in range(3):
        dims.append(round_width(dims[-1], 2.0))
    dim_in = stem_dim
    for base_depth, dim in zip((1, 2, 5, 3), dims):
        dim_out = round_width(dim, width_factor)
        dim_inner = int(bottleneck_factor * dim_out)
        blocks.append(x3d_stage(int(math.ceil(depth_factor * base_depth)), dim_in, dim_inner, dim_out))
        dim_in = dim_out
    kernel = (clip_len, math.ceil(crop_size / 32), math.ceil(crop_size / 32))
    blocks.append(BasicHead(head_dim, num_classes, None, dropout,
                            pool=ProjectedPool(dim_out, dim_inner, head_dim, kernel)))
    return PTVNet(blocks, head_dim)


def x3d_cfg(name: str, acc1: float, acc5: float, clip_len: int, frame_step: int, test_size: int):
    return pytorchvideo_cfg(f"{name}.pyth", acc1, acc5, clip_len, frame_step, test_size, X3D_PAPER, CITATION_X3D)



def detect(state_dict: dict) -> bool:
    """X3D (``blocks.0.conv.conv_t``) or EfficientX3d (``s1.pathway0_stem_conv_xy``) state dicts."""
    return "blocks.0.conv.conv_t.weight" in state_dict or "s1.pathway0_stem_conv_xy.kernel.conv.weight" in state_dict


def remap_state_dict(state_dict: dict) -> dict:
    """The released files already use our names."""
    return dict(state_dict)


def infer_arch_kwargs(state_dict: dict) -> dict:
    for key in ("blocks.5.proj.weight", "projection.model.weight"):
        if key in state_dict:
            return {"num_classes": state_dict[key].shape[0]}
    return {}


FAMILY = Family("x3d", remap_state_dict=remap_state_dict, infer_arch_kwargs=infer_arch_kwargs, detect=detect)


@register_model(family=FAMILY, pretrained={"kinetics400": x3d_cfg("X3D_XS", 69.12, 88.63, 4, 12, 182)})
def x3d_xs(num_classes: int = 400, **kwargs):
    """X3D-XS (4x12, trained at 160, tested at 182): 2048-d features."""
    return build_x3d(4, 160, num_classes=num_classes, **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": x3d_cfg("X3D_S", 73.33, 91.27, 13, 6, 182)})
def x3d_s(num_classes: int = 400, **kwargs):
    """X3D-S (13x6, trained at 160, tested at 182): 2048-d features."""
    return build_x3d(13, 160, num_classes=num_classes, **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": x3d_cfg("X3D_M", 75.94, 92.72, 16, 5, 256)})
def x3d_m(num_classes: int = 400, **kwargs):
    """X3D-M (16x5, trained at 224, tested at 256): 2048-d features."""
    return build_x3d(16, 224, num_classes=num_classes, **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": x3d_cfg("X3D_L", 77.44, 93.31, 16, 5, 356)})
def x3d_l(num_classes: int = 400, **kwargs):
    """X3D-L (16x5, depth x5, trained at 312, tested at 356): 2048-d features."""
    return build_x3d(16, 312, depth_factor=5.0, num_classes=num_classes, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# EfficientX3d (mobile CPU): the same network, other module names, a global-average head.

class ConvBnAct(nn.Module):
    """``kernel.conv`` (+ ``kernel.bn``) (+ ReLU): the accelerator's Conv3d*BnAct blocks."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, groups: int = 1, use_bn: bool = True,
                 relu: bool = True):
        super().__init__()
        layers = {"conv": conv(c_in, c_out, kernel, stride=stride, groups=groups)}
        if use_bn:
            layers["bn"] = bn(c_out)
        if relu:
            layers["act"] = nn.ReLU(inplace=True)
        self.kernel = _named_sequential(layers)

    def forward(self, x):
        return self.kernel(x)


def _named_sequential(layers: dict) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


class EfficientSE(nn.Module):
    """``se.block.{0,2}``: the accelerator wraps fvcore's SqueezeExcitation in one more ``se``."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.se = SqueezeExcitation(channels, reduced)

    def forward(self, x):
        return self.se(x)


class EfficientBottleneck(nn.Module):
    """X3dBottleneckBlock: ``layers.{conv_0, conv_1, se, act_func_1, conv_2}``, ``_res_proj`` (conv + BN)."""

    def __init__(self, c_in: int, mid: int, c_out: int, stride: int, se: bool):
        super().__init__()
        s = (1, stride, stride)
        self._res_proj = ConvBnAct(c_in, c_out, 1, stride=s, relu=False) if (stride != 1 or c_in != c_out) else None
        layers = {"conv_0": ConvBnAct(c_in, mid, 1), "conv_1": ConvBnAct(mid, mid, 3, stride=s, groups=mid, relu=False)}
        if se:
            layers["se"] = EfficientSE(mid, round_width(mid, 0.0625))
        layers["act_func_1"] = Swish()
        layers["conv_2"] = ConvBnAct(mid, c_out, 1, relu=False)
        self.layers = _named_sequential(layers)
        self.final_act = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.layers(x)
        return self.final_act((x if self._res_proj is None else self._res_proj(x)) + out)


class EfficientX3d(VideoModel):
    """PyTorchVideo's EfficientX3d (XS / S: the same network): ``s1`` stem, ``s2-s5`` stages, ``head``
    (conv_5, global average, lin_5), ``projection.model``. Logits (head_act "identity", as released)."""

    dynamic_input_shapes = True  # convolutions, fixed-padding pools and AdaptiveAvgPool3d: any size

    classifier_name = "projection.model"
    stage_names = ("s1", "s2", "s3", "s4", "s5", "head")

    def __init__(self, expansion: str = "XS", num_classes: int = 400, dropout: float = 0.5):
        super().__init__()
        if expansion not in ("XS", "S", "M", "L"):
            raise ValueError(f"expansion must be XS, S, M or L, got {expansion!r}")
        self.s1 = _named_sequential({
            "pathway0_stem_conv_xy": ConvBnAct(3, 24, (1, 3, 3), stride=(1, 2, 2), use_bn=False, relu=False),
            "pathway0_stem_conv": ConvBnAct(24, 24, (5, 1, 1), groups=24),
        })
        depths = (5, 10, 25, 15) if expansion == "L" else (3, 5, 11, 7)
        c_in = 24
        for i, (depth, c_out, mid) in enumerate(zip(depths, (24, 48, 96, 192), (54, 108, 216, 432))):
            stage = {f"pathway0_res{b}": EfficientBottleneck(c_in if b == 0 else c_out, mid, c_out, 2 if b == 0 else 1,
                                                             b % 2 == 0) for b in range(depth)}
            setattr(self, f"s{i + 2}", _named_sequential(stage))
            c_in = c_out
        self.head = _named_sequential({"conv_5": ConvBnAct(192, 432, 1), "avg_pool": nn.AdaptiveAvgPool3d(1),
                                       "lin_5": ConvBnAct(432, 2048, 1, use_bn=False)})
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.num_features = 2048
        self.projection = _Projection(2048, num_classes)
        init_ptv_weights(self)

    def forward_features(self, x):
        """``head`` included (conv_5, global average, lin_5): (B, 2048, 1, 1, 1), what the projection sees."""
        return self.head(self.s5(self.s4(self.s3(self.s2(self.s1(x))))))

    def forward_head(self, x, pre_logits: bool = False):
        x = x.mean(dim=(2, 3, 4))
        if pre_logits:
            return x
        if self.dropout is not None:
            x = self.dropout(x)
        return self.projection.model(x)

    def new_classifier(self, num_classes: int, device=None) -> nn.Module:
        return nn.Linear(self.num_features, num_classes, device=device)


class _Projection(nn.Module):
    """FullyConnected: the Linear lives at ``projection.model``."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.model = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()


def efficient_cfg(expansion: str, acc1: float, acc5: float, clip_len: int, frame_step: int, size: int):
    return pytorchvideo_cfg(
        f"efficient_x3d_{expansion}_original_form.pyth", acc1, acc5, clip_len, frame_step, size, X3D_PAPER,
        CITATION_X3D,
        notes=PTV_NOTE.replace("3 spatial x 10 temporal views", "10-clip evaluation")
        + " A bare state dict (no 'model_state'). Clip settings are X3D's (the accelerator docs give none).",
    )


@register_model(family=FAMILY, pretrained={"kinetics400": efficient_cfg("xs", 68.5, 88.0, 4, 12, 182)})
def efficient_x3d_xs(num_classes: int = 400, **kwargs):
    """PyTorchVideo's mobile-CPU X3D-XS (EfficientX3d): global-average head, 2048-d features."""
    return EfficientX3d("XS", num_classes=num_classes, **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": efficient_cfg("s", 73.0, 90.6, 13, 6, 182)})
def efficient_x3d_s(num_classes: int = 400, **kwargs):
    """PyTorchVideo's mobile-CPU X3D-S (EfficientX3d, the XS network trained on 13x6 clips): 2048-d features."""
    return EfficientX3d("S", num_classes=num_classes, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Family facts (module level, for the Family layer).
