"""Shared fixtures: real (tiny) videos written with hub3d.video.write_video.

`make_video(num_frames=16, ...)` writes a video under the test's tmp_path and returns its Path. Its frames
come from `pattern_frames`: frame i is a flat gray of level `level_of(i)` (lossy codecs keep flat areas
almost exactly, so `frame_id(image)` recovers i after decoding) with an 8x8 red marker in the top-left
corner (shows orientation: rotation and flips).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# The fake Hugging Face Hub + URL host on 127.0.0.1 (fixture fake_hub) for every test file.
pytest_plugins = ["hf_server"]


@pytest.fixture(autouse=True, scope="session")
def _private_hub3d_cache(tmp_path_factory):
    """hub3d's cache in a temp folder for the whole session: loading a checkpoint by path converts it into the
    cache (hub3d.loader.cached_conversion), which must never be the user's ~/.cache/hub3d."""
    old = os.environ.get("HUB3D_HOME")
    os.environ["HUB3D_HOME"] = str(tmp_path_factory.mktemp("hub3d_home"))
    yield
    if old is None:
        os.environ.pop("HUB3D_HOME", None)
    else:
        os.environ["HUB3D_HOME"] = old


LEVEL_STEP = 7  # gray levels between consecutive frames: 33 frames span 16..240


def level_of(i: int) -> int:
    return 16 + LEVEL_STEP * (i % 33)


def pattern_frames(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8: frame i flat gray level_of(i), red 8x8 marker at the top-left corner."""
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frames[i] = level_of(i)
    m = max(1, min(8, height // 4, width // 4))
    frames[:, :m, :m] = (255, 0, 0)
    return frames


def frame_id(image: np.ndarray) -> int:
    """Inverse of pattern_frames for a decoded frame (any size): the frame number from the gray level."""
    h, w = image.shape[:2]
    center = image[h // 4: h - h // 4 or None, w // 4: w - w // 4 or None].astype(np.float64)
    return int(round((center.mean() - 16) / LEVEL_STEP))


def random_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random content (noise upscaled): realistic for resize/codec checks, unlike pure noise."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    small = torch.rand(num_frames, 3, max(2, height // 6), max(2, width // 6), generator=g)
    big = F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False)
    return (big.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


@pytest.fixture
def make_video(tmp_path):
    """Factory: make_video(num_frames=16, height=48, width=64, fps=25, codec="libx264", pix_fmt="yuv420p",
    suffix=".mp4", name=None, frames=None, times=None, rotation=0, options=None, directory=None) -> Path
    (directory: default tmp_path, created if missing)."""
    from hub3d.video import write_video

    counter = iter(range(10**6))

    def make(num_frames: int = 16, height: int = 48, width: int = 64, fps: float = 25.0, codec: str = "libx264",
             pix_fmt: str = "yuv420p", suffix: str = ".mp4", name: str | None = None, frames=None, times=None,
             rotation: int = 0, options: dict | None = None, directory: Path | None = None) -> Path:
        if frames is None:
            frames = pattern_frames(num_frames, height, width)
        directory = Path(directory or tmp_path)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / (name or f"video{next(counter)}_{codec}_{pix_fmt}{suffix}")
        return write_video(path, frames, fps=fps, codec=codec, pix_fmt=pix_fmt, options=options, times=times,
                           rotation=rotation)

    return make


@pytest.fixture
def make_frame_folder(tmp_path):
    """Factory: make_frame_folder(num_frames=16, height=48, width=64, ext=".png", name="frames") -> Path of a
    directory of image_00001.png ... (PNG is lossless: decoded frames equal pattern_frames exactly)."""
    from PIL import Image

    def make(num_frames: int = 16, height: int = 48, width: int = 64, ext: str = ".png", name: str = "frames",
             frames=None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        frames = pattern_frames(num_frames, height, width) if frames is None else frames
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"image_{i + 1:05d}{ext}")
        return folder

    return make


# Arguments that make each family's models tiny (a few thousand to a few hundred thousand parameters) while
# keeping every layer; families not listed build at full size.
TINY_KWARGS = {
    "resnet3d": {"widen_factor": 0.125},
    "preact_resnet3d": {"widen_factor": 0.125},
    "resnet2p1d": {"widen_factor": 0.125},
    "wide_resnet3d": {"widen_factor": 0.125},
    "resnext3d": {"widen_factor": 0.25},  # a grouped stage needs 32 planes
    "densenet3d": {"growth_rate": 4, "num_init_features": 8},
}


def tiny_kwargs(name: str) -> dict:
    import hub3d

    return dict(TINY_KWARGS.get(hub3d.registry.model_family(name), {}))


@pytest.fixture
def tiny_model():
    """Factory: tiny_model(name="resnet3d_10", num_classes=5, **kwargs) -> a seeded, tiny-width model (eval mode)."""
    import torch

    import hub3d

    def make(name: str = "resnet3d_10", num_classes: int = 5, seed: int = 0, **kwargs):
        torch.manual_seed(seed)
        return hub3d.create_model(name, num_classes=num_classes, **{**tiny_kwargs(name), **kwargs}).eval()

    return make


def pytest_collection_modifyitems(config, items):
    """`exhaustive` tests (every-model export parity, beyond CI's budget) run only when -m names them."""
    if "exhaustive" in (config.getoption("markexpr") or ""):
        return
    keep = [item for item in items if item.get_closest_marker("exhaustive") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("exhaustive") is not None])
        items[:] = keep
