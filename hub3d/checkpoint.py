"""Checkpoints: read every layout the original projects released, load strictly, write hub3d's own format.

Layouts read (detected from the file, never from its name):
- hub3d: a directory (or .safetensors file) with model.safetensors + config.json.
- Hara 2017/2018: {'epoch', 'arch', 'state_dict' with 'module.' keys, 'optimizer'}, legacy (non-zip)
  serialisation, tensors saved on CUDA, no BatchNorm num_batches_tracked.
- Hara 2020: {'epoch', 'arch', 'state_dict', 'optimizer', 'scheduler'}.
- torchvision: a bare state dict.
- PyTorchVideo: {'model_state': state dict, ...} (.pyth); its efficient_x3d files are bare state dicts.
Pickled files are read with ``torch.load(weights_only=True)``: a file that would run code is refused.

Formats only: nothing here builds a model or knows where files come from (hub3d.sources) or how a model is
assembled from them (hub3d.loader). Models are written through their metadata attributes alone.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .errors import CheckpointError, UnsafeCheckpointError
from .io import atomic_path, write_text
from .version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
ALIGNMENT = 64  # bytes: what torch's CPU allocator gives every tensor

PathLike = Union[str, os.PathLike]


@dataclass
class Checkpoint:
    state_dict: dict
    layout: str  # "hub3d" | "hara2018" | "hara2020" | "pytorchvideo" | "state_dict"
    path: Path
    arch: Optional[str] = None  # the original 'arch' string, or the hub3d model name
    config: dict = field(default_factory=dict)  # hub3d config.json (hub3d layout only)

    @property
    def stated_arch(self) -> Optional[str]:
        """What the file says it holds: the hub3d model name (hub3d layout) or the original 'arch' string."""
        return self.config.get("architecture") if self.layout == "hub3d" else self.arch


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read any supported checkpoint into a CPU state dict without 'module.' prefixes."""
    path = Path(path)
    if path.is_dir():
        return _read_hub3d_dir(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    if path.suffix == ".safetensors":
        config_path = path.with_name(CONFIG_NAME)
        if config_path.exists():
            return _read_hub3d_dir(path.parent, weights=path)
        return Checkpoint(_load_safetensors(path), "state_dict", path)

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the file holds Python objects beyond tensors and plain data, so "
            f"unpickling it could run code. Only load it if you trust its source, then re-save its state_dict. "
            f"({str(e).splitlines()[0]})"
        ) from None
    except Exception as e:  # truncated or not a torch file at all
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None

    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state_dict = obj["state_dict"]
        layout = "hara2020" if "scheduler" in obj else "hara2018"
        arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
    elif isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):  # PyTorchVideo / PySlowFast .pyth
        state_dict, layout, arch = obj["model_state"], "pytorchvideo", None
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state_dict, layout, arch = obj, "state_dict", None
    else:
        raise CheckpointError(
            f"{path}: not a model checkpoint: expected a state dict or a dict with a 'state_dict' entry, "
            f"got {type(obj).__name__}" + (f" with keys {sorted(obj)[:8]}" if isinstance(obj, dict) else "")
        )
    return Checkpoint(strip_prefix(state_dict, "module."), layout, path, arch=arch)


