"""Wide 3D ResNet-50 of the CVPR 2018 release of kenshohara/3D-ResNets-PyTorch (models/wide_resnet.py).

Bottlenecks of expansion 2 on stages k times wider (64k, 128k, 256k, 512k planes) under the usual 64-channel
conv1; with k = 2 the features are 2048-d, as in ResNet-50, for about twice the parameters. (The 2020 code's
wide_resnet50 also widens conv1; the released weights are the 2018 ones.)
"""
from __future__ import annotations

from ..registry import register_model
from .resnet3d import BLOCK_INPLANES, Bottleneck, ResNet3d, hara2018_cfg


class WideBottleneck(Bottleneck):
    expansion = 2


@register_model(pretrained={"kinetics400": hara2018_cfg("wideresnet-50-kinetics.pth", 74.7, shortcut_type="B")})
def wide_resnet3d_50(k: int = 2, **kwargs):
    """Wide 3D ResNet-50 (bottlenecks [3,4,6,3], expansion 2, stages k times wider), 1024k-d features."""
    planes = [p * k for p in BLOCK_INPLANES]
    return ResNet3d(WideBottleneck, [3, 4, 6, 3], block_inplanes=planes, stem_planes=64, **kwargs)
