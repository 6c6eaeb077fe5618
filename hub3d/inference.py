"""Streaming inference: videos in, per-video class probabilities or clip features out.

Decoding overlaps the model: ``num_workers`` producer threads decode and preprocess clips (``iter_clips``;
FFmpeg and torch release the GIL while they work) into a bounded queue, while the calling thread batches
clips, possibly of several videos, and runs the model. Results are regrouped per video and come back in input
order. Memory is bounded by one batch plus the queue, whatever the video lengths.

Per clip the model gives logits -> softmax (classification) or the globally pooled vector before the
classifier (features); per video, the mean of the clip probabilities (or features). Clip boundaries,
padding and timestamps are those of :func:`hub3d.clips.iter_clips`.
"""
from __future__ import annotations

import contextlib
import copy
import os
import queue
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .clips import TAILS, Clip, iter_clips  # noqa: F401  (iter_clips is re-exported as hub3d.iter_clips)

PathLike = Union[str, os.PathLike]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
ON_ERROR = ("raise", "skip")


# --------------------------------------------------------------------------------------------- results
def _topk(probs: np.ndarray, labels: Sequence[str], k: int) -> list[tuple[str, int, float]]:
    k = min(k, probs.shape[-1])
    order = np.argsort(-probs, kind="stable")[:k]
    return [(labels[i], int(i), float(probs[i])) for i in order]


def _clip_rows(frames: np.ndarray, seconds: np.ndarray) -> list[dict]:
    return [
        {"clip": i, "frames": [int(f[0]), int(f[1])], "seconds": [float(s[0]), float(s[1])]}
        for i, (f, s) in enumerate(zip(frames, seconds))
    ]


@dataclass
class VideoResult:
    """Classification of one video. Arrays are numpy; ``clip_frames`` are [start, end) frame indices."""

    video: str
    probs: np.ndarray  # (num_classes,) mean of the clip softmaxes
    topk: list  # [(label, index, prob)], best first
    clip_probs: np.ndarray  # (n_clips, num_classes)
    clip_frames: np.ndarray  # (n_clips, 2) int64
    clip_seconds: np.ndarray  # (n_clips, 2) float64
    labels: list

    @property
    def n_clips(self) -> int:
        return len(self.clip_probs)

    @property
    def label(self) -> str:
        return self.topk[0][0]

    def clip_topk(self, k: int = 5) -> list[list[tuple[str, int, float]]]:
        return [_topk(p, self.labels, k) for p in self.clip_probs]

    def to_dict(self, per_clip: bool = True, clip_topk: int = 5, probs: bool = False) -> dict:
        """JSON-ready: top-k per video; per clip its frame range, seconds and top-k (and every prob if asked)."""
        d: dict[str, Any] = {
            "video": self.video,
            "n_clips": self.n_clips,
            "topk": [{"label": l, "index": i, "prob": p} for l, i, p in self.topk],
        }
        if probs:
            d["probs"] = self.probs.tolist()
        if per_clip:
            clips = _clip_rows(self.clip_frames, self.clip_seconds)
            for row, p in zip(clips, self.clip_probs):
                row["topk"] = [{"label": l, "index": i, "prob": q} for l, i, q in _topk(p, self.labels, clip_topk)]
                if probs:
                    row["probs"] = p.tolist()
            d["clips"] = clips
        return d


