"""C3D (Tran et al., ICCV 2015): eight 3x3x3 convolutions, five max pools, fc6 / fc7 (4096) and fc8.

Parameter names are DavideA/c3d-pytorch's (conv1, conv2, conv3a ... conv5b, fc6, fc7, fc8), whose ``c3d.pickle``
(the Caffe Sports-1M model, converted; a bare state dict) loads as it is. MMAction2's C3D (``conv1a.conv.weight``,
``conv2a.conv.*``: its ConvModules; ``backbone.`` / ``cls_head.fc_cls.`` in whole-recognizer files) is renamed from
the content by :func:`remap_state_dict`.

``model(x)`` gives fc8 logits; the pooled features (``forward_head(..., pre_logits=True)``) are fc7 after ReLU,
4096-d (``forward_features`` runs up to fc7: C3D has no conv map to pool at its end). fc6 takes the flattened
512 x 1 x 4 x 4 pool5 map, so clips must be 16 x 112 x 112 (cropped from frames resized to 128 x 171).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..pretrained import PretrainedCfg
from ..registry import register_model
from .base import VideoModel
from .family import Family

CITATION_TRAN_2015 = (
    "@inproceedings{tran2015learning, author={Du Tran and Lubomir Bourdev and Rob Fergus and Lorenzo Torresani and "
    "Manohar Paluri}, title={Learning Spatiotemporal Features with 3D Convolutional Networks}, booktitle={ICCV}, "
    "year={2015}}"
)
CONVS = (  # name, in, out; each followed by ReLU
    ("conv1", None, 64), ("conv2", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
    ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512),
)
POOL_AFTER = {"conv1": "pool1", "conv2": "pool2", "conv3b": "pool3", "conv4b": "pool4", "conv5b": "pool5"}
POOL5_SHAPE = (512, 1, 4, 4)  # what fc6 (8192 inputs) was trained on


class C3D(VideoModel):
    classifier_name = "fc8"
    stage_names = tuple(name for name, _, _ in CONVS) + ("fc6", "fc7")

    def __init__(self, num_classes: int = 487, n_input_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        for name, cin, cout in CONVS:
            self.add_module(name, nn.Conv3d(cin or n_input_channels, cout, 3, padding=1))
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.pool2 = nn.MaxPool3d(2, 2)
        self.pool3 = nn.MaxPool3d(2, 2)
        self.pool4 = nn.MaxPool3d(2, 2)
        self.pool5 = nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.num_features = 4096
        self.fc8 = self.new_classifier(num_classes) if num_classes > 0 else nn.Identity()
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward_features(self, x):
        """fc7 after ReLU as a (B, 4096, 1, 1, 1) map (C3D's features: fc6 / fc7 stand where other families'
        last conv stage does), so that pooling it gives the fc7 vector as for every hub3d model."""
        for name, _, _ in CONVS:
            x = self.relu(getattr(self, name)(x))
            if name in POOL_AFTER:
                x = getattr(self, POOL_AFTER[name])(x)
        if tuple(x.shape[1:]) != POOL5_SHAPE:
            raise ValueError(
                f"C3D's fc6 takes a {'x'.join(map(str, POOL5_SHAPE))} pool5 map, i.e. 16x112x112 clips; got a "
                f"{'x'.join(map(str, x.shape[1:]))} map (resize frames to 128x171, crop 112, 16-frame clips)"
            )
        x = self.dropout(self.relu(self.fc6(x.flatten(1))))
        return self.relu(self.fc7(x))[:, :, None, None, None]

    def layer_output(self, name, output, x):
        # The convolutions and fc6 / fc7 are followed by a functional ReLU: their feature is after it.
        return self.relu(output) if name.startswith(("conv", "fc6", "fc7")) else output

    def forward_head(self, x, pre_logits: bool = False):
        x = x.mean(dim=(2, 3, 4))
        return x if pre_logits else self.fc8(self.dropout(x))


# ---------------------------------------------------------------------------------------------------------
# Foreign layouts and what a state dict determines.

_MMACTION_CONV = re.compile(r"^(conv\d)([ab])\.conv\.")


def _rename_mmaction2(key: str) -> str:
    if key.startswith("backbone."):
        key = key[len("backbone."):]
    if key.startswith("cls_head.fc_cls."):
        return "fc8." + key[len("cls_head.fc_cls."):]
    # MMAction2 names the first two convolutions conv1a / conv2a, DavideA (and Caffe) conv1 / conv2.
    return _MMACTION_CONV.sub(lambda m: f"{m.group(1)}{'' if m.group(1) in ('conv1', 'conv2') else m.group(2)}.", key)


def is_mmaction2(state_dict: dict) -> bool:
    return any(k in state_dict for k in ("conv1a.conv.weight", "backbone.conv1a.conv.weight"))


def remap_state_dict(state_dict: dict) -> dict:
    """MMAction2's C3D keys (backbone / ConvModule / cls_head.fc_cls) -> DavideA's; DavideA's pass unchanged."""
    if is_mmaction2(state_dict):
        return {_rename_mmaction2(k): v for k, v in state_dict.items()}
    return dict(state_dict)


