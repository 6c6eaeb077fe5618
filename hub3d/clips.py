"""Video -> preprocessed clips of clip_len frames, streaming (memory: about one window of frames).

Windows (0-based, [start, end) into the decoded frame sequence, after fps resampling), with
span = clip_len * frame_step source frames per full clip: start = 0, stride, 2 * stride, ... ; a window
[s, e) feeds the frames s, s + frame_step, ... < e to the model.
- tail="loop" (default, Hara's 2020 SlidingWindow + LoopPadding): the last partial window, and a video
  shorter than a span, is kept and loop-padded to clip_len frames with indices [s, s+k, ..., s, s+k, ...].
  Windows stop at the first one that reaches the last frame, so with stride < span no clip is made of
  frames all already in the previous one (the 2020 code adds such a padded window: a documented deviation).
- tail="drop": partial windows are dropped; a video shorter than a span gives no clip (with a warning).
- tail="2017": exactly the 2017 tool's windows (video-classification-3d-cnn-pytorch, make_dataset:
  1-based starts range(1, n - clip_len + 1, clip_len)): like "drop", and also drops a full last window that
  ends on the last frame (so a 32-frame video gives 1 clip of 16, a 16-frame one none).
Training samples one random window per video (``train_indices``), with the same loop padding.
Flow models (ClipSpec.modality "flow") read stored x/y flow folders as they are, and get TV-L1 flow computed
from any other video (hub3d.flow): N frames give N - 1 flow frames, and windows count flow frames.

May import: numpy, torch, hub3d.specs, hub3d.transforms, hub3d.video, hub3d.flow, hub3d.pretrained.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from . import flow, video
from .specs import TAILS, ClipSpec, resolve_cfg, resolve_clip_spec  # noqa: F401  (re-exported names)
from .transforms import Preprocess, normalize

ClipInput = Union[torch.Tensor, list]  # (3, T, H, W), or [slow, fast] for two-pathway models


@dataclass
class Clip:
    video: str  # the source path (or the name of an in-memory video)
    clip: ClipInput  # float32 (C, T, H, W) preprocessed for the model; [slow, fast] with pathway_alpha
    frames: tuple  # (start, end): source frames [start, end) the clip spans, 0-based in the decoded sequence
    seconds: tuple  # (start_s, end_s): time of the first frame, time of the last frame in range + 1 / fps
    index: int  # clip number within its video, from 0
    padded: Optional[bool] = None  # repeats frames (loop padding); None: told from frames and clip length

    def __post_init__(self):
        if self.padded is None:
            fast = self.clip[-1] if isinstance(self.clip, (list, tuple)) else self.clip
            self.padded = self.frames[1] - self.frames[0] < fast.shape[1]


def _spec(clip_len, stride, tail, frame_step) -> ClipSpec:
    stride = stride or clip_len * frame_step
    return ClipSpec(clip_len=clip_len, stride=stride, tail=tail, frame_step=frame_step)  # validates


def clip_windows(num_frames: int, clip_len: int = 16, stride: Optional[int] = None, tail: str = "loop",
                 frame_step: int = 1) -> list[tuple[int, int]]:
    """The [start, end) source-frame ranges of the clips of a num_frames-long video (see the module doc)."""
    spec = _spec(clip_len, stride, tail, frame_step)
    span, stride = spec.span, spec.stride
    if tail == "2017":
        return [(s, s + span) for s in range(0, num_frames - span, stride)]
    out = []
    s = 0
    while s < num_frames:
        e = min(s + span, num_frames)
        if e - s < span and tail == "drop":
            break
        out.append((s, e))
        if e == num_frames:
            break
        s += stride
    return out


def count_clips(num_frames: int, clip_len: int = 16, stride: Optional[int] = None, tail: str = "loop",
                frame_step: int = 1) -> int:
    """How many clips clip_windows / iter_clips give for a video of num_frames frames."""
    return len(clip_windows(num_frames, clip_len, stride, tail, frame_step))


def estimate_clips(path, spec: ClipSpec) -> Optional[int]:
    """How many clips a video will give, from its header alone (cheap); None when it cannot be told."""
    if spec.start is not None or spec.end is not None:
        return None  # a range: the header's length does not say
    try:
        n = video.declared_frames(path, spec.fps, spec.source_fps)
        if n is not None and spec.modality == "flow" and not video.is_flow_folder(path):
            n -= 1  # computed flow: one frame per pair of frames
    except (video.VideoError, OSError):
        return None
    return None if n is None or n < 0 else count_clips(n, spec.clip_len, spec.stride, spec.tail, spec.frame_step)


def loop_indices(start: int, end: int, clip_len: int, frame_step: int = 1) -> list[int]:
    """Frame indices of a window [start, end) at frame_step, loop-padded to clip_len: [s, s+k, ..., s, ...]."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end})")
    real = range(start, end, frame_step)
    return [real[i % len(real)] for i in range(clip_len)]


