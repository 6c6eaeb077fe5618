"""PyTorchVideo's ResNet-style video models (facebookresearch/pytorchvideo, pytorchvideo/models/{resnet, csn,
r2plus1d, slowfast, head, stem, net}.py; hub entry points in pytorchvideo/models/hub/): Slow, C2D, I3D, R(2+1)D,
CSN and SlowFast, with the Kinetics-400 weights PyTorchVideo hosts.

Built under PyTorchVideo's own parameter names (``blocks.0.conv.weight``, ``blocks.1.res_blocks.0.branch2.conv_a
.weight``, ..., ``blocks.5.proj.weight``) so its ``.pyth`` files (``{"model_state": state_dict}``) load strictly,
without PyTorchVideo. ``blocks`` keeps the original's indices: C2D and I3D have a parameter-free max pool at
``blocks.2``, so their stages are ``blocks.1, 3, 4, 5`` and their head ``blocks.6``; SlowFast's pathway pool is
``blocks.5`` and its head ``blocks.6``.

Differences from the original, all at the head:
- ``model(x)`` gives logits: R(2+1)D-50's released head applies a softmax in eval; we never do.
- The head pools with a fixed kernel sized from the training clip (stride 1), projects every position, then
  averages what is left; at the training input size that is one position, and our output equals the original's.
  On a larger feature map we do the same (the original's result, e.g. slow_r50 at its 256 test crop: an 8x8 map,
  a 7x7 kernel, 2x2 positions averaged); along a dimension smaller than the kernel (where the original raises)
  the kernel shrinks to that size, i.e. a global average along it. ``forward_head(..., pre_logits=True)`` is the
  mean of the pooled positions: the vector that, projected, gives the logits.
- SlowFast takes ``[slow, fast]`` like the original but never overwrites the caller's list.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..pretrained import PretrainedCfg
from ..registry import register_model
from .base import VideoModel
from .family import Family

PTV_MEAN = (0.45, 0.45, 0.45)
PTV_STD = (0.225, 0.225, 0.225)
PTV_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"
PTV_NOTE = (
    "PyTorchVideo publishes no checksum for its files: unpublished; hub3d records the sha256 of the first "
    "verified download. Accuracy: PyTorchVideo model zoo, 3 spatial x 10 temporal views."
)
CITATION_PYTORCHVIDEO = (
    "@inproceedings{fan2021pytorchvideo, author={Haoqi Fan and Tullie Murrell and Heng Wang and Kalyan Vasudev "
    "Alwala and Yanghao Li and Yilei Li and Bo Xiong and Nikhila Ravi and Meng Li and Haichuan Yang and Jitendra "
    "Malik and Ross Girshick and Matt Feiszli and Aaron Adcock and Wan-Yen Lo and Christoph Feichtenhofer}, "
    "title={{PyTorchVideo}: A Deep Learning Library for Video Understanding}, booktitle={ACM Multimedia}, year={2021}}"
)
CITATION_SLOWFAST = (
    "@inproceedings{feichtenhofer2019slowfast, author={Christoph Feichtenhofer and Haoqi Fan and Jitendra Malik and "
    "Kaiming He}, title={SlowFast Networks for Video Recognition}, booktitle={ICCV}, year={2019}}"
)
CITATION_CSN = (
    "@inproceedings{tran2019video, author={Du Tran and Heng Wang and Lorenzo Torresani and Matt Feiszli}, "
    "title={Video Classification with Channel-Separated Convolutional Networks}, booktitle={ICCV}, year={2019}}"
)
CITATION_I3D = (
    "@inproceedings{carreira2017quo, author={Joao Carreira and Andrew Zisserman}, title={Quo Vadis, Action "
    "Recognition? A New Model and the Kinetics Dataset}, booktitle={CVPR}, year={2017}}"
)
CITATION_R2PLUS1D = (
    "@inproceedings{tran2018closer, author={Du Tran and Heng Wang and Lorenzo Torresani and Jamie Ray and "
    "Yann LeCun and Manohar Paluri}, title={A Closer Look at Spatiotemporal Convolutions for Action "
    "Recognition}, booktitle={CVPR}, year={2018}}"
)

STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def pytorchvideo_cfg(file: str, acc1: float, acc5: float, clip_len: int, frame_step: int, size: int,
                     paper: str, citation: str, **changes) -> PretrainedCfg:
    """A PyTorchVideo Kinetics-400 file: frames / 255, mean 0.45, std 0.225, 30 fps, short side = crop (the
    model zoo's test views)."""
    fields = dict(
        num_classes=400,
        labels="kinetics400.txt",
        labels_verified=False,  # PyTorchVideo numbers classes by kinetics_classnames.json: not checked here
        value_scale=1.0,
        mean=PTV_MEAN,
        std=PTV_STD,
        resize=size,
        crop_size=size,
        clip_len=clip_len,
        frame_step=frame_step,
        fps=30.0,
        dataset="kinetics400",
        file=file,
        url=PTV_URL + file,
        sha256=None,
        release="PyTorchVideo",
        metrics={"kinetics400_val_video_acc@1": acc1, "kinetics400_val_video_acc@5": acc5},
        license="Apache-2.0",
        paper=paper,
        citation=citation + " " + CITATION_PYTORCHVIDEO,
        notes=PTV_NOTE,
    )
    return PretrainedCfg(**{**fields, **changes})


# ---------------------------------------------------------------------------------------------------------
# Blocks, under the original's attribute names.

def bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


def conv(c_in: int, c_out: int, kernel, stride=1, groups: int = 1) -> nn.Conv3d:
    kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), groups=groups,
                     bias=False)


