"""Video -> preprocessed clips of clip_len frames, streaming (memory: about one window of frames).

Windows (0-based, [start, end) into the decoded frame sequence, after fps resampling):
start = 0, stride, 2 * stride, ... ; each window has clip_len frames.
- tail="loop" (default, Hara's 2020 SlidingWindow + LoopPadding): the last partial window, and a video
  shorter than clip_len, is kept and loop-padded to clip_len frames with indices [s, s+1, ..., e-1, s, s+1, ...].
  Windows stop at the first one that reaches the last frame, so with stride < clip_len no clip is made of
  frames all already in the previous one (the 2020 code adds such a padded window: a documented deviation).
- tail="drop": partial windows are dropped; a video shorter than clip_len gives no clip (with a warning).
- tail="2017": exactly the 2017 tool's windows (video-classification-3d-cnn-pytorch, make_dataset:
  1-based starts range(1, n - clip_len + 1, clip_len)): like "drop", and also drops a full last window that
  ends on the last frame (so a 32-frame video gives 1 clip of 16, a 16-frame one none).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .pretrained import PretrainedCfg
from .transforms import Preprocess, normalize

TAILS = ("loop", "drop", "2017")


@dataclass
class Clip:
    video: str  # the source path
    clip: torch.Tensor  # float32 (3, T, H, W), preprocessed for the model
    frames: tuple  # (start, end): real frames [start, end), 0-based in the decoded (resampled) sequence
    seconds: tuple  # (start_s, end_s): time of the first frame, time of the last real frame + 1 / fps
    index: int  # clip number within its video, from 0

    @property
    def padded(self) -> bool:
        """True when the clip repeats frames (loop padding of a partial window)."""
        return self.frames[1] - self.frames[0] < self.clip.shape[1]


def _check(clip_len: int, stride: int, tail: str) -> None:
    if int(clip_len) < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")


def clip_windows(num_frames: int, clip_len: int = 16, stride: Optional[int] = None,
                 tail: str = "loop") -> list[tuple[int, int]]:
    """The [start, end) real-frame ranges of the clips of a num_frames-long video (see the module doc)."""
    stride = stride or clip_len
    _check(clip_len, stride, tail)
    if tail == "2017":
        return [(s, s + clip_len) for s in range(0, num_frames - clip_len, stride)]
    out = []
    s = 0
    while s < num_frames:
        e = min(s + clip_len, num_frames)
        if e - s < clip_len and tail == "drop":
            break
        out.append((s, e))
        if e == num_frames:
            break
        s += stride
    return out


def count_clips(num_frames: int, clip_len: int = 16, stride: Optional[int] = None, tail: str = "loop") -> int:
    """How many clips clip_windows / iter_clips give for a video of num_frames frames."""
    return len(clip_windows(num_frames, clip_len, stride, tail))


def loop_indices(start: int, end: int, clip_len: int) -> list[int]:
    """Frame indices of a window [start, end) loop-padded to clip_len: [s, ..., e-1, s, s+1, ...]."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end})")
    n = end - start
    return [start + i % n for i in range(clip_len)]


def resolve_cfg(cfg_or_model) -> PretrainedCfg:
    """A PretrainedCfg, or the .pretrained_cfg of a model."""
    if isinstance(cfg_or_model, PretrainedCfg):
        return cfg_or_model
    cfg = getattr(cfg_or_model, "pretrained_cfg", None)
    if isinstance(cfg, PretrainedCfg):
        return cfg
    raise TypeError(f"expected a PretrainedCfg or a model with .pretrained_cfg, got {type(cfg_or_model).__name__}")


def iter_clips(
    video: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    cfg_or_model,
    *,
    clip_len: Optional[int] = None,
    stride: Optional[int] = None,
    tail: str = "loop",
    fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    source_fps: Optional[float] = None,
    **overrides,
) -> Iterator[Clip]:
    """Yield the preprocessed clips of a video (or of each video of a list, in order).

    cfg_or_model: the PretrainedCfg (or a model carrying one) whose preprocessing and clip_len apply;
    overrides replace its fields (e.g. crop_size=64, resize=64). clip_len: default cfg.clip_len; stride:
    default cfg.clip_stride (unless clip_len differs from the cfg's), else clip_len. A path is a video file
    or a frame folder. fps / start / end / source_fps: as hub3d.video.iter_frames.
    Each frame is decoded and preprocessed once, even when windows overlap. Raises VideoError (naming the
    file) for unreadable videos and when start/end select no frame; warns when tail drops every window.
    """
    cfg = resolve_cfg(cfg_or_model)
    if overrides:
        cfg = cfg.replace(**overrides)
    clip_len = int(clip_len or cfg.clip_len)
    stride = int(stride or (cfg.clip_stride if clip_len == cfg.clip_len and cfg.clip_stride else clip_len))
    _check(clip_len, stride, tail)
    videos = [video] if isinstance(video, (str, os.PathLike)) else list(video)
    preprocess = Preprocess(cfg)
    for path in videos:
        yield from _video_clips(os.fspath(path), preprocess, clip_len, stride, tail, fps, start, end, source_fps)


def _video_clips(path, preprocess, clip_len, stride, tail, fps, start, end, source_fps):
    from . import video

    lookahead = 1 if tail == "2017" else 0  # 2017 keeps a full window only if a frame follows it
    # Frames of the current window(s) only: resized + cropped uint8 frames wait in `pending`, then are
    # normalised together into `store` (frames base, base + 1, ...) when a clip needs them. Batching the
    # float work, and stacking with numpy, matters: small torch ops wait on torch's thread pool, which is
    # very slow on a busy CPU (a 16-frame torch.stack of crops took 90 ms with 2 threads, 1 ms with numpy).
    times = {}
    pending = []
    store = None
    base = 0
    k = 0  # next window to emit

    def emit(k, s, e):
        nonlocal store, pending
        if pending:
            x = normalize(np.stack(pending), preprocess.cfg)
            store = x if store is None else torch.cat([store, x], dim=1)
            pending = []
        idx = torch.tensor(loop_indices(s, e, clip_len)) - base
        # seconds: first frame's time, last real frame's time + its nominal duration (1 / fps)
        return Clip(path, store.index_select(1, idx), (s, e), (times[s][0], sum(times[e - 1])), k)

    n = 0
    timed = video.timed_frames(path, fps=fps, start=start, end=end, source_fps=source_fps)
    for i, (t, image, duration) in enumerate(timed):
        n = i + 1
        if i >= k * stride:  # frames in the gaps between windows (stride > clip_len) are never kept
            times[i] = (t, duration)
            pending.append(preprocess.spatial(image)[0].numpy())
        s = k * stride
        if s + clip_len + lookahead == n:  # window k is complete, and certainly one of the final windows
            yield emit(k, s, s + clip_len)
            k += 1
            keep_from = k * stride  # forget frames before the next window
            if store is not None:
                store = store[:, keep_from - base:] if keep_from - base < store.shape[1] else None
            base = keep_from
            times = {j: t for j, t in times.items() if j >= keep_from}
    if n == 0:
        raise video.VideoError(path, f"no frame in the requested range (start={start}, end={end})")
    windows = clip_windows(n, clip_len, stride, tail)
    if not windows:
        warnings.warn(f"{path}: {n} frames, fewer than a clip of {clip_len} with tail={tail!r}: no clip "
                      "(tail='loop' would loop-pad it)", stacklevel=3)
    for k in range(k, len(windows)):
        yield emit(k, *windows[k])
