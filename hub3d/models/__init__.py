"""Architectures: one module per family; importing this package registers them all."""
from . import resnet3d  # noqa: F401
from .base import VideoModel  # noqa: F401