class BasicStem(nn.Module):
    """conv, norm, ReLU, optional max pool (ResNetBasicStem)."""

    def __init__(self, conv_module: nn.Module, channels: int, pool: Optional[nn.Module] = None):
        super().__init__()
        self.conv = conv_module
        self.norm = bn(channels)
        self.activation = nn.ReLU(inplace=True)
        self.pool = pool

    def forward(self, x):
        x = self.activation(self.norm(self.conv(x)))
        return x if self.pool is None else self.pool(x)


def res_stem(c_in: int, c_out: int, kernel, pool: bool) -> BasicStem:
    """Stride (1, 2, 2) conv, then (with pool) a (1, 3, 3) max pool of stride (1, 2, 2)."""
    stem_conv = conv(c_in, c_out, kernel, stride=(1, 2, 2))
    max_pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)) if pool else None
    return BasicStem(stem_conv, c_out, max_pool)


class Conv2plus1d(nn.Module):
    """conv_t, norm, ReLU, conv_xy (PyTorchVideo's Conv2plus1d; X3D's stem reuses the names in its own order)."""

    def __init__(self, conv_t: nn.Module, conv_xy: nn.Module, norm: Optional[nn.Module] = None):
        super().__init__()
        self.conv_t = conv_t
        self.norm = norm
        self.activation = nn.ReLU(inplace=True) if norm is not None else None
        self.conv_xy = conv_xy

    def forward(self, x):
        x = self.conv_t(x)
        if self.norm is not None:
            x = self.activation(self.norm(x))
        return self.conv_xy(x)


class Bottleneck(nn.Module):
    """conv_a, norm_a, act_a, conv_b, norm_b, act_b, conv_c, norm_c (BottleneckBlock)."""

    def __init__(self, conv_a, norm_a, conv_b, norm_b, conv_c, norm_c, act_b: Optional[nn.Module] = None):
        super().__init__()
        self.conv_a, self.norm_a, self.act_a = conv_a, norm_a, nn.ReLU(inplace=True)
        self.conv_b, self.norm_b, self.act_b = conv_b, norm_b, act_b or nn.ReLU(inplace=True)
        self.conv_c, self.norm_c = conv_c, norm_c

    def forward(self, x):
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """ReLU(shortcut(x) + branch2(x)); the shortcut is branch1_conv (+ branch1_norm) or the identity."""

    def __init__(self, branch2: nn.Module, branch1_conv: Optional[nn.Module] = None,
                 branch1_norm: Optional[nn.Module] = None):
        super().__init__()
        self.branch1_conv = branch1_conv
        self.branch1_norm = branch1_norm
        self.branch2 = branch2
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    def __init__(self, res_blocks: Sequence[nn.Module]):
        super().__init__()
        self.res_blocks = nn.ModuleList(res_blocks)

    def forward(self, x):
        for block in self.res_blocks:
            x = block(x)
        return x


