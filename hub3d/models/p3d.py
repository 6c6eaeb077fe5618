"""P3D ResNets (Qiu et al., ICCV 2017): bottlenecks whose 3x3x3 conv becomes S (1x3x3) and T (3x1x1) in the
cycle A (S then T), B (S + T in parallel), C (S, then S + T(S)) over res2-res4; res5 is 2D.

Layout and parameter names are qijiezhao/pseudo-3d-pytorch's (``conv1_custom``, ``layer1.0.conv2`` (S),
``conv3`` (T), ``conv4``, ``bn4``, res5's ``conv_normal`` / ``bn_normal``), so its P3D-199 files
(``p3d_rgb_199.checkpoint.pth.tar``, ``p3d_flow_199.checkpoint.pth.tar``: {'state_dict': ...}) load as they are.
Stem (1, 7, 7) stride (1, 2, 2); max pool (2, 3, 3) stride 2; a (2, 1, 1) max pool after res2, res3 and res4;
16 x 160 x 160 input leaves one time step for res5.

Where the original differs: it reshapes res4's (B, C, T, H, W) output with ``view(-1, C, H, W)``, which is a
per-time-step 2D batch only when T = 1 (16-frame clips); hub3d folds time into the batch properly, so longer
clips give per-time res5 maps, and pools globally (the original's AvgPool2d(5) on res5's 5 x 5 map at 160 x 160:
the same numbers there) averaging over time as well.
"""
from __future__ import annotations

from torch import nn

from ..pretrained import PretrainedCfg
from ..registry import register_model
from .base import VideoModel
from .family import Family
from .resnet3d import init_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CITATION_QIU_2017 = (
    "@inproceedings{qiu2017learning, author={Zhaofan Qiu and Ting Yao and Tao Mei}, title={Learning "
    "Spatio-Temporal Representation with Pseudo-3D Residual Networks}, booktitle={ICCV}, year={2017}}"
)
DRIVE_P3D = "https://drive.google.com/drive/folders/1u_l-yvhS0shpW6e0tCiqPE7Bd1qQZKdD"


