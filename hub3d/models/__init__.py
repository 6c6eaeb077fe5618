"""Architectures: one module per family; importing this package registers them all.

Shared pieces: base.py (VideoModel, the contract), family.py (Family: what the loader asks a family),
layers.py (conv helpers, shortcut A, init), cfgs.py (PretrainedCfg factories of the Hara / torchvision releases).
"""
from . import resnet3d  # noqa: F401
from . import preact_resnet3d  # noqa: F401
from . import wide_resnet3d  # noqa: F401
from . import resnext3d  # noqa: F401
from . import densenet3d  # noqa: F401
from . import resnet2p1d  # noqa: F401
from . import torchvision_resnet  # noqa: F401
from . import motion_demo  # noqa: F401
from . import pytorchvideo_resnet  # noqa: F401
from . import x3d  # noqa: F401
from . import s3d  # noqa: F401
from . import i3d  # noqa: F401
from . import c3d  # noqa: F401
from . import p3d  # noqa: F401
from .base import VideoModel  # noqa: F401
from .family import Family  # noqa: F401
