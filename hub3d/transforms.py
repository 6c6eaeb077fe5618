"""Eval preprocessing on uint8 frames, as the weights' PretrainedCfg says; numerically PIL's.

Layout: frames are (T, H, W, 3) uint8 RGB (what the decoder gives; a single (H, W, 3) frame is accepted
too), numpy arrays or torch tensors. resize / crop keep that layout and dtype; `normalize` turns them into
the model's float32 (3, T, H, W). Optical flow frames (hub3d.flow) are (T, H, W, 2), uint8 as stored or
float32 as computed, on the same 0-255 scale.

Resizing is bilinear with antialiasing on uint8 (torch's uint8 path, which rounds like PIL): within 1 gray
level of PIL's Image.resize(BILINEAR) per pixel (tests/test_transforms.py checks it).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from .specs import INTERPOLATIONS, load_mean_array

Size = Union[int, Sequence[int]]


def as_frames(frames) -> torch.Tensor:
    """(T, H, W, C) or (H, W, C) array/tensor -> (T, H, W, C) tensor (no copy when possible): C = 3 uint8 RGB, or
    C = 2 optical flow (x, y), uint8 or float32 (hub3d.flow's 0-255 encoding)."""
    if isinstance(frames, np.ndarray):
        # torch cannot wrap read-only arrays (np.asarray(PIL image)) safely: copy those.
        frames = torch.from_numpy(np.ascontiguousarray(frames) if frames.flags.writeable else frames.copy())
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a numpy array or a torch tensor, got {type(frames).__name__}")
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[-1] not in (2, 3):
        raise ValueError(f"frames must be (T, H, W, 3) (channels last; 2 for flow), got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8 and not (frames.shape[-1] == 2 and frames.dtype == torch.float32):
        raise ValueError(f"frames must be uint8 (flow: uint8 or float32), got {frames.dtype}")
    return frames


def _pair(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the short side = size and the long side int(size * long / short) (torchvision, Hara)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize(frames, size: Size, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize to (h, w) (an int: square), uint8 rounded like PIL; bilinear/bicubic antialiased like PIL."""
    frames = as_frames(frames)
    h, w = _pair(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"resize target must be positive, got {(h, w)}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if frames.shape[1:3] == (h, w):
        return frames
    # (T, H, W, 3) viewed as (T, 3, H, W) is channels_last in memory: torch's fast uint8 antialias kernel.
    x = frames.permute(0, 3, 1, 2)
    if interpolation == "nearest":
        y = F.interpolate(x, size=(h, w), mode="nearest-exact")  # PIL's NEAREST samples pixel centres
    else:
        y = F.interpolate(x, size=(h, w), mode=interpolation, align_corners=False, antialias=True)
    return y.permute(0, 2, 3, 1)


def resize_short_side(frames, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize so the short side is `size`, the long side int(size * long / short) (torchvision's Resize(int))."""
    frames = as_frames(frames)
    return resize(frames, short_side_size(frames.shape[1], frames.shape[2], int(size)), interpolation)


def crop(frames, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """frames[:, top:top+height, left:left+width]; the box must lie inside the frames."""
    frames = as_frames(frames)
    H, W = frames.shape[1:3]
    if top < 0 or left < 0 or top + height > H or left + width > W or height <= 0 or width <= 0:
        raise ValueError(f"crop box (top={top}, left={left}, h={height}, w={width}) outside {H}x{W} frames")
    return frames[:, top:top + height, left:left + width]


def center_crop(frames, size: Size) -> torch.Tensor:
    """Center crop, offsets int(round((H - h) / 2)) as torchvision and Hara's code; frames smaller than the
    crop are zero-padded first (torchvision's rule). Eval resizes the short side to >= the crop, so padding
    only happens with a (h, w) resize smaller than the crop."""
    frames = as_frames(frames)
    h, w = _pair(size)
    H, W = frames.shape[1:3]
    if h > H or w > W:
        ph, pw = max(h - H, 0), max(w - W, 0)
        # F.pad pads the last dims first: (W, W), then (H, H) of the (T, H, W, 3) tensor -> channels untouched.
        frames = F.pad(frames, (0, 0, pw // 2, (pw + 1) // 2, ph // 2, (ph + 1) // 2))
        H, W = frames.shape[1:3]
    top, left = center_box(H, W, h, w)
    return frames[:, top:top + h, left:left + w]


def center_box(height: int, width: int, h: int, w: int) -> tuple[int, int]:
    """(top, left) of the centered h x w box: int(round((H - h) / 2)) as torchvision and Hara's code."""
    return int(round((height - h) / 2.0)), int(round((width - w) / 2.0))


def hflip(frames) -> torch.Tensor:
    """Mirror left-right."""
    return as_frames(frames).flip(2)


def normalize(frames, cfg=None, *, value_scale: float | None = None, mean=None, std=None) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T, H, W): x = frame / 255 * value_scale, then (x - mean) / std.

    cfg: a PretrainedCfg (or anything with value_scale, mean, std); keywords override it."""
    frames = as_frames(frames)
    value_scale = value_scale if value_scale is not None else getattr(cfg, "value_scale", 1.0)
    mean = torch.as_tensor(mean if mean is not None else getattr(cfg, "mean", (0.0, 0.0, 0.0)), dtype=torch.float64)
    std = torch.as_tensor(std if std is not None else getattr(cfg, "std", (1.0, 1.0, 1.0)), dtype=torch.float64)
    c = frames.shape[-1]
    if mean.numel() != c or std.numel() != c or bool((std <= 0).any()):
        raise ValueError(f"mean and std need {c} values, one per channel (std > 0), got mean={mean.tolist()} "
                         f"std={std.tolist()}")
    # One fused multiply-add per pixel: x * scale + shift, with the constants folded in float64.
    scale = (value_scale / 255.0) / std
    shift = -mean / std
    x = frames.permute(3, 0, 1, 2).to(torch.float32)
    return x.mul_(scale.to(torch.float32).view(c, 1, 1, 1)).add_(shift.to(torch.float32).view(c, 1, 1, 1))


def resize_for_cfg(frames, resize_spec, interpolation: str = "bilinear") -> torch.Tensor:
    """cfg.resize semantics: an int resizes the short side, (h, w) resizes both sides (torchvision's 128x171)."""
    if isinstance(resize_spec, (int, np.integer)):
        return resize_short_side(frames, int(resize_spec), interpolation)
    return resize(frames, _pair(resize_spec), interpolation)


class Preprocess:
    """The eval pipeline of a ClipSpec or PretrainedCfg: resize (.resize, .interpolation), center crop
    (.crop_size), channel order (BGR: flipped), normalize, and the full mean array when there is one.

    __call__: uint8 (T, H, W, 3) -> float32 (3, T, crop, crop). `spatial` stops before normalize (uint8)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.bgr = getattr(cfg, "channel_order", "RGB") == "BGR"
        arr = getattr(cfg, "mean_array", None)
        self.mean_array = load_mean_array(arr) if arr is not None else None
        self._mean_offset = None

    def spatial(self, frames) -> torch.Tensor:
        cfg = self.cfg
        frames = resize_for_cfg(frames, cfg.resize, getattr(cfg, "interpolation", "bilinear"))
        if self.mean_array is not None and tuple(frames.shape[1:3]) != self.mean_array.shape[2:]:
            raise ValueError(f"frames resized to {frames.shape[1]}x{frames.shape[2]} but the mean array is "
                             f"{self.mean_array.shape[2]}x{self.mean_array.shape[3]} (give resize=(h, w))")
        frames = center_crop(frames, cfg.crop_size)
        return frames.flip(-1) if self.bgr else frames

    def subtract_mean_array(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (3, T, h, w) from normalize, minus the center-cropped mean array / std per frame index."""
        if self.mean_array is None:
            return clip
        if self._mean_offset is None:
            _, _, H, W = self.mean_array.shape
            h, w = _pair(self.cfg.crop_size)
            if h > H or w > W:
                raise ValueError(f"crop {h}x{w} is larger than the {H}x{W} mean array")
            top, left = center_box(H, W, h, w)
            std = np.asarray(self.cfg.std, dtype=np.float64).reshape(3, 1, 1, 1)
            cube = self.mean_array[:, :, top:top + h, left:left + w] / std
            self._mean_offset = torch.from_numpy(np.ascontiguousarray(cube, dtype=np.float32))
        t = clip.shape[1]
        if t > self._mean_offset.shape[1]:
            raise ValueError(f"a {t}-frame clip but the mean array has {self._mean_offset.shape[1]} frames")
        return clip - self._mean_offset[:, :t]

    def __call__(self, frames) -> torch.Tensor:
        return self.subtract_mean_array(normalize(self.spatial(frames), self.cfg))

    def __repr__(self):
        c = self.cfg
        return (f"Preprocess(resize={c.resize}, crop_size={c.crop_size}, value_scale={c.value_scale}, "
                f"mean={tuple(c.mean)}, std={tuple(c.std)}, channel_order={'BGR' if self.bgr else 'RGB'}, "
                f"mean_array={None if self.mean_array is None else self.mean_array.shape})")


def preprocess_clip(frames, cfg) -> torch.Tensor:
    """Preprocess(cfg)(frames): uint8 (T, H, W, 3) -> float32 (3, T, crop, crop)."""
    return Preprocess(cfg)(frames)
