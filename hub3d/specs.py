"""What the model is fed (ClipSpec) and how it is run (RunSpec): each resolved once, validated once.

``resolve_clip_spec(cfg_or_model, **overrides)`` merges a set of weights' PretrainedCfg with the user's
choices; ``resolve_run_spec(model, **options)`` holds the one device rule, the one precision vocabulary and
the fp16-on-CPU refusal. Every other module (clips, inference, train, the CLI) takes these objects instead of
re-deriving defaults, so the stride default, tail validation and device resolution live here only.

May import: torch, numpy, hub3d.pretrained (nothing that decodes, transforms or runs a model).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Optional, Union

import numpy as np
import torch

from .pretrained import PretrainedCfg

TAILS = ("loop", "drop", "2017")
MODALITIES = {"rgb": 3, "flow": 2}  # what a model takes -> channels per frame (flow: x, y)
CHANNEL_ORDERS = ("RGB", "BGR")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # PIL's BILINEAR, BICUBIC (antialiased), NEAREST
MAX_CLIP_LEN = 10_000  # no model takes more; a larger value is a typo (seconds for frames, ...)
# The one precision vocabulary: name -> the dtype of reduced-precision compute (None: plain fp32).
# "none" is training's historical spelling of fp32 (--amp none).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_ALIASES = {"none": "fp32"}
# "auto": bf16 where the device runs it natively (hub3d.hardware), else fp32. Not the default: on a CPU without
# native bf16 (this project's AMD EPYC, AVX2) oneDNN emulates it and bf16 measured ~27x slower than fp32.
AUTO_PRECISION = "auto"


def _pair(size, what: str) -> Union[int, tuple[int, int]]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"{what} must be positive, got {size}")
        return int(size)
    try:
        h, w = size
        h, w = int(h), int(w)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or (h, w), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{what} must be positive, got {(h, w)}")
    return h, w


MAX_MEAN_VALUES = 64 * 2**20  # floats in a mean array: C3D's Sports-1M cube has 1.05 M


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return value, i


def read_binaryproto(path) -> np.ndarray:
    """A Caffe / C3D mean file (a serialised BlobProto: num, channels, length, height, width, packed float data),
    e.g. C3D's sport1m_train16_128_mean.binaryproto -> float32 (channels, length, height, width) of its first blob.
    Parsed field by field (no protobuf library, nothing executed); anything else is a ValueError naming the file."""
    buf = open(path, "rb").read()
    dims, data, i = {}, None, 0
    try:
        while i < len(buf):
            key, i = _varint(buf, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                value, i = _varint(buf, i)
                dims[field] = value
            elif wire == 2:
                size, i = _varint(buf, i)
                if i + size > len(buf):
                    raise ValueError("truncated data")
                if field == 6:
                    data = np.frombuffer(buf, dtype="<f4", count=size // 4, offset=i)
                i += size
            elif wire == 5:
                i += 4  # an unpacked float (old writers); C3D's files pack them
            else:
                raise ValueError(f"unexpected protobuf wire type {wire}")
    except ValueError as e:
        raise ValueError(f"{path}: not a Caffe mean file ({e})") from None
    shape = tuple(dims.get(f, 0) for f in (1, 2, 3, 4, 5))  # num, channels, length, height, width
    if data is None or not all(shape[1:]) or np.prod(shape[1:]) > MAX_MEAN_VALUES or data.size < np.prod(shape[1:]):
        raise ValueError(f"{path}: not a C3D mean cube (num, channels, length, height, width = {shape}, "
                         f"{0 if data is None else data.size} values)")
    return data[: int(np.prod(shape[1:]))].reshape(shape[1:]).copy()


def load_mean_array(ref) -> np.ndarray:
    """A full mean array (3, T, H, W) float32: an array, a .npy or a Caffe/C3D .binaryproto path, or the name of
    a .npy in hub3d/weights/."""
    if ref is None:
        return None
    if isinstance(ref, (np.ndarray, torch.Tensor)):
        arr = np.asarray(ref, dtype=np.float32)
        where = "mean_array"
    else:
        path = os.fspath(ref)
        if not os.path.exists(path):
            packaged = resources.files("hub3d.weights").joinpath(path)
            if os.path.basename(path) != path or not packaged.is_file():
                raise ValueError(f"mean_array {path!r}: no such .npy file (a path, or a file name in hub3d/weights/)")
            path = str(packaged)
        if path.lower().endswith(".binaryproto"):
            arr = read_binaryproto(path)  # its errors name the file
        else:
            try:
                arr = np.load(path, allow_pickle=False)  # never unpickles: an untrusted file runs no code
            except (OSError, ValueError) as e:
                raise ValueError(f"{path}: cannot read the mean array ({e})") from None
        arr = np.asarray(arr, dtype=np.float32)
        where = path
    if arr.ndim != 4 or arr.shape[0] != 3:
        raise ValueError(f"{where}: a mean array must be (3, T, H, W), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class ClipSpec:
    """Everything about what a model is fed, from a video. Build it with :func:`resolve_clip_spec`.

    Sampling: clips of ``clip_len`` frames taken ``frame_step`` source frames apart, so a clip spans
    ``span = clip_len * frame_step`` source frames; clip starts are ``stride`` source frames apart;
    ``tail`` says what happens to the last partial window (hub3d.clips). ``fps`` resamples the video first,
    ``start`` / ``end`` (seconds) cut it. Preprocessing of uint8 RGB frames: resize (int: short side,
    (h, w): both), center crop, channel order (BGR flips the channels), then
    ``x = frame / 255 * value_scale``, ``x - mean_array[:, t]`` (when given; t = position in the clip),
    ``(x - mean) / std`` per channel (mean/std in the model's channel order). ``pathway_alpha``: the clip
    becomes [slow, fast], slow = the T // alpha frames at linspace(0, T - 1, T // alpha), fast = all T.
    ``modality`` "flow": the frames are (x, y) optical flow (stored flow folders, or TV-L1 computed from the
    video's frames after the resize: hub3d.flow), two channels, so mean / std have two values.
    """

    clip_len: int = 16
    frame_step: int = 1
    stride: int = 16
    tail: str = "loop"
    fps: Optional[float] = None
    start: Optional[float] = None
    end: Optional[float] = None
    source_fps: Optional[float] = None  # frame folders: their frame rate
    value_scale: float = 1.0
    channel_order: str = "RGB"
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    mean_array: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    resize: Any = 112
    crop_size: Any = 112
    interpolation: str = "bilinear"
    pathway_alpha: Optional[int] = None
    modality: str = "rgb"

    @property
    def channels(self) -> int:
        """Channels per frame the model takes: 3 (RGB) or 2 (flow x, y)."""
        return MODALITIES[self.modality]

    @property
    def span(self) -> int:
        """Source frames one full clip covers."""
        return self.clip_len * self.frame_step

    def __post_init__(self):
        if isinstance(self.clip_len, bool) or not 1 <= int(self.clip_len) <= MAX_CLIP_LEN:
            raise ValueError(f"clip_len must be in [1, {MAX_CLIP_LEN}], got {self.clip_len}")
        if int(self.frame_step) < 1:
            raise ValueError(f"frame_step must be >= 1, got {self.frame_step}")
        if int(self.stride) < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}, got {self.tail!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {tuple(MODALITIES)}, got {self.modality!r}")
        if self.modality == "flow" and self.channel_order != "RGB":
            raise ValueError("channel_order applies to RGB frames; flow frames are (x, y)")
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        channels = MODALITIES[self.modality]
        if len(mean) != channels or len(std) != channels or any(not s > 0 for s in std):
            raise ValueError(f"mean and std need one value per channel ({channels} for {self.modality} frames; "
                             f"std > 0), got mean={mean} std={std}")
        if not self.value_scale > 0:
            raise ValueError(f"value_scale must be > 0, got {self.value_scale}")
        resize, crop = _pair(self.resize, "resize"), _pair(self.crop_size, "crop_size")
        if self.pathway_alpha is not None and not 1 <= int(self.pathway_alpha) <= self.clip_len:
            raise ValueError(f"pathway_alpha must be in [1, clip_len={self.clip_len}], got {self.pathway_alpha}")
        if self.mean_array is not None:
            arr = self.mean_array
            if any(mean):
                raise ValueError("a mean_array replaces the per-channel mean: give mean=(0, 0, 0) with it")
            if arr.shape[1] < self.clip_len:
                raise ValueError(f"mean_array has {arr.shape[1]} frames, fewer than clip_len={self.clip_len}")
            if isinstance(resize, tuple) and tuple(arr.shape[2:]) != resize:
                raise ValueError(f"mean_array is {arr.shape[2]}x{arr.shape[3]} but frames are resized to "
                                 f"{resize[0]}x{resize[1]}")
        for name, value in (("clip_len", int(self.clip_len)), ("frame_step", int(self.frame_step)),
                            ("stride", int(self.stride)), ("mean", mean), ("std", std), ("resize", resize),
                            ("crop_size", crop), ("value_scale", float(self.value_scale))):
            object.__setattr__(self, name, value)

    def replace(self, **changes) -> ClipSpec:
        return dataclasses.replace(self, **changes)


CLIP_FIELDS = tuple(f.name for f in dataclasses.fields(ClipSpec))
# ClipSpec fields that come from the weights' PretrainedCfg (the rest are the user's choices).
_FROM_CFG = ("clip_len", "frame_step", "fps", "value_scale", "channel_order", "mean", "std", "mean_array",
             "resize", "crop_size", "interpolation", "pathway_alpha", "modality")


def resolve_cfg(cfg_or_model) -> PretrainedCfg:
    """A PretrainedCfg, or the .pretrained_cfg of a model."""
    if isinstance(cfg_or_model, PretrainedCfg):
        return cfg_or_model
    cfg = getattr(cfg_or_model, "pretrained_cfg", None)
    if isinstance(cfg, PretrainedCfg):
        return cfg
    raise TypeError(f"expected a PretrainedCfg or a model with .pretrained_cfg, got {type(cfg_or_model).__name__}")


def resolve_clip_spec(cfg_or_model, **overrides) -> ClipSpec:
    """The ClipSpec of a PretrainedCfg (or a model / ClipSpec) with the user's overrides (None = default).

    Overrides are ClipSpec fields (clip_len, frame_step, stride, tail, fps, start, end, source_fps, value_scale,
    channel_order, mean, std, mean_array, resize, crop_size, interpolation, pathway_alpha, modality). The stride default:
    the weights' clip_stride when the sampling is the weights' own, else one span (non-overlapping clips).
    ``fps``: None keeps the video's rate; "model" resamples to the rate the weights were trained at (cfg.fps).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - set(CLIP_FIELDS)
    if unknown:
        raise TypeError(f"unknown clip options {sorted(unknown)}; known: {', '.join(CLIP_FIELDS)}")
    if isinstance(cfg_or_model, ClipSpec):
        return cfg_or_model.replace(**overrides) if overrides else cfg_or_model
    cfg = resolve_cfg(cfg_or_model)
    values = {name: getattr(cfg, name) for name in _FROM_CFG}
    values["fps"] = None  # the video's own rate unless the user asks for a resample
    if overrides.get("fps") == "model":
        if cfg.fps is None:
            raise ValueError(f"fps='model': the weights ({cfg.tag!r}) do not say which frame rate they were trained at")
        overrides["fps"] = cfg.fps
    if "mean_array" in overrides or values["mean_array"] is not None:
        values["mean_array"] = load_mean_array(overrides.pop("mean_array", values["mean_array"]))
    values.update(overrides)
    if "stride" not in overrides:
        own = int(values["clip_len"]) == cfg.clip_len and int(values["frame_step"]) == cfg.frame_step
        values["stride"] = cfg.clip_stride if own and cfg.clip_stride else int(values["clip_len"]) * int(
            values["frame_step"])
    return ClipSpec(**values)


# ----------------------------------------------------------------------------------------------- run spec
def best_device() -> torch.device:
    """cuda when available, else mps, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps" if mps is not None and mps.is_available() else "cpu")


def resolve_device(device=None, model: Optional[torch.nn.Module] = None, local_rank: int = 0) -> torch.device:
    """The one device rule. None: the device of the model's parameters (cpu without a model); "auto": the best
    available (cuda, then mps, then cpu); "cuda" means cuda:local_rank (torchrun); a cuda device needs CUDA."""
    if device is None and model is not None:
        param = next(model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
    if device is None or device == "auto":
        dev = best_device()
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device}: CUDA is not available here")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """A precision name of PRECISIONS (aliases accepted; "auto": hub3d.hardware.auto_precision of the device);
    refuses fp16 on CPU (no fast fp16 kernels there)."""
    if precision == AUTO_PRECISION:
        from .hardware import auto_precision  # torch + stdlib only

        return auto_precision(device)
    name = PRECISION_ALIASES.get(precision, precision)
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {[*PRECISIONS, AUTO_PRECISION]}, not {precision!r}")
    if name == "fp16" and torch.device(device).type == "cpu":
        raise ValueError("fp16 needs a cuda or mps device; on cpu use bf16")
    return name


def default_workers(device: torch.device, precision: str = "fp32") -> int:
    """Decoder threads: accelerators need clips fast (up to 4). On cpu the model needs the cores and one decoder
    keeps up with fp32; with bf16 the model is ~2x faster and decoding is the bottleneck, so two (when there are
    2+ cores): measured on 2 cores (AVX512-BF16, resnet3d_34, bikes + bigbuckbunny, warm) 1.55 -> 1.35 s, while
    fp32 stayed at 2.15 -> 2.21 s. Decoders work on different videos: one video still decodes on one thread."""
    cores = os.cpu_count() or 1
    if device.type != "cpu":
        return min(4, cores)
    return 2 if precision != "fp32" and cores >= 2 else 1


@dataclass(frozen=True)
class RunSpec:
    """How batches are run: build it with :func:`resolve_run_spec`.

    ``num_workers``: decoder threads; ``threads``: the model's torch threads during a run (None: on cpu all
    cores, less one per decoder when 2+ remain; elsewhere unchanged); ``channels_last``: channels_last_3d;
    ``compile``: torch.compile the model's forward (a one-off compile cost, paid back on long runs; off by default).
    """

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    batch_size: int = 8
    num_workers: int = 1
    threads: Optional[int] = None
    channels_last: bool = True
    compile: bool = False

    @property
    def dtype(self) -> Optional[torch.dtype]:
        return PRECISIONS[self.precision]

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, not {self.batch_size}")
        if int(self.num_workers) < 1:
            raise ValueError(f"num_workers must be >= 1, not {self.num_workers}")
        if self.threads is not None and int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, not {self.threads}")


def resolve_run_spec(model: Optional[torch.nn.Module] = None, *, device=None, precision: str = "fp32",
                     batch_size: int = 8, num_workers: Optional[int] = None, threads: Optional[int] = None,
                     channels_last: Optional[bool] = None, compile: bool = False) -> RunSpec:
    """The RunSpec of the user's options: device by :func:`resolve_device`, precision by
    :func:`resolve_precision` ("auto": the device's native choice), decoder threads by :func:`default_workers`
    (cpu: 1, 2 with bf16; accelerators: up to 4), channels_last_3d on."""
    dev = resolve_device(device, model)
    precision = resolve_precision(precision, dev)
    return RunSpec(device=dev, precision=precision, batch_size=int(batch_size),
                   num_workers=default_workers(dev, precision) if num_workers is None else int(num_workers),
                   threads=threads, channels_last=True if channels_last is None else bool(channels_last),
                   compile=bool(compile))


__all__ = ["AUTO_PRECISION", "CHANNEL_ORDERS", "ClipSpec", "MODALITIES", "PRECISIONS", "RunSpec", "TAILS",
           "best_device", "default_workers", "load_mean_array", "read_binaryproto", "resolve_cfg", "resolve_clip_spec",
           "resolve_device", "resolve_precision", "resolve_run_spec"]