def strip_prefix(state_dict: dict, prefix: str) -> dict:
    """Drop nn.DataParallel's 'module.' prefix when every key carries it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _read_hub3d_dir(directory: Path, weights: Optional[Path] = None) -> Checkpoint:
    config_path = directory / CONFIG_NAME
    weights = weights or directory / WEIGHTS_NAME
    for needed in (config_path, weights):
        if not needed.exists():
            raise CheckpointError(f"{directory}: not a hub3d model directory: {needed.name} is missing")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_path}: invalid JSON ({e})") from None
    for key in ("architecture", "arch_kwargs", "pretrained_cfg"):
        if key not in config:
            raise CheckpointError(f"{config_path}: missing required field {key!r}")
    return Checkpoint(_load_safetensors(weights), "hub3d", directory, arch=config["architecture"], config=config)


def load_state_dict_strict(model: nn.Module, state_dict: dict, where: str, family=None, assign: bool = False) -> None:
    """Load every tensor exactly; on any mismatch raise one error listing the offending keys and shapes.

    ``where`` names the model and its weights (e.g. "resnet3d_34 (tag kinetics400, file x.pth)"). ``family``
    (the model's hub3d.models.family.Family, given by the loader) renames foreign key layouts first and hints
    at the likely cause of a mismatch. Missing BatchNorm ``num_batches_tracked`` buffers (the 2017 checkpoints
    predate them) are the only keys filled in. ``assign``: the model (built on "meta") takes the tensors as they
    are instead of copying them; every parameter and buffer must then come from the state dict.
    """
    if family is not None:
        state_dict = family.remap_state_dict(state_dict)
    expected = model.state_dict()
    state_dict = dict(state_dict)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = torch.zeros(value.shape, dtype=value.dtype)  # value may be on the meta device
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{title}: {shown}")
        hint = family.load_hint(missing + unexpected) if family is not None else ""
        raise CheckpointError(f"weights do not fit {where}{hint}: " + "; ".join(parts))
    if not any(t.is_meta for t in expected.values()):
        model.load_state_dict(state_dict, strict=True)
        return
    # A model built on the meta device (hub3d.loader): the checked tensors become its parameters and buffers.
    state_dict = {k: _as_parameter_data(v, expected[k].dtype) for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left and not all(t.is_meta for t in state_dict.values()):  # meta in, meta out: a check of shapes only
        raise CheckpointError(f"{where}: tensors not in any checkpoint: {', '.join(left[:8])}")


def _as_parameter_data(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A tensor laid out as a freshly allocated parameter: the model's dtype, contiguous, 64-byte aligned (views
    into a safetensors buffer may not be, and kernels then take other code paths: outputs would differ in the
    last bits from a copy into a built model)."""
    tensor = tensor.to(dtype).contiguous()
    return tensor.clone() if tensor.data_ptr() % 64 else tensor


def model_config(model: nn.Module) -> dict:
    """The config.json of a model: everything needed to rebuild it exactly, plus its labels and preprocessing."""
    return {
        "format": "hub3d",
        "format_version": FORMAT_VERSION,
        "hub3d_version": __version__,
        **model.meta.to_dict(),
        "num_features": model.num_features,
    }


def _alignment_pad(path: Path) -> int:
    """Characters to add to a safetensors header so that most tensor bytes sit at ALIGNMENT-aligned offsets.

    A memory-mapped tensor that is not aligned is copied at load (load_state_dict_strict); aligned, it is used in
    place. The header is JSON padded with spaces to a multiple of 8 bytes, the data follows it.
    """
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
    used = len(header.rstrip(b" "))
    spans = [v["data_offsets"] for k, v in json.loads(header).items() if k != "__metadata__"]

    def aligned_bytes(shift):
        return sum(e - b for b, e in spans if (8 + n + shift + b) % ALIGNMENT == 0)

    best = max(range(0, ALIGNMENT, 8), key=lambda s: (aligned_bytes(s), -s))
    # the pad value adds ',"pad":""' (9 bytes) plus its characters; the header grows to a multiple of 8 again
    return 0 if best == 0 else max(0, n + best - used - 9)


def write_pretrained(model: nn.Module, directory: PathLike, config_extra: Optional[dict] = None) -> Path:
    """Write model.safetensors + config.json (each atomically) into a directory that hub3d.load reads back."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = {**model_config(model), **(config_extra or {})}
    mean_array = config["pretrained_cfg"].get("mean_array")
    if mean_array is not None and os.path.isabs(mean_array):  # a model directory's own: it travels with the model
        name = Path(mean_array).name
        if Path(mean_array).resolve() != (directory / name).resolve():
            shutil.copyfile(mean_array, directory / name)
        config["pretrained_cfg"]["mean_array"] = name
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        pad = _alignment_pad(tmp)
        if pad:  # rewritten with a longer header, so that the tensors start ALIGNMENT-aligned when mmapped
            save_file(tensors, str(tmp), metadata={"format": "pt", "pad": " " * pad})
    write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return directory