def res_stage(depth: int, dim_in: int, dim_inner: int, dim_out: int, conv_a_kernels, conv_b_kernel=(1, 3, 3),
              stride=(1, 1, 1), conv_b_groups: int = 1, conv_b_2plus1d: bool = False) -> ResStage:
    """create_res_stage: ``depth`` bottleneck blocks; the first has ``stride`` (on conv_b; every zoo model has
    temporal stride 1 on conv_a) and a projection shortcut when the shape changes. ``conv_a_kernels`` is one
    kernel or a list repeated over the blocks (I3D's alternating (3, 1, 1) / (1, 1, 1))."""
    if isinstance(conv_a_kernels[0], int):
        conv_a_kernels = [conv_a_kernels]
    kernels = (list(conv_a_kernels) * depth)[:depth]
    blocks = []
    for i in range(depth):
        c_in, s = (dim_in, tuple(stride)) if i == 0 else (dim_out, (1, 1, 1))
        groups = dim_inner if conv_b_groups == -1 else conv_b_groups  # -1: depthwise (CSN)
        if conv_b_2plus1d:  # R(2+1)D: conv_t (3, 1, 1) to dim_inner, BN, ReLU, conv_xy (1, 3, 3)
            kt, kh, kw = conv_b_kernel
            conv_b = Conv2plus1d(conv(dim_inner, dim_inner, (kt, 1, 1), stride=(s[0], 1, 1)),
                                 conv(dim_inner, dim_inner, (1, kh, kw), stride=(1, s[1], s[2])), bn(dim_inner))
        else:
            conv_b = conv(dim_inner, dim_inner, conv_b_kernel, stride=s, groups=groups)
        branch2 = Bottleneck(conv(c_in, dim_inner, kernels[i]), bn(dim_inner), conv_b, bn(dim_inner),
                             conv(dim_inner, dim_out, 1), bn(dim_out))
        project = c_in != dim_out or s != (1, 1, 1)
        blocks.append(ResBlock(branch2, conv(c_in, dim_out, 1, stride=s) if project else None,
                               bn(dim_out) if project else None))
    return ResStage(blocks)


def fixed_kernel_pool(x: torch.Tensor, kernel: Optional[Sequence[int]]) -> torch.Tensor:
    """Average pool with the original's fixed kernel, stride 1; a kernel side larger than the map shrinks to it
    (a global average along that dimension, where the original raises)."""
    if kernel is None:
        return x
    kernel = tuple(min(k, s) for k, s in zip(kernel, x.shape[2:]))
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":  # torch has no bf16 avg_pool3d on CPU
        return F.avg_pool3d(x.float(), kernel, stride=1).to(x.dtype)
    return F.avg_pool3d(x, kernel, stride=1)


class BasicHead(nn.Module):
    """ResNetBasicHead: fixed-kernel pool (stride 1), dropout, ``proj`` on every position, average.

    ``pool`` is a module (X3D's ProjectedPool) or None; ``pool_kernel`` the fixed average kernel (None: none).
    No output activation: logits. PTVNet runs ``pool`` in forward_features (X3D's 2048-d positions are its
    feature map) and the rest in forward_head.
    """

    def __init__(self, in_features: int, num_classes: int, pool_kernel: Optional[Sequence[int]],
                 dropout: float = 0.5, pool: Optional[nn.Module] = None):
        super().__init__()
        self.pool_kernel = tuple(pool_kernel) if pool_kernel is not None else None
        self.pool = pool
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.proj = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Everything after ``pool``: the fixed-kernel average, then the mean (pre_logits) or the logits."""
        x = fixed_kernel_pool(x, self.pool_kernel)
        if pre_logits:
            return x.mean(dim=(2, 3, 4))
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.proj(x.permute(0, 2, 3, 4, 1))  # the original's order: project each position, then average
        return x.mean(dim=(1, 2, 3))

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x if self.pool is None else self.pool(x), pre_logits)


class PTVNet(VideoModel):
    """A PyTorchVideo ``Net``: ``blocks`` in order, the last one the head (``blocks.<n>.proj`` the classifier)."""

    def __init__(self, blocks: Sequence[nn.Module], num_features: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.num_features = num_features
        head = len(self.blocks) - 1
        self.classifier_name = f"blocks.{head}.proj"
        # Stages for freeze_until: every block with parameters (the stem first, the head last).
        self.stage_names = tuple(f"blocks.{i}" for i, b in enumerate(self.blocks) if any(True for _ in b.parameters()))
        init_ptv_weights(self)

    def forward_features(self, x):
        """The last stage's map (X3D: the head's 2048-d pooled positions; SlowFast: both pathways pooled and
        concatenated), (B, num_features, t, h, w)."""
        for block in self.blocks[:-1]:
            x = block(x)
        head = self.blocks[-1]
        return x if head.pool is None else head.pool(x)

    def forward_head(self, x, pre_logits: bool = False):
        return self.blocks[-1].head(x, pre_logits=pre_logits)

    @property
    def feature_layers(self) -> list[str]:
        # Every block before the head (pool blocks included; the head's pool runs as a function, not a hook).
        return [f"blocks.{i}" for i in range(len(self.blocks) - 1)]

    def new_classifier(self, num_classes: int, device=None) -> nn.Module:
        fc = nn.Linear(self.num_features, num_classes, device=device)
        nn.init.normal_(fc.weight, std=0.01)
        nn.init.zeros_(fc.bias)
        return fc


def init_ptv_weights(model: nn.Module) -> None:
    """init_net_weights: Kaiming-normal convs (fan_out), BN weight 1 (0 for a block's last BN), bias 0,
    classifier N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, Bottleneck) and isinstance(m.norm_c, nn.BatchNorm3d):
            nn.init.zeros_(m.norm_c.weight)


