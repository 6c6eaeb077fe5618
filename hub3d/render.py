"""A video with each clip's top label and probability drawn on its frames (what the 2017 tool's result video showed).

Frames are decoded at their original size and rate, labelled with PIL's ImageDraw and streamed into
hub3d.video.write_video (memory: one frame), so any length works.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]


def font_size_for(height: int, width: int) -> int:
    """Readable on the frame: 1/18 of the short side, at least 10 px."""
    return max(10, min(height, width) // 18)


def frame_labels(result, num_frames: int) -> list[Optional[str]]:
    """Per frame index, the text of the clip it belongs to ("label 0.87"); with overlapping clips the latest one
    that covers the frame; None for frames in no clip (e.g. dropped tails)."""
    texts: list[Optional[str]] = [None] * num_frames
    for (start, end), top in zip(result.clip_frames, result.clip_topk(1)):
        label, _, prob = top[0]
        for i in range(int(start), min(int(end), num_frames)):
            texts[i] = f"{label} {prob:.2f}"
    return texts


def draw_label(image: np.ndarray, text: str, font=None) -> np.ndarray:
    """``text`` in white on a dark box in the top-left corner of an (H, W, 3) uint8 frame (a new array)."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape[:2]
    font = font or ImageFont.load_default(size=font_size_for(h, w))
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    pad = max(2, getattr(font, "size", 10) // 4)
    left, top, right, bottom = draw.textbbox((pad, pad), text, font=font)
    draw.rectangle((0, 0, min(w - 1, right + pad), min(h - 1, bottom + pad)), fill=(0, 0, 0))
    draw.text((pad, pad), text, fill=(255, 255, 255), font=font)
    return np.asarray(im)


def render_video(model, video: PathLike, out: PathLike, *, result=None, codec: str = "libx264",
                 pix_fmt: str = "yuv420p", **classify_kwargs) -> Path:
    """Classify ``video`` with ``model`` (or use a ready VideoResult ``result`` of it) and write ``out``: every
    frame with its clip's top label and probability, original size and frame rate.

    classify_kwargs go to hub3d.classify (clip_len, stride, tail, batch_size, device, runner, ...); ``fps`` is not
    accepted, since clip frame numbers must be those of the original frames.
    """
    from PIL import ImageFont

    from .errors import VideoError
    from .inference import classify
    from .video import iter_frames, probe, write_video

    if "fps" in classify_kwargs:
        raise ValueError("render_video keeps the original frame rate: fps resampling is not supported")
    if result is None:
        result = classify(model, video, topk=1, **classify_kwargs)[0]
    info = probe(video)
    n = info.num_frames or int(result.clip_frames[-1, 1])
    texts = frame_labels(result, max(n, int(result.clip_frames[-1, 1])))
    font = ImageFont.load_default(size=font_size_for(info.height, info.width))

    def frames():
        for frame in iter_frames(video):
            text = texts[frame.index] if frame.index < len(texts) else None
            yield draw_label(frame.image, text, font) if text else frame.image

    try:
        return write_video(out, frames(), fps=info.fps, codec=codec, pix_fmt=pix_fmt)
    except ValueError as e:
        raise VideoError(video, f"cannot render into {out}: {e}") from e


__all__ = ["draw_label", "font_size_for", "frame_labels", "render_video"]