@dataclass
class FeatureResult:
    """Clip features of one video: the pooled vector before the classifier, one row per clip."""

    video: str
    features: np.ndarray  # (n_clips, D)
    clip_frames: np.ndarray  # (n_clips, 2) int64, [start, end)
    clip_seconds: np.ndarray  # (n_clips, 2) float64
    mean_features: Optional[np.ndarray] = None  # (D,) when per_video_mean

    @property
    def n_clips(self) -> int:
        return len(self.features)

    def to_dict(self) -> dict:
        d = {"video": self.video, "n_clips": self.n_clips, "features": self.features.tolist(),
             "clips": _clip_rows(self.clip_frames, self.clip_seconds)}
        if self.mean_features is not None:
            d["mean_features"] = self.mean_features.tolist()
        return d

    def save(self, path: PathLike, mean: bool = False):
        """Atomically write ``.npy`` (features, or the (D,) mean if ``mean``) or ``.npz`` (every array)."""
        from . import io

        path = os.fspath(path)
        if path.lower().endswith(".npz"):
            arrays = {"features": self.features, "clip_frames": self.clip_frames, "clip_seconds": self.clip_seconds}
            if self.mean_features is not None or mean:
                arrays["mean_features"] = self.features.mean(0) if self.mean_features is None else self.mean_features
            return io.write_npz(path, **arrays)
        if not path.lower().endswith(".npy"):
            raise ValueError(f"{path}: feature files must end in .npy or .npz")
        return io.write_npy(path, self.features.mean(0) if mean else self.features)


@dataclass
class FailedVideo:
    """A video that could not be processed (``on_error="skip"``): its path and why."""

    video: str
    error: str
    exception: BaseException = field(repr=False, default=None)


# ---------------------------------------------------------------------------------------------- engine
def resolve_device(model: torch.nn.Module, device=None) -> torch.device:
    """The requested device, else the one the model's parameters are on."""
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class ClipRunner:
    """Runs batches of clips through a model: eval mode, inference_mode, reduced precision, channels_last_3d.

    Reduced precision is torch.autocast on accelerators; bf16 on cpu runs a bf16 copy of the model instead.

    ``head="probs"`` returns softmax probabilities (computed in fp32), ``"logits"`` the raw scores,
    ``"features"`` the pooled pre-logits vector. Outputs are float32 numpy arrays.
    """

    def __init__(self, model, head="probs", device=None, precision="fp32", channels_last=None):
        if head not in ("probs", "logits", "features"):
            raise ValueError(f"head must be 'probs', 'logits' or 'features', not {head!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, not {precision!r}")
        self.device = resolve_device(model, device)
        if precision == "fp16" and self.device.type == "cpu":
            raise ValueError("precision 'fp16' needs a cuda or mps device; on cpu use 'bf16'")
        # channels_last_3d (NDHWC) by default: oneDNN's and cuDNN's fast 3D convolutions want it. Measured on the
        # dev CPU (AVX512-BF16, resnet3d_18, 8x16x112x112, min of 3): fp32 2.43 -> 1.87 s, bf16 2.12 -> 1.60 s.
        self.channels_last = True if channels_last is None else channels_last
        self.model = model
        self.head = head
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        model.eval()
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last_3d)
        self.net = model
        if self.dtype is torch.bfloat16 and self.device.type == "cpu":
            # A bf16 copy of the weights instead of autocast, which re-casts every weight at every call: measured
            # ~20% faster on the dev CPU (resnet3d_18, batch 8). The caller's model stays fp32.
            self.net = copy.deepcopy(model).to(torch.bfloat16)

    def _autocast(self):
        if self.dtype is None or self.net is not self.model:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        x = x.to(self.device, non_blocking=True)
        if self.net is not self.model:
            x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with self._autocast():
            feats = self.net.forward_features(x)
            out = self.net.forward_head(feats, pre_logits=self.head == "features")
        out = out.float()
        if self.head == "probs":
            out = out.softmax(dim=-1)
        return out.cpu().numpy()


