"""Architectures: one module per family; importing this package registers them all.

Shared pieces: base.py (VideoModel, the contract), family.py (Family: what the loader asks a family),
layers.py (conv helpers, shortcut A, init), cfgs.py (PretrainedCfg factories of the Hara / torchvision releases).
"""
from . import (
    c3d,  # noqa: F401
    densenet3d,  # noqa: F401
    i3d,  # noqa: F401
    motion_demo,  # noqa: F401
    p3d,  # noqa: F401
    preact_resnet3d,  # noqa: F401
    pytorchvideo_resnet,  # noqa: F401
    resnet2p1d,  # noqa: F401
    resnet3d,  # noqa: F401
    resnext3d,  # noqa: F401
    s3d,  # noqa: F401
    torchvision_resnet,  # noqa: F401
    wide_resnet3d,  # noqa: F401
    x3d,  # noqa: F401
)
from .base import VideoModel  # noqa: F401
from .family import Family  # noqa: F401
