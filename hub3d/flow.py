"""Optical flow for two-stream models (I3D's flow stream): TV-L1 from a video's frames, as the I3D paper did.

A flow frame is (H, W, 2): the x and y displacement in pixels from frame i to frame i + 1, clipped to
+-FLOW_BOUND and put on the 0-255 scale of the originals' flow JPEGs, value = (flow + 20) * 255 / 40. The flow
weights' preprocessing (value / 255, mean 0.5, std 0.5) then gives flow / 20 in [-1, 1] (DeepMind's "truncated
to [-20, 20], then rescaled between -1 and 1"), the same for computed flow (float32, unquantised) and for stored
folders (uint8 JPEG pairs, read by hub3d.video). N frames give N - 1 flow frames; flow frame i has frame i's time.

Flow is computed on the frames after the weights' resize (short side 256 for I3D: DeepMind resized the videos,
then computed flow), in grayscale, with OpenCV's TV-L1 at its default parameters. TV-L1 is in OpenCV's contrib
build, an optional extra (``pip install 'hub3d[flow]'``), imported only here.

May import: numpy, torch (through hub3d.transforms), hub3d.errors; cv2 when flow is computed.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Optional

import numpy as np

from .errors import MissingExtraError
from .transforms import as_frames, resize_for_cfg

FLOW_BOUND = 20.0  # pixels: TV-L1 flow is clipped to +-20 (kinetics-i3d, and the usual flow JPEGs)
FLOW_EXTRA = "flow"


def encode_flow(flow: np.ndarray) -> np.ndarray:
    """Flow in pixels (..., 2) -> float32 on the stored-JPEG 0-255 scale, clipped to +-FLOW_BOUND."""
    clipped = np.clip(np.asarray(flow, dtype=np.float32), -FLOW_BOUND, FLOW_BOUND)
    return (clipped + FLOW_BOUND) * np.float32(255.0 / (2 * FLOW_BOUND))


def decode_flow(frames) -> np.ndarray:
    """encode_flow's inverse: flow frames on the 0-255 scale (uint8 JPEG pairs or float32) -> pixels, float32."""
    return np.asarray(frames, dtype=np.float32) * np.float32(2 * FLOW_BOUND / 255.0) - np.float32(FLOW_BOUND)


def tvl1():
    """(cv2, a TV-L1 solver with OpenCV's default parameters); MissingExtraError without the contrib build."""
    what = "TV-L1 optical flow (for flow models such as i3d_flow, and --two-stream)"
    try:
        import cv2
    except ImportError as e:
        raise MissingExtraError(FLOW_EXTRA, what, f"OpenCV is not installed: {e}") from None
    create = getattr(getattr(cv2, "optflow", None), "DualTVL1OpticalFlow_create", None)
    if create is None:
        raise MissingExtraError(FLOW_EXTRA, what, f"OpenCV {cv2.__version__} is installed without its contrib "
                                "modules (cv2.optflow); uninstall opencv-python first") from None
    return cv2, create()


def _gray(cv2, image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def tvl1_flow(frames) -> np.ndarray:
    """TV-L1 flow of in-memory RGB frames: uint8 (T, H, W, 3) -> float32 (T - 1, H, W, 2), pixels, not clipped."""
    frames = as_frames(frames).numpy()
    cv2, solver = tvl1()
    grays = [_gray(cv2, f) for f in frames]
    return np.stack([solver.calc(a, b, None) for a, b in zip(grays, grays[1:])]) if len(grays) > 1 else (
        np.zeros((0, *frames.shape[1:3], 2), np.float32))


def flow_frames(timed: Iterable[tuple[float, np.ndarray, float]], *, resize, interpolation: str = "bilinear",
                progress: Optional[Any] = None) -> Iterator[tuple[float, np.ndarray, float]]:
    """(time, RGB frame, duration) of a decoder -> (time, encoded flow frame, duration), streaming: frames are
    resized as the weights say (``resize``: the ClipSpec's), turned gray, and each pair gives one flow frame.
    progress: a tqdm-like object, advanced by one per flow frame (TV-L1 is slow on a CPU: ~1 s per frame at
    256x340 on one core)."""
    cv2, solver = tvl1()
    prev = None
    for t, image, duration in timed:
        gray = _gray(cv2, resize_for_cfg(image, resize, interpolation)[0].numpy())
        if prev is not None:
            yield prev[0], encode_flow(solver.calc(prev[1], gray, None)), prev[2]
            if progress is not None:
                progress.update(1)
        prev = (t, gray, duration)


__all__ = ["FLOW_BOUND", "decode_flow", "encode_flow", "flow_frames", "tvl1", "tvl1_flow"]
