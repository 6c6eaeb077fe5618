"""3D ResNeXts of the CVPR 2018 release of kenshohara/3D-ResNets-PyTorch (models/resnext.py).

Bottlenecks of expansion 2 whose 3x3x3 convolution is grouped (cardinality 32) on stages of 128, 256, 512 and
1024 planes under a 64-channel conv1: 2048-d features.
"""
from __future__ import annotations

from ..registry import register_model
from .cfgs import RANDOM_CFG, hara2018_cfg
from .family import Family
from .resnet3d import (
    Bottleneck,
    ResNet3d,
    expansion_of,
    independent_stem_kwargs,
    is_grouped,
    is_hara_trunk,
    shortcut_hint,
)

RESNEXT_INPLANES = (128, 256, 512, 1024)
STEM_PLANES = 64  # the 2018 code's conv1; the 2020 code's is RESNEXT_INPLANES[0] (told from the checkpoint)


def _resnext3d(layers, cardinality: int = 32, **kwargs):
    """Bottlenecks of expansion 2, their 3x3x3 conv in ``cardinality`` groups of int(planes / 32) channels."""
    kwargs.setdefault("stem_planes", STEM_PLANES)
    block_kwargs = {"groups": cardinality, "width": 32, "expansion": 2}
    return ResNet3d(Bottleneck, layers, block_inplanes=RESNEXT_INPLANES, block_kwargs=block_kwargs, **kwargs)


def infer_arch_kwargs(state_dict: dict) -> dict:
    """As the plain ResNet's, but the stem and the stage widths are independent: conv1 gives stem_planes and
    layer1's output (2 x 128 x widen_factor) the widen factor."""
    kwargs = independent_stem_kwargs(state_dict, STEM_PLANES)
    out = state_dict.get("layer1.0.conv3.weight")
    if out is not None and out.shape[0] != 2 * RESNEXT_INPLANES[0]:
        kwargs["widen_factor"] = out.shape[0] / (2 * RESNEXT_INPLANES[0])
    return kwargs


def detect(state_dict: dict) -> bool:
    return is_hara_trunk(state_dict) and is_grouped(state_dict) and expansion_of(state_dict) == 2


# The 2020 code's arch string is 'resnext-<depth>' too. (Its ResNeXt passes n_classes positionally into the
# trunk's widen_factor, so only the layout it intends, widen 1 with a 128-channel conv1, can have been trained.)
FAMILY = Family("resnext3d", arch_names={"resnext": "resnext3d"}, infer_arch_kwargs=infer_arch_kwargs,
                detect=detect, load_hint=shortcut_hint)


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


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
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
    },
    family=FAMILY,
)
def resnext3d_101(**kwargs):
    """3D ResNeXt-101 (32 groups, bottlenecks [3,4,23,3]), 2048-d features."""
    return _resnext3d([3, 4, 23, 3], **kwargs)


@register_model(random_cfg=RANDOM_CFG, family=FAMILY)
def resnext3d_152(**kwargs):
    """3D ResNeXt-152 (32 groups, bottlenecks [3,8,36,3]), 2048-d features."""
    return _resnext3d([3, 8, 36, 3], **kwargs)
