"""Streaming inference: videos (files, folders, in-memory frames) in, per-video class probabilities or clip features out.

Decoding overlaps the model: ``num_workers`` producer threads decode and preprocess clips (``iter_clips``;
FFmpeg and torch release the GIL while they work) into a bounded queue, while the calling thread batches
clips, possibly of several videos, and runs the model. Results are regrouped per video and come back in input
order. Memory is bounded by one batch plus the queue, whatever the video lengths.

Per clip the model gives logits -> softmax (classification) or the globally pooled vector before the
classifier (features); per video, the mean of the clip probabilities (or features). Clip boundaries,
padding and timestamps are those of :func:`hub3d.clips.iter_clips`, under one ClipSpec; batch size, device,
precision and threads come from one RunSpec (hub3d.specs). Batches run through a runner: any callable
``runner(batch) -> np.ndarray`` with ``.device``; :class:`ClipRunner` is the torch one.

May import: numpy, torch, hub3d.clips, hub3d.specs, hub3d.video (errors), hub3d.io, tqdm (lazily).
"""
from __future__ import annotations

import contextlib
import copy
import os
import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch

from . import io
from .clips import Clip, array_clips, estimate_clips, example_clip, iter_clips, per_pathway, spec_clips  # noqa: F401  (iter_clips: hub3d.iter_clips)
from .errors import VideoError
from .specs import ClipSpec, RunSpec, resolve_clip_spec, resolve_device, resolve_precision, resolve_run_spec
from .video import Coverage, declared_frames, is_flow_folder

PathLike = Union[str, os.PathLike]
# One video for the engine: a file or frame folder, uint8 frames (T, H, W, 3) in memory, or a zero-argument
# callable returning such frames (loaded in a decoder thread: a dataset's videos, one at a time).
VideoInput = Union[PathLike, np.ndarray, torch.Tensor, Callable[[], Any]]
ON_ERROR = ("raise", "skip")
Runner = Callable[[Any], np.ndarray]  # batch (a tensor, or a list of tensors per pathway) -> numpy; has .device


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


def _coverage_dict(r) -> dict:
    return {"complete": r.complete, "decoded_seconds": r.decoded_seconds, "declared_seconds": r.declared_seconds}


