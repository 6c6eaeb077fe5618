"""motion_demo: a small 3D ResNet-10 trained by hub3d itself on SyntheticMotion, shipped inside the package.

It is the offline default model: `hub3d.load("motion_demo", pretrained=True)` needs no download, and it tells
the eight SyntheticMotion classes apart (hub3d.data.write_synthetic_videos makes videos to try it on). Its
training command and metrics are in weights/motion_demo/.
"""
from __future__ import annotations

from ..pretrained import PretrainedCfg
from ..registry import register_model
from .resnet3d import FAMILY, BasicBlock, ResNet3d

MOTION_DEMO_CFG = PretrainedCfg(
    num_classes=8,
    labels="synthetic_motion.txt",
    labels_verified=True,
    # ResNet-10 at a quarter of the width (16-128 channels): 0.9 M parameters, 3.7 MB of fp32 weights.
    arch_kwargs={"widen_factor": 0.25, "shortcut_type": "B", "conv1_t_size": 7},
    value_scale=1.0,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    resize=64,
    crop_size=64,
    clip_len=16,
    dataset="SyntheticMotion (hub3d.data)",
    file="model.safetensors",
    release="bundled",
    # Fresh held-out videos (seeds never used in training): weights/motion_demo/heldout.json.
    metrics={"synthetic_motion_heldout_video_acc1": 99.75, "synthetic_motion_heldout_files_video_acc1": 100.0},
    license="MIT",
    notes="Trained with `hub3d train` on generated videos; see weights/motion_demo/ for the command and log.",
)


@register_model(pretrained={"synthetic": MOTION_DEMO_CFG}, family=FAMILY)
def motion_demo(**kwargs):
    """3D ResNet-10 at widen_factor 0.25 for 16 x 64 x 64 clips; 8 SyntheticMotion classes."""
    return ResNet3d(BasicBlock, [1, 1, 1, 1], **kwargs)
