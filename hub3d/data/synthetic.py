"""SyntheticMotion: generated videos whose class is only visible over time.

Each video shows one textured object (disc or square; checker, stripes or sectors; two random colours, a random
orientation) over a random smooth, striped background, with per-frame noise. Exactly one of the object's
position, size or opacity changes over time; the class says which and in which direction. Every class is the
time reversal of another (move_right <-> move_left, move_down <-> move_up, fade_in <-> fade_out, grow <-> shrink):
a video of the second class *is* a video of the first played backwards. So the set of frames of a video never
tells its class: only their order does, and a model has to use time to beat 50% within each pair.

Deterministic: video i depends only on (seed, i). Rendering is vectorised numpy (a few ms per video).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..pretrained import read_label_file

LABEL_FILE = "synthetic_motion.txt"
CLASSES: tuple[str, ...] = read_label_file(LABEL_FILE)
# Classes rendered forward; each partner is the same video reversed in time.
FORWARD = {"move_right": "move_left", "move_down": "move_up", "fade_in": "fade_out", "grow": "shrink"}
REVERSED = {v: k for k, v in FORWARD.items()}
# What a horizontal flip does to each class (flip augmentation must relabel, not keep, these).
HFLIP_CLASSES = {"move_right": "move_left", "move_left": "move_right"}


def _smooth_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(S, S, 3) float in [0, 255]: a bilinear blow-up of a random 4x4 colour grid plus a faint grating."""
    low = rng.uniform(0, 255, size=(4, 4, 3))
    pos = np.linspace(0, 3, size)
    i0 = np.minimum(pos.astype(int), 2)
    w = (pos - i0)[:, None]
    interp = np.zeros((size, 4))
    interp[np.arange(size), i0] = 1 - w[:, 0]
    interp[np.arange(size), i0 + 1] = w[:, 0]
    bg = np.einsum("yi,ijc,xj->yxc", interp, low, interp)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(2, 8) * 2 * np.pi / size
    yy, xx = np.mgrid[0:size, 0:size]
    grating = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 2 * np.pi))
    return bg + rng.uniform(0, 30) * grating[..., None]


def render_forward(kind: str, rng: np.random.Generator, num_frames: int = 32, size: int = 64) -> np.ndarray:
    """Render one video of a forward class (a key of FORWARD): (T, S, S, 3) uint8.

    kind: 'move_right' | 'move_down' | 'fade_in' | 'grow'.
    """
    if kind not in FORWARD:
        raise ValueError(f"render_forward draws one of {sorted(FORWARD)}, not {kind!r}")
    T, S = int(num_frames), int(size)
    if T < 2 or S < 16:
        raise ValueError(f"need num_frames >= 2 and size >= 16, got {T} frames of {S}x{S}")
    unit = S / 64.0  # speeds and sizes are set for 64 px and scale with the frame
    tt = np.linspace(-0.5, 0.5, T)  # centred time: every trajectory is symmetric about the middle frame
    margin = 2 * unit

    radius = np.full(T, rng.uniform(11, 16) * unit)
    if kind == "grow":
        ratio = rng.uniform(2.0, 3.0)
        radius = np.sqrt(rng.uniform(7, 9) * rng.uniform(20, 24)) * unit * np.exp(np.log(ratio) * tt)
    r_max = radius.max()
    angle = np.full(T, rng.uniform(0, 2 * np.pi))
    opacity = np.ones(T)
    if kind == "fade_in":  # from nearly invisible to (nearly) opaque
        opacity = np.interp(tt, (-0.5, 0.5), (rng.uniform(0, 0.15), rng.uniform(0.85, 1)))
    travel = {"move_right": 0.0, "move_down": 0.0}
    if kind in travel:
        room = S - 2 * (r_max + margin)
        travel[kind] = min(rng.uniform(0.8, 1.6) * unit * (T - 1), room * 0.95)
    centre = []
    for axis in ("move_right", "move_down"):
        half = travel[axis] / 2
        c0 = rng.uniform(r_max + margin + half, S - r_max - margin - half)
        centre.append(c0 + travel[axis] * tt)
    cx, cy = centre

    background = _smooth_background(rng, S)
    colours = rng.uniform(0, 255, size=(2, 3))
    colours[1] = np.where(np.abs(colours[1] - colours[0]) < 60, 255 - colours[0], colours[1])  # visible texture
    shape = rng.choice(("disc", "square"))
    texture = rng.choice(("checker", "stripes", "sectors"))
    k = int(rng.integers(2, 4))
    noise_sigma = rng.uniform(0, 10)

    # float32 from here on: the per-pixel work dominates the cost.
    f32 = np.float32
    yy, xx = np.mgrid[0:S, 0:S].astype(f32) + f32(0.5)
    dx = xx[None] - cx.astype(f32)[:, None, None]
    dy = yy[None] - cy.astype(f32)[:, None, None]
    cos, sin = np.cos(angle).astype(f32)[:, None, None], np.sin(angle).astype(f32)[:, None, None]
    r = radius.astype(f32)[:, None, None]
    # Object coordinates (u, v) in [-1, 1]: undo the object's rotation.
    u = (cos * dx + sin * dy) / r
    v = (-sin * dx + cos * dy) / r
    dist = np.sqrt(u * u + v * v) if shape == "disc" else np.maximum(np.abs(u), np.abs(v))
    alpha = np.clip((1 - dist) * r + 0.5, 0, 1)  # one-pixel soft edge: sub-pixel motion stays visible
    alpha = (alpha * opacity.astype(f32)[:, None, None])[..., None]
    if texture == "checker":
        pattern = (np.floor(u * k) + np.floor(v * k)) % 2
    elif texture == "stripes":
        pattern = np.floor(u * (k + 1)) % 2
    else:
        pattern = np.floor((np.arctan2(v, u) / (2 * np.pi) + 0.5) * (2 * k + 1)) % 2
    c0, c1 = colours.astype(f32)
    obj = c0 + pattern[..., None] * (c1 - c0)
    frames = background.astype(f32)[None] * (1 - alpha) + obj * alpha
    frames += rng.standard_normal(size=frames.shape, dtype=f32) * f32(noise_sigma)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render(label: Union[int, str], rng: np.random.Generator, num_frames: int = 32, size: int = 64) -> np.ndarray:
    """One video of any class: forward classes are drawn, their partners are the same draw reversed in time."""
    name = CLASSES[label] if isinstance(label, (int, np.integer)) else label
    if name in FORWARD:
        return render_forward(name, rng, num_frames, size)
    if name in REVERSED:
        return np.ascontiguousarray(render_forward(REVERSED[name], rng, num_frames, size)[::-1])
    raise ValueError(f"unknown SyntheticMotion class {name!r}; classes: {', '.join(CLASSES)}")