def _as_video_error(path, exc: BaseException) -> Exception:
    from .video import VideoError

    if isinstance(exc, VideoError) or str(path) in str(exc):
        return exc
    err = VideoError(path, f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


_END, _CLIP, _ERROR = "end", "clip", "error"


class _Producer:
    """Worker threads that turn videos into clips, in a bounded queue of (kind, video index, payload)."""

    def __init__(self, videos, clip_kwargs, num_workers, queue_size):
        self.videos = videos
        self.clip_kwargs = clip_kwargs
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()
        self._next = iter(range(len(videos)))
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._work, name=f"hub3d-decode-{i}", daemon=True)
            for i in range(max(1, min(num_workers, len(videos))))
        ]
        self.alive = len(self.threads)
        for t in self.threads:
            t.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self):
        # One intra-op thread for preprocessing, set for this thread only (OpenMP keeps it per thread): with the
        # default, every small resize/normalise op waits for a thread team that the model's ops keep busy.
        torch.set_num_threads(1)
        try:
            while not self.stop.is_set():
                with self._lock:
                    idx = next(self._next, None)
                if idx is None:
                    return
                path = self.videos[idx]
                n = 0
                try:
                    for clip in iter_clips(path, **self.clip_kwargs):
                        if not self._put((_CLIP, idx, clip)):
                            return
                        n += 1
                except Exception as e:  # noqa: BLE001  (any failure belongs to this video; reported by path)
                    self._put((_ERROR, idx, _as_video_error(path, e)))
                    continue
                self._put((_END, idx, n))
        finally:
            self._put((_END, None, None))  # this worker is done

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


class _Job:
    __slots__ = ("rows", "frames", "seconds", "expected", "failed")

    def __init__(self):
        self.rows, self.frames, self.seconds = {}, {}, {}
        self.expected: Optional[int] = None
        self.failed: Optional[BaseException] = None

    @property
    def complete(self) -> bool:
        return self.expected is not None and len(self.rows) == self.expected


def _normalise_videos(video) -> tuple[list[str], bool]:
    if isinstance(video, (str, os.PathLike)):
        return [os.fspath(video)], True
    videos = [os.fspath(v) for v in video]
    return videos, False