# ---------------------------------------------------------------------------------------------------------
# Single-pathway ResNets (create_resnet, create_r2plus1d, create_csn).

def build_resnet(depth: int, stem_kernel, conv_a_kernels, head_kernel, num_classes: int = 400,
                 n_input_channels: int = 3, stem_pool: bool = True, stage1_pool: bool = False,
                 conv_b_kernel=(1, 3, 3), conv_b_groups: int = 1, conv_b_2plus1d: bool = False,
                 spatial_strides=(1, 2, 2, 2), temporal_strides=(1, 1, 1, 1), dropout: float = 0.5) -> PTVNet:
    blocks = [res_stem(n_input_channels, 64, stem_kernel, stem_pool)]
    dim_in, dim_out = 64, 256
    for i, n in enumerate(STAGE_DEPTHS[depth]):
        blocks.append(res_stage(n, dim_in, dim_out // 4, dim_out, conv_a_kernels[i], conv_b_kernel,
                                (temporal_strides[i], spatial_strides[i], spatial_strides[i]), conv_b_groups,
                                conv_b_2plus1d))
        if i == 0 and stage1_pool:  # C2D / I3D: halve T after res2 (a parameter-free block of its own)
            blocks.append(nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)))
        dim_in, dim_out = dim_out, dim_out * 2
    blocks.append(BasicHead(dim_in, num_classes, head_kernel, dropout))
    return PTVNet(blocks, dim_in)


SLOW_CONV_A = ((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1))



def detect(state_dict: dict) -> bool:
    """Is this a PyTorchVideo ResNet-style state dict (Net with a basic head)?"""
    return "blocks.0.conv.weight" in state_dict or "blocks.0.multipathway_blocks.0.conv.weight" in state_dict


def remap_state_dict(state_dict: dict) -> dict:
    """PyTorchVideo files already use our names."""
    return dict(state_dict)


def infer_arch_kwargs(state_dict: dict) -> dict:
    """num_classes and input channels, from the head's projection and the stem."""
    kwargs = {}
    heads = [k for k in state_dict if k.startswith("blocks.") and k.endswith(".proj.weight")]
    if heads:
        kwargs["num_classes"] = state_dict[max(heads, key=lambda k: int(k.split(".")[1]))].shape[0]
    for key in ("blocks.0.conv.weight", "blocks.0.multipathway_blocks.0.conv.weight"):
        if key in state_dict:
            kwargs["n_input_channels"] = state_dict[key].shape[1]
    return kwargs


FAMILY = Family("pytorchvideo_resnet", remap_state_dict=remap_state_dict, infer_arch_kwargs=infer_arch_kwargs, detect=detect)


@register_model(family=FAMILY, pretrained={"kinetics400": pytorchvideo_cfg(
    "SLOW_8x8_R50.pyth", 74.58, 91.63, 8, 8, 256, "https://arxiv.org/abs/1812.03982", CITATION_SLOWFAST)})
def slow_r50(num_classes: int = 400, **kwargs):
    """PyTorchVideo's Slow-only R50 (8x8): (1, 7, 7) stem, temporal convs in res4-res5, 2048-d features."""
    return build_resnet(50, (1, 7, 7), SLOW_CONV_A, (8, 7, 7), num_classes, **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": pytorchvideo_cfg(
    "C2D_8x8_R50.pyth", 71.46, 89.68, 8, 8, 256, "https://arxiv.org/abs/1711.07971", CITATION_SLOWFAST)})