def train_indices(num_frames: int, clip_len: int, rng: np.random.Generator, frame_step: int = 1) -> list[int]:
    """Training's temporal sample: clip_len indices frame_step apart from a uniformly random start; a video
    shorter than the span loops ([0, k, ..., 0, k, ...]). The evaluation windows' loop padding, one window."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    span = clip_len * frame_step
    start = int(rng.integers(0, max(num_frames - span, 0) + 1))
    return loop_indices(start, min(start + span, num_frames), clip_len, frame_step)


def pack_pathways(clip: torch.Tensor, alpha: Optional[int]) -> ClipInput:
    """(3, T, H, W) -> [slow, fast] (SlowFast; PyTorchVideo's PackPathway): slow = T // alpha frames at
    linspace(0, T - 1, T // alpha), fast = the clip. alpha None: the clip itself."""
    if not alpha:
        return clip
    t = clip.shape[1]
    slow = clip.index_select(1, torch.linspace(0, t - 1, t // alpha).long())
    return [slow, clip]


def per_pathway(fn, clip: ClipInput) -> ClipInput:
    """``fn`` applied to a clip or batch tensor, or to each pathway's tensor of a [slow, fast] one."""
    return [fn(p) for p in clip] if isinstance(clip, (list, tuple)) else fn(clip)


def example_clip(spec: ClipSpec) -> ClipInput:
    """A zero clip of the shape the spec's clips have, (C, T, crop_h, crop_w) or [slow, fast]: what a model can be
    prepared with before the first real clip is decoded."""
    h, w = (spec.crop_size, spec.crop_size) if isinstance(spec.crop_size, int) else spec.crop_size
    return pack_pathways(torch.zeros(spec.channels, spec.clip_len, h, w), spec.pathway_alpha)


def iter_clips(
    video: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    cfg_or_model,
    *,
    clip_len: Optional[int] = None,
    stride: Optional[int] = None,
    tail: Optional[str] = None,
    fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    source_fps: Optional[float] = None,
    frame_step: Optional[int] = None,
    coverage: Optional[video.Coverage] = None,
    **preprocessing,
) -> Iterator[Clip]:
    """Yield the preprocessed clips of a video (or of each video of a list, in order).

    cfg_or_model: a ClipSpec, a PretrainedCfg or a model carrying one; the keywords override it (see
    hub3d.specs.resolve_clip_spec, which sets the stride default; preprocessing keywords are ClipSpec fields
    such as crop_size=64, resize=64, channel_order="BGR"). A path is a video file or a frame folder.
    fps / start / end / source_fps: as hub3d.video.iter_frames. coverage: a video.Coverage that the decoder
    fills in (how much of the file it read versus what the container declares; one video only).
    Each frame is decoded and preprocessed once, even when windows overlap. Raises VideoError (naming the
    file) for unreadable videos and when start/end select no frame; warns when tail drops every window.
    """
    spec = resolve_clip_spec(cfg_or_model, clip_len=clip_len, stride=stride, tail=tail, fps=fps, start=start,
                             end=end, source_fps=source_fps, frame_step=frame_step, **preprocessing)
    videos = [video] if isinstance(video, (str, os.PathLike)) else list(video)
    for path in videos:
        yield from spec_clips(os.fspath(path), spec, coverage)


def spec_clips(path: str, spec: ClipSpec, coverage: Optional[video.Coverage] = None,
               flow_progress=None) -> Iterator[Clip]:
    """The clips of one video file or frame folder under a resolved ClipSpec (coverage: see video.Coverage).
    A flow spec reads a stored flow folder, or computes TV-L1 flow from the frames (flow_progress: a tqdm-like
    bar advanced per flow frame)."""
    stored = video.is_flow_folder(path)
    if stored and spec.modality != "flow":
        raise video.VideoError(path, "holds optical-flow frames (x/y image pairs): a flow model such as i3d_flow "
                                     "reads them, not an RGB one")
    timed = video.timed_frames(path, fps=spec.fps, start=spec.start, end=spec.end, source_fps=spec.source_fps,
                               coverage=coverage)
    yield from _clips(path, _as_modality(timed, spec, stored, flow_progress), spec, Preprocess(spec))


def _as_modality(timed, spec: ClipSpec, is_flow: bool, flow_progress=None):
    """Decoded frames as the spec's modality: RGB frames become TV-L1 flow frames for a flow spec."""
    if spec.modality == "flow" and not is_flow:
        return flow.flow_frames(timed, resize=spec.resize, interpolation=spec.interpolation, progress=flow_progress)
    return timed


def array_clips(frames, spec: ClipSpec, name: str = "<frames>", fps: float = 25.0) -> Iterator[Clip]:
    """The clips of an in-memory video: uint8 (T, H, W, 3) frames (numpy or torch), at ``fps`` for seconds; for a
    flow spec, RGB frames (flow computed) or flow frames (T, H, W, 2) on hub3d.flow's 0-255 scale."""
    from .transforms import as_frames

    frames = as_frames(frames)
    is_flow = frames.shape[-1] == 2
    if is_flow and spec.modality != "flow":
        raise ValueError(f"{name}: (T, H, W, 2) flow frames, but the model takes RGB frames (T, H, W, 3)")
    timed = ((i / fps, frames[i].numpy(), 1 / fps) for i in range(len(frames)))
    yield from _clips(name, _as_modality(timed, spec, is_flow), spec, Preprocess(spec))


def _clips(path, timed, spec: ClipSpec, preprocess: Preprocess) -> Iterator[Clip]:
    clip_len, step, stride, span, tail = spec.clip_len, spec.frame_step, spec.stride, spec.span, spec.tail
    lookahead = 1 if tail == "2017" else 0  # 2017 keeps a full window only if a frame follows it
    # Frames of the current window(s) only: resized + cropped uint8 frames wait in `pending`, then are
    # normalised together into `store` (frame index -> (3, H, W) view) when a clip needs them. Batching the
    # float work, and stacking with numpy, matters: small torch ops wait on torch's thread pool, which is
    # very slow on a busy CPU (a 16-frame torch.stack of crops took 90 ms with 2 threads, 1 ms with numpy).
    times = {}
    pending: dict[int, np.ndarray] = {}
    store: dict[int, np.ndarray] = {}
    k = 0  # next window to emit

    def sampled(i):  # does any window take frame i (windows k0..k1 contain it)?
        return any((i - w * stride) % step == 0 for w in range(max(k, (i - span) // stride), i // stride + 1)
                   if w * stride <= i < w * stride + span)

    def emit(k, s, e):
        if pending:
            x = normalize(np.stack(list(pending.values())), spec).numpy()
            store.update(zip(pending, (x[:, j] for j in range(x.shape[1]))))
            pending.clear()
        clip = torch.from_numpy(np.stack([store[i] for i in loop_indices(s, e, clip_len, step)], axis=1))
        clip = preprocess.subtract_mean_array(clip)
        # seconds: first frame's time, last frame in range's time + its nominal duration (1 / fps)
        return Clip(path, pack_pathways(clip, spec.pathway_alpha), (s, e), (times[s][0], sum(times[e - 1])), k,
                    padded=e - s < span)

    def forget(before):
        for d in (times, store, pending):
            for j in [j for j in d if j < before]:
                del d[j]

    n = 0
    for i, (t, image, duration) in enumerate(timed):
        n = i + 1
        if i >= k * stride:  # frames in the gaps between windows (stride > span) are never kept
            times[i] = (t, duration)
            if sampled(i):
                pending[i] = preprocess.spatial(image)[0].numpy()
        s = k * stride
        if s + span + lookahead == n:  # window k is complete, and certainly one of the final windows
            yield emit(k, s, s + span)
            k += 1
            forget(k * stride)  # frames before the next window
    if n == 0:
        raise video.VideoError(path, f"no frame in the requested range (start={spec.start}, end={spec.end})")
    windows = clip_windows(n, clip_len, stride, tail, step)
    if not windows:
        warnings.warn(f"{path}: {n} frames, fewer than a clip of {clip_len} frames {step} apart with "
                      f"tail={tail!r}: no clip (tail='loop' would loop-pad it)", stacklevel=3)
    for rest in range(k, len(windows)):
        yield emit(rest, *windows[rest])