def _check_args(tail, on_error, batch_size):
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, not {tail!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")


def _default_workers(device: torch.device) -> int:
    # On cpu the model needs the cores and one decoder keeps up; accelerators need clips faster.
    return 1 if device.type == "cpu" else min(4, os.cpu_count() or 1)


def _stream(
    runner: ClipRunner,
    videos: list[str],
    clip_kwargs: dict,
    batch_size: int,
    num_workers: Optional[int],
    on_error: str,
    progress: Union[bool, Any],
    threads: Optional[int] = None,
) -> Iterator[tuple[str, Union[tuple, FailedVideo]]]:
    """Yield (video, (rows, frames, seconds)) or (video, FailedVideo) in input order."""
    if not videos:
        return
    workers = _default_workers(runner.device) if num_workers is None else num_workers
    workers = max(1, min(workers, len(videos)))
    producer = _Producer(videos, clip_kwargs, workers, queue_size=2 * batch_size)
    jobs = {i: _Job() for i in range(len(videos))}
    done: dict[int, Any] = {}
    next_out = 0
    batch: list[tuple[int, Clip]] = []
    bar = _progress_bar(progress, len(videos))
    pin = runner.device.type == "cuda"

    def run_batch():
        x = torch.stack([c.clip for _, c in batch])
        out = runner(x.pin_memory() if pin else x)
        for (idx, clip), row in zip(batch, out):
            job = jobs.get(idx)  # None: the video failed after some of its clips were queued
            if job is not None and job.failed is None:
                job.rows[clip.index] = row
                job.frames[clip.index] = clip.frames
                job.seconds[clip.index] = clip.seconds
                maybe_finish(idx)
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    def maybe_finish(idx):
        job = jobs.get(idx)
        if job is not None and job.failed is None and job.complete:
            if job.expected == 0:
                job.failed = _as_video_error(videos[idx], ValueError("no clips" + _no_clip_hint(clip_kwargs)))
                finish_failed(idx)
                return
            order = sorted(job.rows)
            done[idx] = (
                np.stack([job.rows[i] for i in order]),
                np.asarray([job.frames[i] for i in order], dtype=np.int64).reshape(-1, 2),
                np.asarray([job.seconds[i] for i in order], dtype=np.float64).reshape(-1, 2),
            )
            del jobs[idx]

    def finish_failed(idx):
        exc = jobs.pop(idx).failed
        if on_error == "raise":
            raise exc
        done[idx] = FailedVideo(videos[idx], str(exc), exc)

    torch_threads = torch.get_num_threads()
    if runner.device.type == "cpu":
        torch.set_num_threads(threads or cpu_model_threads(torch_threads, workers))
    elif threads:
        torch.set_num_threads(threads)
    try:
        alive = len(producer.threads)
        while alive or batch:
            if alive:
                kind, idx, payload = producer.queue.get()
            else:
                kind = None
            if kind == _CLIP:
                if jobs.get(idx) is not None and jobs[idx].failed is None:
                    batch.append((idx, payload))
            elif kind == _END and idx is None:
                alive -= 1
            elif kind == _END:
                jobs[idx].expected = payload
                maybe_finish(idx)
            elif kind == _ERROR and idx in jobs:
                jobs[idx].failed = payload
                finish_failed(idx)
            if len(batch) >= batch_size or (batch and not alive):
                run_batch()
            while next_out in done:
                result = done.pop(next_out)
                if bar is not None:
                    bar.set_postfix(videos=f"{next_out + 1}/{len(videos)}", refresh=False)
                yield videos[next_out], result
                next_out += 1
    finally:
        producer.close()
        torch.set_num_threads(torch_threads)
        if bar is not None:
            bar.close()
    assert next_out == len(videos), "internal error: some videos were never finished"


def cpu_model_threads(cores: int, decoders: int) -> int:
    """The model's torch threads on CPU next to ``decoders`` decoder threads.

    A core is left to each decoder only when the model keeps at least two: on the idle 2-core dev box the model
    on both cores beside one decoder was faster end to end (benchmarks/bench_inference.py, resnet3d_18, 128 clips:
    fp32 22.4 -> 15.1 s, bf16 13.3 -> 9.2 s), though on the same box loaded by other jobs one model thread won.
    """
    return cores - decoders if cores - decoders >= 2 else cores


def _no_clip_hint(clip_kwargs) -> str:
    if clip_kwargs.get("tail") != "loop":
        return f" (the video is too short for one full clip and tail={clip_kwargs.get('tail')!r} drops partial clips; use tail='loop')"
    return " (no frames in the requested range)"


def _progress_bar(progress, n_videos):
    if not progress:
        return None
    if progress is not True:
        return progress  # a tqdm-like object supplied by the caller
    from tqdm.auto import tqdm

    return tqdm(unit="clip", desc=f"{n_videos} video{'s' if n_videos != 1 else ''}", dynamic_ncols=True)


def _clip_kwargs(model, cfg, clip_len, stride, tail, fps, start, end) -> dict:
    return dict(cfg_or_model=cfg if cfg is not None else model, clip_len=clip_len, stride=stride, tail=tail,
                fps=fps, start=start, end=end)


# ---------------------------------------------------------------------------------------------- public
def _iter_outputs(
    model: torch.nn.Module,
    videos: Iterable[PathLike],
    head: str,
    *,
    clip_len: Optional[int] = None,
    stride: Optional[int] = None,
    tail: str = "loop",
    batch_size: int = 8,
    device=None,
    precision: str = "fp32",
    num_workers: Optional[int] = None,
    fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    cfg=None,
    channels_last: Optional[bool] = None,
    threads: Optional[int] = None,
    on_error: str = "raise",
    progress: Union[bool, Any] = False,
    runner=None,
):
    """The engine behind every public call: yields (video, (clip outputs, frames, seconds)) or FailedVideo.

    runner: a ready ``runner(batch) -> np.ndarray`` with ``.device`` (e.g. hub3d.export.OnnxRunner) instead of a
    ClipRunner of ``model``; ``model`` then only gives the cfg and labels."""
    videos, _ = _normalise_videos(videos)
    _check_args(tail, on_error, batch_size)
    was_training = getattr(model, "training", False)
    if runner is None:
        runner = ClipRunner(model, head, device, precision, channels_last)
    kwargs = _clip_kwargs(model, cfg, clip_len, stride, tail, fps, start, end)
    try:
        for video, out in _stream(runner, videos, kwargs, batch_size, num_workers, on_error, progress, threads):
            yield out if isinstance(out, FailedVideo) else (video, out)
    finally:
        if isinstance(model, torch.nn.Module):
            model.train(was_training)


def iter_classify(
    model: torch.nn.Module, videos: Iterable[PathLike], *, topk: int = 5, **options
) -> Iterator[Union[VideoResult, FailedVideo]]:
    """Like :func:`classify` (same options), but yields each video's result, in input order, once it is ready.

    With ``on_error="skip"`` a video that fails yields a :class:`FailedVideo` (path + reason) instead.
    """
    labels = list(getattr(model, "labels", None) or [f"class_{i}" for i in range(model.num_classes)])
    for item in _iter_outputs(model, videos, "probs", **options):
        if isinstance(item, FailedVideo):
            yield item
            continue
        video, (clip_probs, frames, seconds) = item
        probs = clip_probs.mean(axis=0)
        if len(labels) != len(probs):
            labels = [f"class_{i}" for i in range(len(probs))]
        yield VideoResult(video, probs, _topk(probs, labels, topk), clip_probs, frames, seconds, labels)


def iter_extract_features(
    model: torch.nn.Module, videos: Iterable[PathLike], *, per_video_mean: bool = False, **options
) -> Iterator[Union[FeatureResult, FailedVideo]]:
    """Like :func:`extract_features` (same options), but yields each video's result once it is ready."""
    for item in _iter_outputs(model, videos, "features", **options):
        if isinstance(item, FailedVideo):
            yield item
            continue
        video, (feats, frames, seconds) = item
        yield FeatureResult(video, feats, frames, seconds, feats.mean(axis=0) if per_video_mean else None)


def _collect(results, single: bool, on_error: str):
    out = []
    for r in results:
        if isinstance(r, FailedVideo):
            warnings.warn(f"skipped {r.error}", stacklevel=3)
            if not single:
                continue
            return None
        out.append(r)
    return out[0] if single else out


def classify(model: torch.nn.Module, video: Union[PathLike, Sequence[PathLike]], **kwargs):
    """Classify a video (or a list of videos): top-k labels from the mean of the clip softmaxes.

    Clips follow ``model.pretrained_cfg`` (clip_len, stride, preprocessing) unless ``clip_len``, ``stride`` or
    ``cfg`` override it; ``tail="loop"`` loop-pads the last partial clip, ``"drop"`` drops it, ``"2017"`` gives exactly the 2017
    tool's windows (see hub3d.clips).
    Other options: ``topk``, ``batch_size``, ``device`` (default: the model's), ``precision`` ("fp32",
    "bf16", "fp16" on cuda/mps), ``num_workers`` (decoder threads), ``threads`` (the model's torch threads
    during the run; on cpu default: all cores but one per decoder), ``fps`` (resample), ``start``/``end``
    (seconds), ``on_error`` ("raise", or "skip": failed videos are left out of a list with a warning, a single
    failed video gives None), ``progress``.

    Returns a :class:`VideoResult` for a path, a list of them (input order) for a list of paths.
    """
    videos, single = _normalise_videos(video)
    return _collect(iter_classify(model, videos, **kwargs), single, kwargs.get("on_error", "raise"))


def extract_features(model: torch.nn.Module, video: Union[PathLike, Sequence[PathLike]], **kwargs):
    """Clip features of a video (or list): ``forward_head(forward_features(x), pre_logits=True)`` per clip.

    ``per_video_mean=True`` also fills ``mean_features``. Same options as :func:`classify` (no ``topk``).
    Returns a :class:`FeatureResult` for a path, a list of them for a list of paths.
    """
    videos, single = _normalise_videos(video)
    return _collect(iter_extract_features(model, videos, **kwargs), single, kwargs.get("on_error", "raise"))


__all__ = [
    "Clip",
    "ClipRunner",
    "FailedVideo",
    "FeatureResult",
    "VideoResult",
    "classify",
    "extract_features",
    "iter_classify",
    "iter_clips",
    "iter_extract_features",
]