class SyntheticMotion:
    """A map-style torch Dataset of generated videos: item i is (frames (T, S, S, 3) uint8, label).

    num_videos: length; labels cycle through the classes (balanced). seed: video i depends only on (seed, i).
    num_frames, size: video length and square frame size. transform: applied to the frames of each item.
    Attributes: classes (index order), targets (label of every item), hflip_classes (what a left-right flip
    does to each class, for flip augmentation).
    """

    classes = list(CLASSES)
    hflip_classes = dict(HFLIP_CLASSES)

    def __init__(
        self,
        num_videos: int,
        seed: int = 0,
        num_frames: int = 32,
        size: int = 64,
        transform: Optional[Callable] = None,
    ):
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.num_videos, self.seed = int(num_videos), int(seed)
        self.num_frames, self.size = int(num_frames), int(size)
        self.transform = transform

    def __len__(self) -> int:
        return self.num_videos

    def label(self, index: int) -> int:
        return index % len(self.classes)

    @property
    def targets(self) -> list[int]:
        return [self.label(i) for i in range(len(self))]

    def video(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        rng = np.random.default_rng([self.seed, index])
        return render(self.label(index), rng, self.num_frames, self.size)

    def name(self, index: int) -> str:
        return f"{self.classes[self.label(index)]}_{self.seed}_{index:05d}"

    def __getitem__(self, index: int):
        frames = self.video(index)
        return (self.transform(frames) if self.transform else frames), self.label(index)

    def __repr__(self):
        return (f"SyntheticMotion({self.num_videos} videos, seed={self.seed}, {self.num_frames} frames of "
                f"{self.size}x{self.size}, {len(self.classes)} classes)")


def write_synthetic_videos(
    root: Union[str, os.PathLike],
    num_videos: int,
    seed: int = 0,
    num_frames: int = 32,
    size: int = 64,
    fps: float = 25.0,
    ext: str = ".mp4",
) -> list[Path]:
    """Write SyntheticMotion videos as real files, root/<class>/<class>_<seed>_<i>.mp4 (a `--data root` layout).

    h264 at high quality (crf 10, yuv444p keeps colours exact enough for the texture); returns the paths.
    """
    from ..video import write_video

    root = Path(root)
    data = SyntheticMotion(num_videos, seed=seed, num_frames=num_frames, size=size)
    paths = []
    for i in range(len(data)):
        frames, label = data[i]
        folder = root / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(write_video(folder / f"{data.name(i)}{ext}", frames, fps=fps, pix_fmt="yuv444p",
                                 options={"crf": "10"}))
    return paths
