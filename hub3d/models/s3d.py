"""torchvision's S3D (pytorch/vision torchvision/models/video/s3d.py; Xie et al., ECCV 2018), under torchvision's
parameter names (``features.0.0.0.weight``, ..., ``classifier.1.weight``) so ``s3d-d76dad2f.pth`` (a bare state
dict) loads strictly, without torchvision.

Every conv is Conv3dNormActivation (conv without bias, BN eps 1e-3 momentum 1e-3, ReLU); spatial and temporal
convolutions are separated. The head averages with a fixed (2, 7, 7) kernel, stride 1 (16 frames at 224: one
position), applies a 1x1x1 conv classifier and averages what is left, as the original; a kernel side larger than
the map shrinks to it (the original raises). ``pre_logits`` is the mean of the pooled 1024-d positions.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..pretrained import TORCHVISION_KINETICS_MEAN, TORCHVISION_KINETICS_STD, PretrainedCfg
from ..registry import register_model
from .base import VideoModel
from .family import Family
from .pytorchvideo_resnet import fixed_kernel_pool

CITATION_S3D = (
    "@inproceedings{xie2018rethinking, author={Saining Xie and Chen Sun and Jonathan Huang and Zhuowen Tu and "
    "Kevin Murphy}, title={Rethinking Spatiotemporal Feature Learning: Speed-Accuracy Trade-offs in Video "
    "Classification}, booktitle={ECCV}, year={2018}}"
)


def conv_bn_relu(c_in: int, c_out: int, kernel=1, stride=1, padding=0) -> nn.Sequential:
    """Conv3dNormActivation: ``.0`` conv, ``.1`` BN, ``.2`` ReLU."""
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm3d(c_out, eps=0.001, momentum=0.001), nn.ReLU(inplace=True))


def sep_conv(c_in: int, c_out: int, k: int, stride: int, pad: int) -> nn.Sequential:
    """TemporalSeparableConv: (1, k, k) spatial then (k, 1, 1) temporal."""
    return nn.Sequential(conv_bn_relu(c_in, c_out, (1, k, k), (1, stride, stride), (0, pad, pad)),
                         conv_bn_relu(c_out, c_out, (k, 1, 1), (stride, 1, 1), (pad, 0, 0)))


class SepInception(nn.Module):
    """SepInceptionBlock3D: four branches concatenated."""

    def __init__(self, c_in, b0, b1_mid, b1, b2_mid, b2, b3):
        super().__init__()
        self.branch0 = conv_bn_relu(c_in, b0)
        self.branch1 = nn.Sequential(conv_bn_relu(c_in, b1_mid), sep_conv(b1_mid, b1, 3, 1, 1))
        self.branch2 = nn.Sequential(conv_bn_relu(c_in, b2_mid), sep_conv(b2_mid, b2, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv_bn_relu(c_in, b3))

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class S3D(VideoModel):
    """S3D: ``features`` (stem + 9 separable Inception blocks), (2, 7, 7) average, 1x1x1 conv ``classifier.1``."""

    classifier_name = "classifier.1"
    stage_names = ("features.0", "features.5", "features.8", "features.14")  # stem, Mixed_3, Mixed_4, Mixed_5
    head_kernel = (2, 7, 7)

    def __init__(self, num_classes: int = 400, dropout: float = 0.2):
        super().__init__()
        pool = nn.MaxPool3d
        self.features = nn.Sequential(
            sep_conv(3, 64, 7, 2, 3),
            pool((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            conv_bn_relu(64, 64),
            sep_conv(64, 192, 3, 1, 1),
            pool((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            SepInception(192, 64, 96, 128, 16, 32, 32),
            SepInception(256, 128, 128, 192, 32, 96, 64),
            pool(3, stride=2, padding=1),
            SepInception(480, 192, 96, 208, 16, 48, 64),
            SepInception(512, 160, 112, 224, 24, 64, 64),
            SepInception(512, 128, 128, 256, 24, 64, 64),
            SepInception(512, 112, 144, 288, 32, 64, 64),
            SepInception(528, 256, 160, 320, 32, 128, 128),
            pool(2, stride=2),
            SepInception(832, 256, 160, 320, 32, 128, 128),
            SepInception(832, 384, 192, 384, 48, 128, 128),
        )
        self.num_features = 1024
        self.classifier = nn.Sequential(OrderedDict(
            [("0", nn.Dropout(dropout)), ("1", self.new_classifier(num_classes) if num_classes > 0 else nn.Identity())]
        ))

    def new_classifier(self, num_classes: int, device=None) -> nn.Module:
        return nn.Conv3d(self.num_features, num_classes, 1, device=device)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = fixed_kernel_pool(x, self.head_kernel)
        if pre_logits:
            return x.mean(dim=(2, 3, 4))
        return self.classifier(x).mean(dim=(2, 3, 4))



def detect(state_dict: dict) -> bool:
    return "features.0.0.0.weight" in state_dict and "classifier.1.weight" in state_dict


def remap_state_dict(state_dict: dict) -> dict:
    return dict(state_dict)


def infer_arch_kwargs(state_dict: dict) -> dict:
    w = state_dict.get("classifier.1.weight")
    return {} if w is None else {"num_classes": w.shape[0]}


FAMILY = Family("s3d", remap_state_dict=remap_state_dict, infer_arch_kwargs=infer_arch_kwargs, detect=detect)


@register_model(family=FAMILY, pretrained={"kinetics400": PretrainedCfg(
    num_classes=400,
    labels="kinetics400.txt",
    labels_verified=True,  # torchvision's categories: the alphabetical Kinetics-400 names
    value_scale=1.0,
    mean=TORCHVISION_KINETICS_MEAN,
    std=TORCHVISION_KINETICS_STD,
    resize=(256, 256),
    crop_size=224,
    clip_len=16,
    fps=15.0,
    dataset="kinetics400",
    file="s3d-d76dad2f.pth",
    url="https://download.pytorch.org/models/s3d-d76dad2f.pth",
    sha256="d76dad2f",
    release="torchvision",
    metrics={"kinetics400_val_video_acc@1": 68.368, "kinetics400_val_video_acc@5": 88.050},
    license="BSD-3-Clause",
    paper="https://arxiv.org/abs/1712.04851",
    citation=CITATION_S3D,
    notes="torchvision's accuracies: clip level, frame_rate 15, clips_per_video 1, clip_len 128. hub3d's default "
          "clip is 16 frames, the size the (2, 7, 7) head kernel covers exactly (at least 14 frames).",
)})
def s3d(num_classes: int = 400, **kwargs):
    """torchvision's S3D: separable Inception 3D, 1024-d features, Kinetics-400 from torchvision."""
    return S3D(num_classes=num_classes, **kwargs)
