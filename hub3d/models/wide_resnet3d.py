"""Wide 3D ResNet-50 of the CVPR 2018 release of kenshohara/3D-ResNets-PyTorch (models/wide_resnet.py).

Bottlenecks of expansion 2 on stages k times wider (64k, 128k, 256k, 512k planes) under the usual 64-channel
conv1; with k = 2 the features are 2048-d, as in ResNet-50, for about twice the parameters. (The 2020 code's
wide_resnet50 also widens conv1; the released weights are the 2018 ones.)
"""
from __future__ import annotations

from ..registry import register_model
from .cfgs import hara2018_cfg
from .family import Family
from .resnet3d import (
    BLOCK_INPLANES,
    Bottleneck,
    ResNet3d,
    expansion_of,
    independent_stem_kwargs,
    is_grouped,
    is_hara_trunk,
    shortcut_hint,
)

STEM_PLANES = 64  # the 2018 code's conv1; the 2020 code widens it too (64k, told from the checkpoint)


def infer_arch_kwargs(state_dict: dict) -> dict:
    """As the plain ResNet's, but conv1 gives stem_planes and layer1's middle width (64k) gives k."""
    kwargs = independent_stem_kwargs(state_dict, STEM_PLANES)
    mid = state_dict.get("layer1.0.conv1.weight")
    if mid is not None and mid.shape[0] != 2 * BLOCK_INPLANES[0]:
        kwargs["k"] = mid.shape[0] // BLOCK_INPLANES[0]
    return kwargs


def detect(state_dict: dict) -> bool:
    return is_hara_trunk(state_dict) and not is_grouped(state_dict) and expansion_of(state_dict) == 2


FAMILY = Family("wide_resnet3d", arch_names={"wideresnet": "wide_resnet3d"}, infer_arch_kwargs=infer_arch_kwargs,
                detect=detect, load_hint=shortcut_hint)


@register_model(pretrained={"kinetics400": hara2018_cfg("wideresnet-50-kinetics.pth", 74.7, shortcut_type="B")},
                family=FAMILY)
def wide_resnet3d_50(k: int = 2, **kwargs):
    """Wide 3D ResNet-50 (bottlenecks [3,4,6,3], expansion 2, stages k times wider), 1024k-d features."""
    planes = [p * k for p in BLOCK_INPLANES]
    kwargs.setdefault("stem_planes", STEM_PLANES)
    return ResNet3d(Bottleneck, [3, 4, 6, 3], block_inplanes=planes, block_kwargs={"expansion": 2}, **kwargs)