def c2d_r50(num_classes: int = 400, **kwargs):
    """PyTorchVideo's C2D R50 (8x8): 2D convolutions only, a (2, 1, 1) max pool after res2, 2048-d features."""
    return build_resnet(50, (1, 7, 7), ((1, 1, 1),) * 4, (4, 7, 7), num_classes, stage1_pool=True, **kwargs)


I3D_CONV_A = ((3, 1, 1), [(3, 1, 1), (1, 1, 1)], [(3, 1, 1), (1, 1, 1)], [(1, 1, 1), (3, 1, 1)])


@register_model(family=FAMILY, pretrained={"kinetics400": pytorchvideo_cfg(
    "I3D_8x8_R50.pyth", 73.27, 90.70, 8, 8, 256, "https://arxiv.org/abs/1705.07750", CITATION_I3D)})
def i3d_r50(num_classes: int = 400, **kwargs):
    """PyTorchVideo's I3D R50 (8x8): (5, 7, 7) stem, alternating inflated blocks, (2, 1, 1) pool after res2."""
    return build_resnet(50, (5, 7, 7), I3D_CONV_A, (4, 7, 7), num_classes, stage1_pool=True, **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": pytorchvideo_cfg(
    "R2PLUS1D_16x4_R50.pyth", 76.01, 92.23, 16, 4, 256, "https://arxiv.org/abs/1711.11248", CITATION_R2PLUS1D,
    notes=PTV_NOTE + " The original head applies a softmax in eval; hub3d's model gives logits.")})
def r2plus1d_r50(num_classes: int = 400, **kwargs):
    """PyTorchVideo's R(2+1)D-50 (16x4): (2+1)D conv_b, no stem pool, strides on conv_b; logits (no softmax)."""
    return build_resnet(50, (1, 7, 7), ((1, 1, 1),) * 4, (4, 7, 7), num_classes, stem_pool=False,
                        conv_b_kernel=(3, 3, 3), conv_b_2plus1d=True, spatial_strides=(2, 2, 2, 2),
                        temporal_strides=(1, 1, 2, 2), **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": pytorchvideo_cfg(
    "CSN_32x2_R101.pyth", 77.00, 92.90, 32, 2, 256, "https://arxiv.org/abs/1904.02811", CITATION_CSN)})