class _Outputs(tuple):
    """(clip outputs, frames, seconds) of one video, with how much of the video was decoded (.coverage)."""

    coverage = None

    def coverage_fields(self) -> dict:
        return {} if self.coverage is None else _coverage_dict(self.coverage)


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
    complete: bool = True  # False: the video ended well short of its declared length (see video.Coverage)
    decoded_seconds: Optional[float] = None
    declared_seconds: Optional[float] = None

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
            **_coverage_dict(self),
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
    complete: bool = True  # as VideoResult
    decoded_seconds: Optional[float] = None
    declared_seconds: Optional[float] = None

    @property
    def n_clips(self) -> int:
        return len(self.features)

    def to_dict(self) -> dict:
        d = {"video": self.video, "n_clips": self.n_clips, "features": self.features.tolist(),
             "clips": _clip_rows(self.clip_frames, self.clip_seconds), **_coverage_dict(self)}
        if self.mean_features is not None:
            d["mean_features"] = self.mean_features.tolist()
        return d

    def save(self, path: PathLike, mean: bool = False):
        """Atomically write ``.npy`` (features, or the (D,) mean if ``mean``) or ``.npz`` (every array)."""
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
class ClipRunner:
    """Runs batches of clips through a model: eval mode, inference_mode, reduced precision, channels_last_3d.

    Reduced precision is torch.autocast on accelerators; bf16 on cpu runs a bf16 copy of the model instead.
    A batch is a (B, 3, T, H, W) tensor, or a list of them (one per pathway: SlowFast's [slow, fast]).

    ``head="probs"`` returns softmax probabilities (computed in fp32), ``"logits"`` the raw scores,
    ``"features"`` the pooled pre-logits vector, or with ``layer`` that layer's output (model.forward_intermediates)
    pooled over T, H, W (``pool`` "avg" / "max") or whole (None). Outputs are float32 numpy arrays.

    ``pad_single`` (default: on cpu): a batch of ONE clip runs as that clip and a copy of it, the copy's row
    dropped, so a clip's outputs are the same bytes whatever batch it falls in (a run's short last batch, shards,
    Ray, resumes). oneDNN's conv3d and the BLAS linear take other kernels for batch 1 than for 2+ (fp32 ~1e-6
    apart; measured identical for 2, 3, 4 and 8) and no flag selects the batched kernels short of turning oneDNN
    off. Costs one clip per short batch; runs of batch size 1 (:meth:`for_run`) skip it.

    ``fold_bn`` (default on): every BatchNorm fed directly by a convolution is folded into it (see
    :func:`fold_batchnorm`) in a copy of the model that shares its other tensors; found by running one clip
    (a quarter-size crop of it where the model takes one; see :func:`fold_pairs`): a zero clip of the spec's
    shape that the engine passes to :meth:`prepare` before the first batch, else the first batch's first clip.
    ``.folded`` says how many. Outputs move by float rounding only (~1e-6 relative); ``fold_bn=False`` runs
    the model as it is. Never with ``layer`` (an intermediate may be a convolution's own output).
    """

    def __init__(self, model, head="probs", device=None, precision="fp32", channels_last=None,
                 pad_single: Optional[bool] = None, compile=False, layer=None, pool="avg", fold_bn: bool = True):
        if head not in ("probs", "logits", "features"):
            raise ValueError(f"head must be 'probs', 'logits' or 'features', not {head!r}")
        if layer is not None and head != "features":
            raise ValueError("layer= is for head='features'")
        self.layer = None if layer is None else model.resolve_layer(layer)
        self.pool = pool
        self.device = resolve_device(device, model)
        precision = resolve_precision(precision, self.device)
        # channels_last_3d (NDHWC) by default: oneDNN's and cuDNN's fast 3D convolutions want it. Measured on the
        # dev CPU (AVX512-BF16, resnet3d_18, 8x16x112x112, min of 3): fp32 2.43 -> 1.87 s, bf16 2.12 -> 1.60 s.
        self.channels_last = True if channels_last is None else channels_last
        self.model = model
        self.head = head
        self.precision = precision
        self.pad_single = self.device.type == "cpu" if pad_single is None else pad_single
        self.dtype = RunSpec(precision=precision).dtype
        model.eval()
        model.to(self.device)
        self.net = model  # channels_last_3d in _make_net: written into a folded copy, else the model converted in place
        self._fold_pending = bool(fold_bn) and layer is None and any(isinstance(m, _NORMS) for m in model.modules())
        self.folded = 0  # BatchNorm layers folded
        self._net_dtype = None  # the dtype of a reduced-precision copy of the weights (bf16 on cpu)
        if not self._fold_pending:
            self._make_net([])
        # compile=True: torch.compile of features + head together (compiling the module would only cover
        # forward()); compiled at the first batch, again for a new batch shape (the last, smaller batch).
        self._forward = torch.compile(self._eager) if compile else self._eager

    @classmethod
    def for_run(cls, model, head: str, run: RunSpec, layer=None, pool="avg") -> ClipRunner:
        # batch_size 1: every batch is a single clip, so padding would double the work and change nothing.
        return cls(model, head, run.device, run.precision, run.channels_last,
                   pad_single=None if run.batch_size > 1 else False, compile=run.compile, layer=layer, pool=pool)

    def _make_net(self, pairs):
        # bf16 on cpu: a bf16 copy of the weights instead of autocast, which re-casts every weight at every call:
        # measured ~20% faster on the dev CPU (resnet3d_18, batch 8). The caller's model stays fp32.
        bf16 = self.dtype is torch.bfloat16 and self.device.type == "cpu"
        if pairs or bf16:
            self.net = inference_copy(self.model, pairs, torch.bfloat16 if bf16 else None, self.channels_last)
            self._net_dtype = torch.bfloat16 if bf16 else None
        elif self.channels_last:
            to_channels_last_3d(self.model)
        self.folded = len(pairs)

    def prepare(self, example) -> None:
        """Fold (and cast) now rather than at the first batch, from ``example``, a batch of the clips' shape (the
        engine passes zeros while its decoders fill the first batch: on a 2-core CPU that hides the ~0.2 s).
        A model the example does not fit is prepared at its first batch, as without this call."""
        if not self._fold_pending:
            return
        try:
            self._prepare(per_pathway(self._input, example))
        except (RuntimeError, ValueError):
            self._fold_pending = True

    def _prepare(self, x):
        """The conv -> BatchNorm pairs, from one clip of the fp32 batch x on the device (see fold_pairs)."""
        self._fold_pending = False
        self._make_net(fold_pairs(self.model, per_pathway(lambda p: p[:1], x), self._eager_on))

    def _eager(self, x):
        return self._eager_on(self.net, x)

    def _eager_on(self, net, x):
        if self.layer is not None:
            return pool_layer(net.forward_intermediates(x, [self.layer])[self.layer], self.pool)
        feats = net.forward_features(x)
        return net.forward_head(feats, pre_logits=self.head == "features")

    def _autocast(self):
        if self.dtype is None or self._net_dtype is not None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _input(self, x: torch.Tensor, dtype=None) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if dtype is not None:
            x = x.to(dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    @torch.inference_mode()
    def __call__(self, x) -> np.ndarray:
        pathways = isinstance(x, (list, tuple))
        n = len(x[0] if pathways else x)
        if n == 1 and self.pad_single:  # see the class doc
            x = per_pathway(lambda p: torch.cat([p, p]), x)
        if self._fold_pending:  # the fp32 batch on the device finds the pairs, then runs (cast if need be)
            x = per_pathway(self._input, x)
            self._prepare(x)
        x = per_pathway(lambda p: self._input(p, self._net_dtype), x)
        with self._autocast():
            out = self._forward(x)
        out = out[:n].float()
        if self.head == "probs":
            out = out.softmax(dim=-1)
        return out.cpu().numpy()


_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def conv_bn_pairs(model: torch.nn.Module, example, forward=None) -> list[tuple[str, str]]:
    """(conv, BatchNorm) module names where the BatchNorm's input is exactly that convolution's output, seen by
    hooks during one eval forward of ``example`` (``forward(model, example)``, default ``model(example)``).
    Only modules called once in that pass, and BatchNorms that use running statistics, qualify."""
    names = {m: n for n, m in model.named_modules()}
    calls: dict = {}
    outputs: dict = {}  # id(conv output) -> (conv, the tensor: kept alive so that the id stays unique)
    found = []

    def after_conv(m, _args, out):
        calls[m] = calls.get(m, 0) + 1
        outputs[id(out)] = (m, out)

    def before_norm(m, args):
        calls[m] = calls.get(m, 0) + 1
        hit = outputs.get(id(args[0])) if args else None
        if hit is not None and hit[1] is args[0]:
            found.append((hit[0], m))

    hooks = []
    for m in model.modules():
        if isinstance(m, _CONVS):
            hooks.append(m.register_forward_hook(after_conv))
        elif isinstance(m, _NORMS) and m.track_running_stats and m.running_mean is not None:
            hooks.append(m.register_forward_pre_hook(before_norm))
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            forward(model, example) if forward is not None else model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return [(names[c], names[n]) for c, n in found if calls[c] == 1 and calls[n] == 1]


_PAIRS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (its module tree, its pairs)


def fold_pairs(model: torch.nn.Module, clip, forward) -> list[tuple[str, str]]:
    """conv_bn_pairs of ``model`` from one clip (a (1, C, T, H, W) tensor, or a list per pathway), run on a
    quarter-size crop of it when the model takes one (a model with fixed pooling sizes gets the clip itself).
    Remembered per model while its module tree stays the same."""
    tree = tuple((name, type(m)) for name, m in model.named_modules())
    known = _PAIRS.get(model)
    if known is not None and known[0] == tree:
        return known[1]

    def shrunk(t):
        h, w = t.shape[-2:]
        return t[..., : max(32, h // 4), : max(32, w // 4)]

    small = per_pathway(shrunk, clip)
    try:
        pairs = conv_bn_pairs(model, small, forward)
    except (RuntimeError, ValueError):  # fixed pooling or classifier sizes: the clip's own size then
        pairs = conv_bn_pairs(model, clip, forward)
    _PAIRS[model] = (tree, pairs)
    return pairs


_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (its tensors, versions, key, copy)


def inference_copy(model: torch.nn.Module, pairs: Sequence[tuple[str, str]], dtype=None,
                   channels_last: bool = False) -> torch.nn.Module:
    """fold_batchnorm(model, pairs, dtype, channels_last), remembered for the next run of the same model while its
    tensors are the same objects, unchanged in place: a loop of classify calls folds once (~0.1-0.2 s for
    resnet3d_34), training in between refolds."""
    tensors = [*model.parameters(), *model.buffers()]
    versions = [t._version for t in tensors]
    key = (tuple(pairs), dtype, channels_last)
    known = _COPIES.get(model)
    if (known is not None and known[2] == key and len(known[0]) == len(tensors)
            and all(a is b for a, b in zip(known[0], tensors)) and known[1] == versions):
        return known[3]
    net = fold_batchnorm(model, pairs, dtype, channels_last)
    _COPIES[model] = (tensors, versions, key, net)
    return net


def fold_batchnorm(model: torch.nn.Module, pairs: Sequence[tuple[str, str]], dtype=None,
                   channels_last: bool = False) -> torch.nn.Module:
    """An eval copy of ``model`` with each (conv, BatchNorm) pair's BatchNorm folded into the convolution
    (weight * gamma / sqrt(var + eps), bias beta - mean * gamma / sqrt(var + eps)) and replaced by nn.Identity.
    Outputs equal the model's to float rounding (~1e-6 relative, the size of the differences between oneDNN's
    kernels for other batch sizes) for one pass less over every BatchNorm's activations (resnet3d_34 fp32 on
    2 cores: ~14% faster). The model itself is not changed.

    ``dtype``: every floating-point tensor of the copy in that dtype (the fold computed in the weights' own dtype,
    then rounded); ``channels_last``: every rank-5 tensor in channels_last_3d. Each tensor is written once, in
    its final dtype and layout (a folded weight straight from the product), and a tensor that needs neither
    change stays the model's own: one pass over resnet3d_34's 254 MB of weights instead of up to three, and no
    fp32 copy on the way to a bf16 one. A tensor held by several modules stays one tensor."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    net = copy.deepcopy(model, memo).eval()
    modules = dict(net.named_modules())

    def target(t):
        want = dtype if dtype is not None and t.is_floating_point() else t.dtype
        layout = torch.channels_last_3d if channels_last and t.dim() == 5 else torch.preserve_format
        return want, layout

    with torch.no_grad():
        for conv_name, norm_name in pairs:
            conv, norm = modules[conv_name], modules[norm_name]
            w = conv.weight
            # The per-channel constants in float64 (as exact as they can be), the weights scaled in their dtype.
            scale = norm.running_var.double().add(norm.eps).rsqrt()
            shift = -norm.running_mean.double() * scale
            if norm.affine:
                scale = scale * norm.weight.double()
                shift = shift * norm.weight.double() + norm.bias.double()
            if conv.bias is not None:
                shift = shift + conv.bias.double() * scale
            want, layout = target(w)
            folded = torch.empty_like(w, dtype=want, memory_format=layout)
            torch.mul(w, scale.to(w.dtype).view(-1, *[1] * (w.dim() - 1)), out=folded)
            conv.weight = torch.nn.Parameter(folded, requires_grad=False)
            conv.bias = torch.nn.Parameter(shift.to(w.dtype).to(want), requires_grad=False)
            parent, _, attr = norm_name.rpartition(".")
            setattr(modules[parent] if parent else net, attr, torch.nn.Identity())
        if dtype is not None or channels_last:
            _convert_tensors(net, target)
    return net


def _convert_tensors(net: torch.nn.Module, target) -> None:
    """Give ``net``'s modules new tensors where ``target(t)`` -> (dtype, memory format) differs from ``t``,
    one per tensor however many modules hold it (unlike ``net.to()``, which rewrites Parameters in place and
    so would change a model the tensors are shared with)."""
    converted: dict = {}
    for module in net.modules():
        for slots, parameter in ((module._parameters, True), (module._buffers, False)):
            for name, t in slots.items():
                if t is None:
                    continue
                want, layout = target(t)
                if want == t.dtype and (layout is torch.preserve_format or t.is_contiguous(memory_format=layout)):
                    continue
                if id(t) not in converted:
                    c = t.detach().to(want, memory_format=layout)
                    converted[id(t)] = torch.nn.Parameter(c, requires_grad=False) if parameter else c
                slots[name] = converted[id(t)]


def to_channels_last_3d(model: torch.nn.Module) -> None:
    """channels_last_3d for the rank-5 parameters and buffers only: ``model.to(memory_format=...)`` fails on a
    model that also holds 2D convolutions (P3D's res5), whose 4D weights have no 3D channels-last layout."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.dim() == 5:
                t.data = t.data.contiguous(memory_format=torch.channels_last_3d)


def pool_layer(output, pool: Optional[str]):
    """A layer's output pooled over T, H, W per clip ("avg" / "max"), or as it is (None); a vector stays a
    vector; pathways (a list) are pooled each and concatenated, as PyTorchVideo's SlowFast head does."""
    if pool not in ("avg", "max", None):
        raise ValueError(f"pool must be 'avg', 'max' or None, not {pool!r}")
    if isinstance(output, (list, tuple)):
        if pool is None:
            raise ValueError("this layer gives one map per pathway: choose pool='avg' or 'max'")
        return torch.cat([pool_layer(o, pool) for o in output], dim=1)
    if pool is None or output.dim() <= 2:
        return output
    dims = tuple(range(2, output.dim()))
    return output.mean(dim=dims) if pool == "avg" else output.amax(dim=dims)


def collate(clips: Sequence[Clip], pin: bool = False):
    """The batch of some clips: one stacked tensor, or one per pathway (clips holding [slow, fast])."""
    first = clips[0].clip
    if isinstance(first, (list, tuple)):
        return [collate_tensors([c.clip[p] for c in clips], pin) for p in range(len(first))]
    return collate_tensors([c.clip for c in clips], pin)


def collate_tensors(tensors, pin: bool) -> torch.Tensor:
    x = torch.stack(tensors)
    return x.pin_memory() if pin else x


def _as_video_error(path, exc: BaseException) -> Exception:
    if isinstance(exc, VideoError) or str(path) in str(exc):
        return exc
    err = VideoError(path, f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def video_name(item, i: int) -> str:
    """What results call a video: its path, or '<frames i>' for in-memory frames (a callable's .name if any)."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return str(getattr(item, "name", None) or f"<frames {i}>")


def video_clips(item, spec: ClipSpec, name: str, coverage=None, flow_progress=None) -> Iterator[Clip]:
    """The clips of one engine input (see VideoInput); coverage: a video.Coverage filled in for files;
    flow_progress: a tqdm-like bar for the TV-L1 flow frames a flow spec computes."""
    if isinstance(item, (str, os.PathLike)):
        return spec_clips(os.fspath(item), spec, coverage, flow_progress)
    frames = item() if callable(item) else item
    return array_clips(frames, spec, name)


_END, _CLIP, _ERROR = "end", "clip", "error"


class _Producer:
    """Worker threads that turn videos into clips, in a bounded queue of (kind, video index, payload)."""

    def __init__(self, videos, spec: ClipSpec, num_workers, queue_size, names=None, flow_bar=None):
        self.videos = videos
        self.flow_bar = flow_bar
        self.names = names or [video_name(v, i) for i, v in enumerate(videos)]
        self.spec = spec
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()
        self.coverage: dict = {}  # video index -> video.Coverage
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
        # One intra-op thread for preprocessing, for this thread only: with the default, every small
        # resize/normalise op waits for a thread team that the model's ops keep busy.
        set_torch_threads(1)
        try:
            while not self.stop.is_set():
                with self._lock:
                    idx = next(self._next, None)
                if idx is None:
                    return
                name = self.names[idx]
                n = 0
                self.coverage[idx] = coverage = Coverage()
                try:
                    for clip in video_clips(self.videos[idx], self.spec, name, coverage, self.flow_bar):
                        if not self._put((_CLIP, idx, clip)):
                            return
                        n += 1
                except Exception as e:  # noqa: BLE001  (any failure belongs to this video; reported by path)
                    self._put((_ERROR, idx, _as_video_error(name, e)))
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


def _normalise_videos(videos) -> list:
    """One engine input or a sequence of them -> a list (a single path or frame array is one video)."""
    if isinstance(videos, (str, os.PathLike, np.ndarray, torch.Tensor)) or callable(videos):
        return [videos]
    return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in videos]


def run_clips(
    runner: Runner,
    videos: Sequence[VideoInput],
    spec: ClipSpec,
    run: RunSpec,
    *,
    on_error: str = "raise",
    progress: Union[bool, Any] = False,
) -> Iterator[tuple[str, Union[tuple, FailedVideo]]]:
    """The one engine: yield (video name, (clip outputs, frames, seconds)) or (video name, FailedVideo), in
    input order. Clips of several videos share batches; ``runner`` maps a batch to one numpy row per clip."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    videos = list(videos)
    if not videos:
        return
    names = [video_name(v, i) for i, v in enumerate(videos)]
    batch_size = run.batch_size
    workers = max(1, min(run.num_workers, len(videos)))
    bar, clip_bar = _progress_bar(progress, videos, spec)
    flow_bar = _flow_bar(progress, videos, spec)
    torch_threads = torch.get_num_threads()  # before the decoders start: see set_torch_threads
    producer = _Producer(videos, spec, workers, queue_size=2 * batch_size, names=names, flow_bar=flow_bar)
    jobs = {i: _Job() for i in range(len(videos))}
    done: dict[int, Any] = {}
    next_out = 0
    batch: list[tuple[int, Clip]] = []
    pin = torch.device(runner.device).type == "cuda"

    def run_batch():
        out = runner(collate([c for _, c in batch], pin))
        for (idx, clip), row in zip(batch, out):
            job = jobs.get(idx)  # None: the video failed after some of its clips were queued
            if job is not None and job.failed is None:
                job.rows[clip.index] = row
                job.frames[clip.index] = clip.frames
                job.seconds[clip.index] = clip.seconds
                maybe_finish(idx)
        if bar is not None and clip_bar:
            bar.update(len(batch))
        batch.clear()

    def maybe_finish(idx):
        job = jobs.get(idx)
        if job is not None and job.failed is None and job.complete:
            if job.expected == 0:
                job.failed = _as_video_error(names[idx], ValueError("no clips" + _no_clip_hint(spec)))
                finish_failed(idx)
                return
            order = sorted(job.rows)
            done[idx] = _Outputs((
                np.stack([job.rows[i] for i in order]),
                np.asarray([job.frames[i] for i in order], dtype=np.int64).reshape(-1, 2),
                np.asarray([job.seconds[i] for i in order], dtype=np.float64).reshape(-1, 2),
            ))
            done[idx].coverage = producer.coverage.pop(idx, None)
            del jobs[idx]

    def finish_failed(idx):
        exc = jobs.pop(idx).failed
        if on_error == "raise":
            raise exc
        done[idx] = FailedVideo(names[idx], str(exc), exc)

    if torch.device(runner.device).type == "cpu":
        set_torch_threads(run.threads or cpu_model_threads(torch_threads, workers))
    elif run.threads:
        set_torch_threads(run.threads)
    try:
        prepare = getattr(runner, "prepare", None)
        if prepare is not None:
            prepare(per_pathway(lambda p: p[None], example_clip(spec)))
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
                    if not clip_bar:
                        bar.update(1)
                yield names[next_out], result
                next_out += 1
    finally:
        producer.close()
        torch.set_num_threads(torch_threads)
        for b in (bar, flow_bar):
            if b is not None:
                b.close()
    assert next_out == len(videos), "internal error: some videos were never finished"


def set_torch_threads(n: int) -> None:
    """torch.set_num_threads(n) for the calling thread, whatever other threads set later.

    torch gives a thread its OpenMP team size lazily, at its first parallel op, from the process-wide count that
    the last set_num_threads call wrote, from any thread. A thread that had not run one yet took the count of
    whichever thread set it last: the decoders' 1 became the model's in every fresh `hub3d classify` process
    (resnet3d_34 on 2 cores ran on one; benchmarks/bench_2017.py, whole processes). get_num_threads()
    initialises this thread first, so the count set next stays its own.
    """
    torch.get_num_threads()
    torch.set_num_threads(n)


def cpu_model_threads(cores: int, decoders: int) -> int:
    """The model's torch threads on CPU next to ``decoders`` decoder threads.

    A core is left to each decoder only when the model keeps at least two: on the idle 2-core dev box the model
    on both cores beside one decoder was faster end to end (benchmarks/bench_inference.py, resnet3d_18, 128 clips:
    fp32 22.4 -> 15.1 s, bf16 13.3 -> 9.2 s), though on the same box loaded by other jobs one model thread won.
    """
    return cores - decoders if cores - decoders >= 2 else cores


def _no_clip_hint(spec: ClipSpec) -> str:
    if spec.tail != "loop":
        return (f" (the video is too short for one full clip and tail={spec.tail!r} drops partial clips; "
                "use tail='loop')")
    return " (no frames in the requested range)"


MAX_PROBED = 1000  # headers read for the total (~9 ms each measured on the busy dev box); more: count videos


def _progress_bar(progress, videos, spec: ClipSpec):
    """(bar, counts clips): a bar whose total is the clips the headers promise (probed up front: a header read
    each), or the videos when some header cannot tell (or the input is not files)."""
    if progress is None or progress is False:  # not `not progress`: an empty tqdm bar has no truth value
        return None, True
    if progress is not True:
        return progress, True  # a tqdm-like object supplied by the caller
    from tqdm.auto import tqdm

    n_videos = len(videos)
    counts = [None]
    if n_videos <= MAX_PROBED:
        counts = [estimate_clips(v, spec) if isinstance(v, (str, os.PathLike)) else None for v in videos]
    desc = f"{n_videos} video{'s' if n_videos != 1 else ''}"
    if None in counts:
        return tqdm(total=n_videos, unit="video", desc=desc, dynamic_ncols=True), False
    return tqdm(total=sum(counts), unit="clip", desc=desc, dynamic_ncols=True), True


def _flow_bar(progress, videos, spec: ClipSpec):
    """A second bar, in frames, when a flow spec computes TV-L1 flow (seconds per frame on a CPU: the clip bar
    alone would sit still for minutes). Only with progress=True; its total comes from the headers when they say."""
    if progress is not True or spec.modality != "flow":
        return None
    from tqdm.auto import tqdm

    counts: list[Optional[int]] = []  # flow frames to compute per video; None: unknown
    for v in videos[:MAX_PROBED]:
        try:
            if not isinstance(v, (str, os.PathLike)):
                counts.append(None)
            elif is_flow_folder(v):
                counts.append(0)  # stored flow: nothing to compute
            else:
                n = declared_frames(v, spec.fps, spec.source_fps)
                counts.append(None if n is None else max(n - 1, 0))
        except (VideoError, OSError):
            counts.append(None)
    if counts and all(c == 0 for c in counts) and len(videos) <= MAX_PROBED:
        return None
    known = None not in counts and len(videos) <= MAX_PROBED and spec.start is None and spec.end is None
    return tqdm(total=sum(counts) if known else None, unit="frame", desc="TV-L1 flow", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------- public
def iter_outputs(
    model: torch.nn.Module,
    videos,
    head: str = "probs",
    *,
    spec=None,
    clip_len: Optional[int] = None,
    frame_step: Optional[int] = None,
    stride: Optional[int] = None,
    tail: Optional[str] = None,
    fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    batch_size: int = 8,
    device=None,
    precision: str = "fp32",
    num_workers: Optional[int] = None,
    threads: Optional[int] = None,
    channels_last: Optional[bool] = None,
    runner: Optional[Runner] = None,
    on_error: str = "raise",
    progress: Union[bool, Any] = False,
    layer: Optional[str] = None,
    pool: Optional[str] = "avg",
) -> Iterator[Union[tuple[str, tuple], FailedVideo]]:
    """The engine behind every public call: yields (video, (clip outputs, frames, seconds)) or FailedVideo.

    spec: a ClipSpec or PretrainedCfg replacing ``model.pretrained_cfg`` (the other clip keywords override
    it). runner: run batches with this instead of a ClipRunner of ``model`` (its .device rules).
    """
    videos = _normalise_videos(videos)
    clip_spec = resolve_clip_spec(spec if spec is not None else model, clip_len=clip_len, frame_step=frame_step,
                                  stride=stride, tail=tail, fps=fps, start=start, end=end)
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    run = resolve_run_spec(model if runner is None else None,
                           device=device if runner is None else (device or runner.device), precision=precision,
                           batch_size=batch_size, num_workers=num_workers, threads=threads,
                           channels_last=channels_last)
    was_training = model.training
    runner = runner if runner is not None else ClipRunner.for_run(model, head, run, layer=layer, pool=pool)
    try:
        for video, out in run_clips(runner, videos, clip_spec, run, on_error=on_error, progress=progress):
            yield out if isinstance(out, FailedVideo) else (video, out)
    finally:
        model.train(was_training)


_ENGINE_DOC = """
    Clip options (default: the weights' ``model.pretrained_cfg``, or ``spec``): ``clip_len``, ``frame_step``
    (frames apart inside a clip), ``stride`` (source frames between clip starts), ``tail`` ("loop" loop-pads
    the last partial clip, "drop" drops it, "2017" gives exactly the 2017 tool's windows; see hub3d.clips),
    ``fps`` (resample; "model": to the weights' rate), ``start`` / ``end`` (seconds).
    Run options (hub3d.specs.resolve_run_spec): ``batch_size``, ``device`` (default: the model's; "auto": the
    best available), ``precision`` ("fp32", "bf16", "fp16" on cuda/mps), ``num_workers`` (decoder threads),
    ``threads`` (the model's torch threads during the run; on cpu default: all cores but one per decoder),
    ``channels_last``, ``runner`` (a callable batch -> numpy with .device, instead of the model's ClipRunner).
    ``on_error``: "raise", or "skip" (a failed video is left out, with a warning; iter_* yield a FailedVideo).
    ``progress``: True for a tqdm bar, or a tqdm-like object.
"""


def iter_classify(model: torch.nn.Module, videos, *, topk: int = 5, spec=None, clip_len: Optional[int] = None,
                  frame_step: Optional[int] = None, stride: Optional[int] = None, tail: Optional[str] = None,
                  fps: Optional[float] = None, start: Optional[float] = None, end: Optional[float] = None,
                  batch_size: int = 8, device=None, precision: str = "fp32", num_workers: Optional[int] = None,
                  threads: Optional[int] = None, channels_last: Optional[bool] = None,
                  runner: Optional[Runner] = None, on_error: str = "raise",
                  progress: Union[bool, Any] = False) -> Iterator[Union[VideoResult, FailedVideo]]:
    """Like :func:`classify`, but yields each video's result (a VideoResult, or a FailedVideo with
    on_error="skip"), in input order, once it is ready."""
    labels = list(getattr(model, "labels", None) or [f"class_{i}" for i in range(model.num_classes)])
    items = iter_outputs(model, videos, "probs", spec=spec, clip_len=clip_len, frame_step=frame_step, stride=stride,
                         tail=tail, fps=fps, start=start, end=end, batch_size=batch_size, device=device,
                         precision=precision, num_workers=num_workers, threads=threads, channels_last=channels_last,
                         runner=runner, on_error=on_error, progress=progress)
    for item in items:
        if isinstance(item, FailedVideo):
            yield item
            continue
        video, (clip_probs, frames, seconds) = item
        probs = clip_probs.mean(axis=0)
        if len(labels) != len(probs):
            labels = [f"class_{i}" for i in range(len(probs))]
        yield VideoResult(video, probs, _topk(probs, labels, topk), clip_probs, frames, seconds, labels,
                          **_coverage_of(item[1]))


def iter_extract_features(model: torch.nn.Module, videos, *, per_video_mean: bool = False, spec=None,
                          clip_len: Optional[int] = None, frame_step: Optional[int] = None,
                          stride: Optional[int] = None, tail: Optional[str] = None, fps: Optional[float] = None,
                          start: Optional[float] = None, end: Optional[float] = None, batch_size: int = 8,
                          device=None, precision: str = "fp32", num_workers: Optional[int] = None,
                          threads: Optional[int] = None, channels_last: Optional[bool] = None,
                          runner: Optional[Runner] = None, on_error: str = "raise",
                          progress: Union[bool, Any] = False, layer: Optional[str] = None,
                          pool: Optional[str] = "avg") -> Iterator[Union[FeatureResult, FailedVideo]]:
    """Like :func:`extract_features`, but yields each video's result once it is ready."""
    items = iter_outputs(model, videos, "features", spec=spec, clip_len=clip_len, frame_step=frame_step,
                         stride=stride, tail=tail, fps=fps, start=start, end=end, batch_size=batch_size,
                         device=device, precision=precision, num_workers=num_workers, threads=threads,
                         channels_last=channels_last, runner=runner, on_error=on_error, progress=progress,
                         layer=layer, pool=pool)
    for item in items:
        if isinstance(item, FailedVideo):
            yield item
            continue
        video, (feats, frames, seconds) = item
        yield FeatureResult(video, feats, frames, seconds, feats.mean(axis=0) if per_video_mean else None,
                            **_coverage_of(item[1]))


def fuse_two_stream(rgb: VideoResult, flow: VideoResult, topk: int = 5) -> VideoResult:
    """One video's two-stream result (I3D: "trained separately, predictions averaged at test time"): each clip's
    RGB and flow softmax averaged, then the clips averaged as for one stream.

    Flow has one frame less than the video (a pair of frames per flow frame), so the last window may exist in
    one stream only: such a clip keeps that stream's softmax. Clip frames and seconds are the RGB stream's."""
    if rgb.clip_probs.shape[1] != flow.clip_probs.shape[1]:
        raise ValueError(f"{rgb.video}: the RGB model has {rgb.clip_probs.shape[1]} classes, the flow model "
                         f"{flow.clip_probs.shape[1]}: two streams must share their classes")
    n = min(rgb.n_clips, flow.n_clips)
    longer = rgb if rgb.n_clips >= flow.n_clips else flow
    clip_probs = np.concatenate([(rgb.clip_probs[:n] + flow.clip_probs[:n]) / 2, longer.clip_probs[n:]])
    probs = clip_probs.mean(axis=0)
    return VideoResult(rgb.video, probs, _topk(probs, rgb.labels, topk), clip_probs, longer.clip_frames,
                       longer.clip_seconds, rgb.labels, complete=rgb.complete and flow.complete,
                       decoded_seconds=rgb.decoded_seconds, declared_seconds=rgb.declared_seconds)


def iter_classify_two_stream(rgb_model: torch.nn.Module, flow_model: torch.nn.Module, videos, *, topk: int = 5,
                             **engine) -> Iterator[Union[VideoResult, FailedVideo]]:
    """:func:`iter_classify` with two models: an RGB one and a flow one (e.g. ``i3d`` and ``i3d_flow``), fused by
    :func:`fuse_two_stream`. Each stream samples clips as its own weights say; the flow stream computes TV-L1
    flow from the videos (or reads stored x/y flow folders given instead: then pass the same list to both, or
    use the engines separately). Engine keywords as :func:`classify`; a video failing in either stream fails."""
    videos = _normalise_videos(videos)
    threads = torch.get_num_threads()  # each engine restores what it found: the two interleave
    rgb_stream = iter_classify(rgb_model, videos, topk=topk, **engine)
    flow_stream = iter_classify(flow_model, videos, topk=topk, **engine)
    try:
        for rgb, flow in zip(rgb_stream, flow_stream):
            failed = next((r for r in (rgb, flow) if isinstance(r, FailedVideo)), None)
            yield failed if failed is not None else fuse_two_stream(rgb, flow, topk)
    finally:
        rgb_stream.close()
        flow_stream.close()
        torch.set_num_threads(threads)


def classify_two_stream(rgb_model: torch.nn.Module, flow_model: torch.nn.Module, videos, *, topk: int = 5,
                        **engine) -> list[VideoResult]:
    """Two-stream classification (RGB + flow, see :func:`iter_classify_two_stream`): a list of VideoResult."""
    return _collect(iter_classify_two_stream(rgb_model, flow_model, videos, topk=topk, **engine))


def _coverage_of(outputs) -> dict:
    return outputs.coverage_fields() if isinstance(outputs, _Outputs) else {}


def _collect(results) -> list:
    out = []
    for r in results:
        if isinstance(r, FailedVideo):
            warnings.warn(f"skipped {r.error}", stacklevel=3)
            continue
        out.append(r)
    return out


def classify(model: torch.nn.Module, videos, *, topk: int = 5, spec=None, clip_len: Optional[int] = None,
             frame_step: Optional[int] = None, stride: Optional[int] = None, tail: Optional[str] = None,
             fps: Optional[float] = None, start: Optional[float] = None, end: Optional[float] = None,
             batch_size: int = 8, device=None, precision: str = "fp32", num_workers: Optional[int] = None,
             threads: Optional[int] = None, channels_last: Optional[bool] = None, runner: Optional[Runner] = None,
             on_error: str = "raise", progress: Union[bool, Any] = False) -> list[VideoResult]:
    """Classify videos: per video, top-k labels from the mean of the clip softmaxes.

    videos: one video or a list; a video is a file, a frame folder, uint8 frames (T, H, W, 3) or a callable
    returning them. Always returns a list of :class:`VideoResult` in input order (``classify(m, "a.mp4")[0]``
    for one video), so the type does not depend on the input's shape.
    """
    return _collect(iter_classify(model, videos, topk=topk, spec=spec, clip_len=clip_len, frame_step=frame_step,
                                  stride=stride, tail=tail, fps=fps, start=start, end=end, batch_size=batch_size,
                                  device=device, precision=precision, num_workers=num_workers, threads=threads,
                                  channels_last=channels_last, runner=runner, on_error=on_error, progress=progress))


def extract_features(model: torch.nn.Module, videos, *, per_video_mean: bool = False, spec=None,
                     clip_len: Optional[int] = None, frame_step: Optional[int] = None, stride: Optional[int] = None,
                     tail: Optional[str] = None, fps: Optional[float] = None, start: Optional[float] = None,
                     end: Optional[float] = None, batch_size: int = 8, device=None, precision: str = "fp32",
                     num_workers: Optional[int] = None, threads: Optional[int] = None,
                     channels_last: Optional[bool] = None, runner: Optional[Runner] = None,
                     on_error: str = "raise", progress: Union[bool, Any] = False, layer: Optional[str] = None,
                     pool: Optional[str] = "avg") -> list[FeatureResult]:
    """Clip features of videos: ``forward_head(forward_features(x), pre_logits=True)`` per clip.

    ``layer``: a named layer's output instead (``model.feature_layers``, case-insensitive, e.g. "mixed_5c", "fc6",
    "layer3"), pooled over T, H, W per clip (``pool`` "avg" / "max"), or the whole map per clip (None).

    ``per_video_mean=True`` also fills ``mean_features``. Videos as :func:`classify`. Always returns a list of
    :class:`FeatureResult` in input order.
    """
    return _collect(iter_extract_features(
        model, videos, per_video_mean=per_video_mean, spec=spec, clip_len=clip_len, frame_step=frame_step,
        stride=stride, tail=tail, fps=fps, start=start, end=end, batch_size=batch_size, device=device,
        precision=precision, num_workers=num_workers, threads=threads, channels_last=channels_last, runner=runner,
        on_error=on_error, progress=progress, layer=layer, pool=pool))


for _fn in (classify, extract_features, iter_classify, iter_extract_features):
    _fn.__doc__ += _ENGINE_DOC


__all__ = [
    "Clip",
    "ClipRunner",
    "FailedVideo",
    "FeatureResult",
    "VideoResult",
    "classify",
    "collate",
    "extract_features",
    "classify_two_stream",
    "fuse_two_stream",
    "iter_classify",
    "iter_classify_two_stream",
    "iter_clips",
    "iter_extract_features",
    "iter_outputs",
    "run_clips",
]