class P3DBottleneck(nn.Module):
    """1x1 reduce, the S/T pair (A, B or C) or a 3x3 2D conv in res5, 1x1 expand; ``index`` counts blocks over
    the whole net (it picks the A/B/C type and the 2D blocks, as the original's n_s)."""

    expansion = 4

    def __init__(self, in_planes, planes, index, depth_3d, st_struc="ABC", downsample=None):
        super().__init__()
        self.is_3d = index < depth_3d
        self.st = st_struc[index % len(st_struc)]
        if self.is_3d:
            stride = (1, 2, 2) if downsample is not None and index > 0 else 1
            self.conv1 = nn.Conv3d(in_planes, planes, 1, stride=stride, bias=False)
            self.bn1 = nn.BatchNorm3d(planes)
            self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), padding=(0, 1, 1), bias=False)  # S
            self.bn2 = nn.BatchNorm3d(planes)
            self.conv3 = nn.Conv3d(planes, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)  # T
            self.bn3 = nn.BatchNorm3d(planes)
            self.conv4 = nn.Conv3d(planes, planes * 4, 1, bias=False)
            self.bn4 = nn.BatchNorm3d(planes * 4)
        else:
            self.conv1 = nn.Conv2d(in_planes, planes, 1, stride=2 if index == depth_3d else 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv_normal = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn_normal = nn.BatchNorm2d(planes)
            self.conv4 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn4 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def _spatial(self, x):
        return self.relu(self.bn2(self.conv2(x)))

    def _temporal(self, x):
        return self.relu(self.bn3(self.conv3(x)))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        if not self.is_3d:
            out = self.relu(self.bn_normal(self.conv_normal(out)))
        elif self.st == "A":
            out = self._temporal(self._spatial(out))
        elif self.st == "B":
            out = self._spatial(out) + self._temporal(out)
        else:  # C
            s = self._spatial(out)
            out = s + self._temporal(s)
        out = self.bn4(self.conv4(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class P3D(VideoModel):
    dynamic_input_shapes = True  # convolutions, fixed-padding pools, a 2D res5 per time step, a global mean

    def __init__(self, layers, num_classes: int = 400, n_input_channels: int = 3, st_struc: str = "ABC",
                 dropout: float = 0.5):
        super().__init__()
        if not st_struc or set(st_struc) - set("ABC"):
            raise ValueError(f"st_struc must be a sequence of 'A', 'B', 'C', not {st_struc!r}")
        self.in_planes = 64
        self.depth_3d = sum(layers[:3])  # res2-res4 are pseudo-3D, res5 2D
        self._index = 0
        self.conv1_custom = nn.Conv3d(n_input_channels, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3),
                                      bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((2, 3, 3), stride=2, padding=(0, 1, 1))
        self.maxpool_2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        self.layer1 = self._make_layer(64, layers[0], st_struc, first=True)
        self.layer2 = self._make_layer(128, layers[1], st_struc)
        self.layer3 = self._make_layer(256, layers[2], st_struc)
        self.layer4 = self._make_layer(512, layers[3], st_struc)
        self.num_features = self.in_planes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self)

    def _make_layer(self, planes, blocks, st_struc, first=False):
        out_planes = planes * P3DBottleneck.expansion
        if self._index < self.depth_3d:  # shortcut B: 1x1x1 conv, spatial stride except in res2
            down = nn.Sequential(nn.Conv3d(self.in_planes, out_planes, 1, stride=1 if first else (1, 2, 2),
                                           bias=False), nn.BatchNorm3d(out_planes))
        else:
            down = nn.Sequential(nn.Conv2d(self.in_planes, out_planes, 1, stride=2, bias=False),
                                 nn.BatchNorm2d(out_planes))
        layers = []
        for i in range(blocks):
            layers.append(P3DBottleneck(self.in_planes, planes, self._index, self.depth_3d, st_struc,
                                        down if i == 0 else None))
            self.in_planes = out_planes
            self._index += 1
        return nn.Sequential(*layers)

    def forward_features(self, x):
        """res5's map, (B, 2048, T', H', W'): T' = T / 16 time steps, each through the 2D res5."""
        x = self.maxpool(self.relu(self.bn1(self.conv1_custom(x))))
        x = self.maxpool_2(self.layer1(x))
        x = self.maxpool_2(self.layer2(x))
        x = self.maxpool_2(self.layer3(x))
        b, c, t, h, w = x.shape
        x = self.layer4(x.transpose(1, 2).reshape(b * t, c, h, w))
        return x.reshape(b, t, *x.shape[1:]).transpose(1, 2)

    def layer_output(self, name, output, x):
        # res5 (2D) runs each time step as a batch item: give its maps back their time axis, (B, C, T, H, W).
        if output.dim() == 4:
            b = x.shape[0]
            return output.reshape(b, -1, *output.shape[1:]).transpose(1, 2)
        return output

    def forward_head(self, x, pre_logits: bool = False):
        x = self.dropout(x.mean(dim=(2, 3, 4)))
        return x if pre_logits else self.fc(x)


# ---------------------------------------------------------------------------------------------------------
# What a state dict determines (qijiezhao's names are hub3d's: no remapping).


def detect(state_dict: dict) -> bool:
    return "conv1_custom.weight" in state_dict


def infer_arch_kwargs(state_dict: dict) -> dict:
    kwargs = {"num_classes": state_dict["fc.weight"].shape[0] if "fc.weight" in state_dict else 0}
    if "conv1_custom.weight" in state_dict:
        kwargs["n_input_channels"] = state_dict["conv1_custom.weight"].shape[1]
    return kwargs


def p3d_cfg(stream: str, **changes) -> PretrainedCfg:
    """qijiezhao's P3D-199 Kinetics files (converted from the authors' Caffe models): the repo's input_mean/std,
    scale_size 256 (its property: 160 * 256 // 160), 160 crop, 16 frames."""
    flow = stream == "flow"
    base = dict(
        num_classes=400,
        labels="kinetics400.txt",
        labels_verified=False,
        arch_kwargs={"n_input_channels": 2} if flow else {},
        value_scale=1.0,
        mean=(0.5, 0.5) if flow else IMAGENET_MEAN,
        std=(sum(IMAGENET_STD) / 3,) * 2 if flow else IMAGENET_STD,
        resize=256,
        crop_size=160,
        clip_len=16,
        dataset="kinetics400",
        file=f"p3d_{stream}_199.checkpoint.pth.tar",
        drive_folder=DRIVE_P3D,
        release="qijiezhao/pseudo-3d-pytorch (Google Drive / BaiduYun only)",
        license="MIT",
        paper="https://arxiv.org/abs/1711.10305",
        citation=CITATION_QIU_2017,
        notes=(
            "Preprocessing as the repo's model attributes declare (unverified against the Caffe training); "
            "class order assumed alphabetical (unverified)."
            + (" Flow: TV-L1 x/y images, 2 channels." if flow else "")
        ),
    )
    base.update(changes)
    return PretrainedCfg(**base)


RANDOM_CFG = p3d_cfg("rgb").replace(file=None, drive_folder=None, dataset=None, notes=None)


FAMILY = Family("p3d", infer_arch_kwargs=infer_arch_kwargs, detect=detect)


@register_model(family=FAMILY, random_cfg=RANDOM_CFG)
def p3d_63(**kwargs):
    """P3D-63 (ResNet-50 layout [3, 4, 6, 3]), 2048-d features, 16x160x160 clips."""
    return P3D([3, 4, 6, 3], **kwargs)


@register_model(family=FAMILY, random_cfg=RANDOM_CFG)
def p3d_131(**kwargs):
    """P3D-131 (ResNet-101 layout [3, 4, 23, 3]), 2048-d features."""
    return P3D([3, 4, 23, 3], **kwargs)


@register_model(
    family=FAMILY,
    pretrained={
        "kinetics400": p3d_cfg("rgb", metrics={"kinetics400_val_top1": 72.1}),
        "kinetics400_flow": p3d_cfg("flow", metrics={"kinetics400_val_top1": 61.2}),
    }
)
def p3d_199(**kwargs):
    """P3D-199 (ResNet-152 layout [3, 8, 36, 3]), 2048-d features; Kinetics-400 RGB and flow weights."""
    return P3D([3, 8, 36, 3], **kwargs)