def csn_r101(num_classes: int = 400, **kwargs):
    """PyTorchVideo's ir-CSN-101 (32x2): depthwise (3, 3, 3) conv_b, temporal strides in res3-res5."""
    return build_resnet(101, (3, 7, 7), ((1, 1, 1),) * 4, (4, 7, 7), num_classes, conv_b_kernel=(3, 3, 3),
                        conv_b_groups=-1, temporal_strides=(1, 2, 2, 2), dropout=0.0, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# SlowFast (create_slowfast): two pathways, fast -> slow lateral fusion after the stem and res2-res4.

class FuseFastToSlow(nn.Module):
    """conv_fast_to_slow (time-strided by alpha), norm, ReLU; concatenated to the slow pathway's channels."""

    def __init__(self, fast_channels: int, kernel_t: int, alpha: int, ratio: int = 2):
        super().__init__()
        self.conv_fast_to_slow = conv(fast_channels, fast_channels * ratio, (kernel_t, 1, 1), stride=(alpha, 1, 1))
        self.norm = bn(fast_channels * ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        fuse = self.activation(self.norm(self.conv_fast_to_slow(x[1])))
        return [torch.cat([x[0], fuse], 1), x[1]]


class MultiPathWayWithFuse(nn.Module):
    """Each pathway through its block, then the fusion; returns a new list (the original writes into its input)."""

    def __init__(self, multipathway_blocks: Sequence[nn.Module], multipathway_fusion: Optional[nn.Module]):
        super().__init__()
        self.multipathway_blocks = nn.ModuleList(multipathway_blocks)
        self.multipathway_fusion = multipathway_fusion

    def forward(self, x):
        out = [block(xi) for block, xi in zip(self.multipathway_blocks, x)]
        return out if self.multipathway_fusion is None else self.multipathway_fusion(out)


class PoolConcatPathway(nn.Module):
    """Each pathway through its fixed-kernel pool, then concatenated on channels (``blocks.5``).

    When the pooled pathways disagree in size (inputs other than the training clip's, where the original fails)
    each is averaged over what is left first.
    """

    def __init__(self, kernels: Sequence[Sequence[int]]):
        super().__init__()
        self.kernels = [tuple(k) for k in kernels]

    def forward(self, x):
        pooled = [fixed_kernel_pool(xi, k) for xi, k in zip(x, self.kernels)]
        if len({tuple(p.shape[2:]) for p in pooled}) > 1:
            pooled = [p.mean(dim=(2, 3, 4), keepdim=True) for p in pooled]
        return torch.cat(pooled, 1)


class SlowFast(PTVNet):
    """forward / forward_features take ``[slow, fast]`` (slow: T / alpha frames of the fast pathway's T).

    forward_features gives the pathways pooled with their fixed kernels and concatenated (``blocks.5``'s output,
    (B, 2304, t, h, w)); forward_head projects each position and averages, as the original.
    """

    def __init__(self, depth: int = 50, fusion_kernel_t: int = 7, num_classes: int = 400,
                 n_input_channels: int = 3, alpha: int = 4, beta_inv: int = 8, head_kernels=((8, 7, 7), (32, 7, 7)),
                 dropout: float = 0.5):
        slow_conv_a = SLOW_CONV_A
        fast_conv_a = ((3, 1, 1),) * 4
        fast0 = 64 // beta_inv
        stems = [res_stem(n_input_channels, 64, (1, 7, 7), True), res_stem(n_input_channels, fast0, (5, 7, 7), True)]
        blocks = [MultiPathWayWithFuse(stems, FuseFastToSlow(fast0, fusion_kernel_t, alpha))]
        dim_in, dim_out = 64, 256
        depths = STAGE_DEPTHS[depth]
        for i, n in enumerate(depths):
            s = 1 if i == 0 else 2
            slow = res_stage(n, dim_in + dim_in * 2 // beta_inv, dim_out // 4, dim_out, slow_conv_a[i], stride=(1, s, s))
            fast = res_stage(n, dim_in // beta_inv, dim_out // 4 // beta_inv, dim_out // beta_inv, fast_conv_a[i],
                             stride=(1, s, s))
            fusion = FuseFastToSlow(dim_out // beta_inv, fusion_kernel_t, alpha) if i < len(depths) - 1 else None
            blocks.append(MultiPathWayWithFuse([slow, fast], fusion))
            dim_in, dim_out = dim_out, dim_out * 2
        features = dim_in + dim_in // beta_inv
        blocks.append(PoolConcatPathway(head_kernels))
        blocks.append(BasicHead(features, num_classes, None, dropout))
        super().__init__(blocks, features)
        self.alpha = alpha

    def forward_features(self, x):
        if not isinstance(x, (list, tuple)) or len(x) != 2:
            raise TypeError("SlowFast takes a list [slow, fast] of two (B, C, T, H, W) tensors "
                            f"(slow: T / {self.alpha} frames), got {type(x).__name__}")
        return super().forward_features(list(x))  # a copy: the caller's list stays as it was

    def example_input(self, batch_size: int = 1, clip_len: int = 32, size=224, channels: int = 3):
        fast = super().example_input(batch_size, clip_len, size, channels)
        return [fast[:, :, : max(1, clip_len // self.alpha)].clone(), fast]


def slowfast_cfg(file: str, acc1: float, acc5: float) -> PretrainedCfg:
    return pytorchvideo_cfg(file, acc1, acc5, 32, 2, 256, "https://arxiv.org/abs/1812.03982", CITATION_SLOWFAST,
                            pathway_alpha=4)


@register_model(family=FAMILY, pretrained={"kinetics400": slowfast_cfg("SLOWFAST_8x8_R50.pyth", 76.94, 92.69)})
def slowfast_r50(num_classes: int = 400, **kwargs):
    """PyTorchVideo's SlowFast R50 (8x8, alpha 4): input [slow 8 frames, fast 32 frames], 2304-d features."""
    return SlowFast(50, 7, num_classes, **kwargs)


@register_model(family=FAMILY, pretrained={"kinetics400": slowfast_cfg("SLOWFAST_8x8_R101.pyth", 77.90, 93.27)})
def slowfast_r101(num_classes: int = 400, **kwargs):
    """PyTorchVideo's SlowFast R101 (8x8, alpha 4, (5, 1, 1) fusion): [slow 8, fast 32 frames], 2304-d features."""
    return SlowFast(101, 5, num_classes, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Family facts (module level, for the Family layer).
