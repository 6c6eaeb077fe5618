"""The training samples of Hara et al. (ICCV-W 2017 / CVPR 2018), on uint8 frames with hub3d.transforms.

- temporal: a uniformly random position, clip_len frames frame_step apart, looped when the video is shorter
  (hub3d.clips.train_indices, beside the evaluation windows);
- spatial: a square crop at one of the 4 corners or the center, its side a scale from
  {1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2} of the short side, resized to the model's crop size;
- horizontal flip with probability 0.5 (relabelled where a flip changes the class, e.g. left <-> right);
- normalisation from the model's PretrainedCfg.
Randomness comes from an explicit numpy Generator, so a sample is a pure function of (seed, epoch, index).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch

from ..clips import train_indices
from ..transforms import as_frames, crop, hflip, normalize, resize

MULTISCALE = (1.0, 2 ** -0.25, 2 ** -0.5, 2 ** -0.75, 0.5)
POSITIONS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")


def corner_crop_box(height: int, width: int, scale: float, position: str) -> tuple[int, int, int]:
    """(top, left, side) of the square crop of side int(short side * scale) at a corner or the center."""
    side = max(1, int(min(height, width) * scale))
    if position == "center":
        return (height - side) // 2, (width - side) // 2, side
    try:
        top = {"top": 0, "bottom": height - side}[position.split("_")[0]]
        left = {"left": 0, "right": width - side}[position.split("_")[1]]
    except (KeyError, IndexError):
        raise ValueError(f"unknown crop position {position!r}; choose from {POSITIONS}") from None
    return top, left, side


class TrainTransform:
    """(frames (T, H, W, 3) uint8, label, rng) -> (clip float32 (3, clip_len, crop, crop), label)."""

    def __init__(
        self,
        cfg,
        clip_len: Optional[int] = None,
        crop_size: Optional[int] = None,
        scales: Sequence[float] = MULTISCALE,
        positions: Sequence[str] = POSITIONS,
        hflip_prob: float = 0.5,
        hflip_labels: Optional[Sequence[int]] = None,
    ):
        self.cfg = cfg
        self.clip_len = int(clip_len or cfg.clip_len)
        self.frame_step = int(getattr(cfg, "frame_step", 1))
        self.crop_size = int(crop_size or cfg.crop_size)
        self.scales = tuple(float(s) for s in scales)
        self.positions = tuple(positions)
        for p in self.positions:
            corner_crop_box(8, 8, 1.0, p)  # validates the names
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ValueError(f"crop scales must be in (0, 1], got {self.scales}")
        if not 0 <= hflip_prob <= 1:
            raise ValueError(f"hflip probability must be in [0, 1], got {hflip_prob}")
        self.hflip_prob = float(hflip_prob)
        self.hflip_labels = list(hflip_labels) if hflip_labels is not None else None

    def __call__(self, frames, label: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        frames = as_frames(frames[train_indices(len(frames), self.clip_len, rng, self.frame_step)])  # index first: cheaper
        scale = self.scales[int(rng.integers(len(self.scales)))]
        position = self.positions[int(rng.integers(len(self.positions)))]
        top, left, side = corner_crop_box(frames.shape[1], frames.shape[2], scale, position)
        frames = resize(crop(frames, top, left, side, side), self.crop_size)
        if self.hflip_prob and rng.random() < self.hflip_prob:
            frames = hflip(frames)
            if self.hflip_labels is not None:
                label = self.hflip_labels[label]
        return normalize(frames, self.cfg), label

    def __repr__(self):
        return (f"TrainTransform(clip_len={self.clip_len}, crop={self.crop_size}, scales={self.scales}, "
                f"positions={self.positions}, hflip={self.hflip_prob})")


def hflip_label_map(dataset) -> Optional[list[int]]:
    """Label index -> label index under a left-right flip, from the dataset's ``hflip_classes`` (None: same)."""
    mapping = getattr(dataset, "hflip_classes", None)
    if not mapping:
        return None
    index = {c: i for i, c in enumerate(dataset.classes)}
    return [index[mapping.get(c, c)] for c in dataset.classes]