def detect(state_dict: dict) -> bool:
    """Is this a C3D state dict (DavideA's or MMAction2's layout)?"""
    sd = remap_state_dict(state_dict)
    return "conv3a.weight" in sd and "fc6.weight" in sd and sd.get("conv1.weight", torch.empty(0)).dim() == 5


def infer_arch_kwargs(state_dict: dict) -> dict:
    """Classes (0 when the file stops at fc7, as a backbone checkpoint may) and input channels."""
    sd = remap_state_dict(state_dict)
    kwargs = {"num_classes": sd["fc8.weight"].shape[0] if "fc8.weight" in sd else 0}
    if "conv1.weight" in sd:
        kwargs["n_input_channels"] = sd["conv1.weight"].shape[1]
    return kwargs


# ---------------------------------------------------------------------------------------------------------
# Weights.

# Caffe C3D subtracts the Sports-1M mean cube (sport1m_train16_128_mean.binaryproto, 3x16x128x171) from BGR 0-255
# frames. hub3d does not ship the cube: its per-channel means (DavideA/c3d-pytorch issue #1, from c3d_mean.npy),
# B 90.25, G 97.66, R 101.41, approximate it; the released file itself loads as mean_array= (hub3d.specs).
SPORTS1M_MEAN_BGR = (90.25, 97.66, 101.41)


C3D_COMMON = dict(
    resize=(128, 171),
    crop_size=112,
    clip_len=16,
    value_scale=255.0,
    std=(1.0, 1.0, 1.0),
    dataset="sports1m",
    paper="https://arxiv.org/abs/1412.0767",
    citation=CITATION_TRAN_2015,
)


FAMILY = Family("c3d", remap_state_dict=remap_state_dict, infer_arch_kwargs=infer_arch_kwargs, detect=detect)


@register_model(
    family=FAMILY,
    pretrained={
        "sports1m": PretrainedCfg(
            num_classes=487,
            labels="sports1m.txt",  # gtoderici/sports-1m-dataset labels.txt: the list DavideA's predict.py uses
            labels_verified=True,
            mean=SPORTS1M_MEAN_BGR,
            file="c3d.pickle",
            url="http://imagelab.ing.unimore.it/files/c3d_pytorch/c3d.pickle",
            release="DavideA/c3d-pytorch (converted from facebookarchive/C3D's Sports-1M Caffe model)",
            license="MIT (port); weights from facebookarchive/C3D",
            notes=(
                "Verified: the architecture and key names (DavideA C3D_model.py), 128x171 resize, 112 crop, 16 "
                "frames, 0-255 values, BGR order (the Caffe model's). Not verified: the mean is the per-channel "
                "average of the Sports-1M mean cube, not the cube itself (which varies over time and space; "
                "with the release's sport1m_train16_128_mean.binaryproto, pass mean_array=<that file> and "
                "mean=(0, 0, 0) for the exact Caffe preprocessing); "
                "DavideA's own predict.py subtracts no mean and feeds RGB (its issue #1 shows the fix). The 487 "
                "class names are the Sports-1M dataset's labels.txt (gtoderici/sports-1m-dataset, CC BY 3.0), "
                "label i = fc8 output i, the list DavideA's predict.py reads."
            ),
            channel_order="BGR",
            **C3D_COMMON,
        ),
        "sports1m_mmaction2": PretrainedCfg(
            num_classes=487,
            labels="sports1m.txt",  # the Caffe model's fc8 order (Sports-1M label indices); MMAction2 ships no list
            labels_verified=False,
            mean=(104.0, 117.0, 128.0),
            file="c3d_sports1m_pretrain_20201016-dcc47ddc.pth",
            url="https://download.openmmlab.com/mmaction/recognition/c3d/c3d_sports1m_pretrain_20201016-dcc47ddc.pth",
            sha256="dcc47ddc",
            release="MMAction2 (C3D Sports-1M pretrain, converted from the Caffe model)",
            license="Apache-2.0",
            notes=(
                "Preprocessing of MMAction2's C3D configs: RGB frames (to_bgr=False), mean [104, 117, 128], std 1, "
                "Resize (128, 171), crop 112. If the file holds no fc8 it loads as a 4096-d feature extractor "
                "(num_classes 0)."
            ),
            **C3D_COMMON,
        ),
    }
)
def c3d(**kwargs):
    """C3D (Sports-1M): 16x112x112 clips, fc8 logits, fc7 (4096-d, after ReLU) features."""
    return C3D(**kwargs)
