"""Video files <-> frames, with PyAV (FFmpeg in-process: no temp files, no ffmpeg binary)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np


def write_video(
    path: Union[str, os.PathLike],
    frames: np.ndarray,
    fps: float = 25.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames to a video file, atomically (temp file + rename).

    h264 with yuv420p needs even sizes: odd ones are padded by FFmpeg's encoder constraints, so use another
    pix_fmt (yuv444p) or codec (mpeg4 handles odd sizes) to keep them exact.
    """
    import av
    from fractions import Fraction

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = pix_fmt
            if options:
                stream.options = options
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
