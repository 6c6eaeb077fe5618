"""Export a hub3d model to ONNX, TorchScript or torch.export, and run an ONNX file like a torch model.

Every exported file has the same two outputs, ``logits`` (B, num_classes) and ``features`` (B, num_features, the
pooled vector before the classifier), so one file serves ``classify`` and ``features``; and it carries what a reader
needs to feed it: the PretrainedCfg (preprocessing, clip length), the labels and the clip shape it was exported
for (ONNX: ``metadata_props``; TorchScript / torch.export: an extra file ``hub3d.json`` inside the archive).

ONNX goes through ``torch.onnx.export(dynamo=True)`` on a ``torch.export`` program: the legacy TorchScript
exporter also gives correct files for today's models (checked), but it traces Python shape arithmetic into
constants silently, while torch.export either keeps a size symbolic, with the range it holds for, or records that it
specialised it: the only way to *know* a dynamic T/H/W axis is right (see ``dynamic``). The batch axis is always
dynamic. T/H/W stay fixed unless the model declares ``dynamic_input_shapes = True`` (a class attribute of models
whose graph is size-generic; I3D-style per-input "SAME" padding must not), and then only in the range torch.export
proves; :class:`OnnxRunner` refuses any other clip shape with a clear message instead of returning wrong numbers.
"""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from .errors import ExportError, MissingExtraError
from .pretrained import PretrainedCfg

PathLike = Union[str, os.PathLike]
FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "export": ".pt2"}
OUTPUTS = ("logits", "features")
HEADS = ("probs", "logits", "features")
METADATA_FILE = "hub3d.json"  # extra file inside TorchScript / torch.export archives
AXES = ("batch", "channels", "T", "H", "W")


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(extra, f"{module}: export and the onnxruntime runner", str(e)) from e


# ------------------------------------------------------------------------------------------------ inputs
class _Heads(nn.Module):
    """model -> (logits, features) through the VideoModel contract; list-input models get one tensor per pathway."""

    def __init__(self, model: nn.Module, n_inputs: int):
        super().__init__()
        self.model = model
        self.n_inputs = n_inputs

    def forward(self, *xs):
        x = list(xs) if self.n_inputs > 1 else xs[0]
        f = self.model.forward_features(x)
        return self.model.forward_head(f), self.model.forward_head(f, pre_logits=True)


def _cfg(model) -> PretrainedCfg:
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg if isinstance(cfg, PretrainedCfg) else PretrainedCfg()


def default_clip(model) -> tuple[int, int, int]:
    """(T, H, W) of the model's weights: clip_len x crop_size."""
    cfg = _cfg(model)
    crop = cfg.crop_size if isinstance(cfg.crop_size, (tuple, list)) else (cfg.crop_size, cfg.crop_size)
    return int(cfg.clip_len), int(crop[0]), int(crop[1])


def parse_clip(text: str) -> tuple[int, int, int]:
    """'16x112x112' -> (16, 112, 112)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        t, h, w = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"clip shape {text!r}: expected TxHxW, e.g. 16x112x112") from None
    if min(t, h, w) < 1:
        raise ValueError(f"clip shape {text!r}: sizes must be >= 1")
    return t, h, w


def example_inputs(model, clip: Sequence[int], batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded random clips of the shape the model reads: one (B, C, T, H, W) tensor, or [slow, fast] for SlowFast
    (cfg.pathway_alpha: slow keeps T // alpha frames, as the clips engine builds them)."""
    t, h, w = clip
    channels = getattr(model, "arch_kwargs", {}).get("n_input_channels", 3)
    g = torch.Generator().manual_seed(seed)
    alpha = getattr(_cfg(model), "pathway_alpha", None)
    lengths = (t // alpha, t) if alpha else (t,)
    return tuple(torch.randn(batch, channels, n, h, w, generator=g) for n in lengths)


def _input_names(n: int) -> list[str]:
    return ["input"] if n == 1 else [f"input_{i}" for i in range(n)]


# ---------------------------------------------------------------------------------------------- metadata
def export_metadata(model, clip, fmt: str, inputs: list[dict]) -> dict:
    from . import __version__

    cfg = _cfg(model)
    labels = list(getattr(model, "labels", None) or cfg.class_names())
    return {
        "format": fmt,
        "hub3d_version": __version__,
        "arch_name": getattr(model, "arch_name", type(model).__name__),
        "arch_kwargs": getattr(model, "arch_kwargs", {}),
        "pretrained_cfg": cfg.to_dict(),
        "labels": labels,
        "num_classes": int(getattr(model, "num_classes", len(labels))),
        "num_features": int(getattr(model, "num_features", 0)),
        "clip": list(clip),
        "inputs": inputs,  # [{"name", "shape": [None | int, ...], "ranges": {axis: [lo, hi | None]}}]
        "outputs": list(OUTPUTS),
    }


def read_metadata(path: PathLike) -> dict:
    """The hub3d metadata of an exported file (.onnx, TorchScript .pt, torch.export .pt2), without running it."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    if zipfile.is_zipfile(path):  # TorchScript and torch.export archives: read the extra file, run nothing
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(f"extra/{METADATA_FILE}")]
            if not names:
                raise ExportError(f"{path}: no {METADATA_FILE} inside; not a file written by hub3d.export")
            return json.loads(z.read(names[0]))
    onnx = _need("onnx", "onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001  (any parse failure means the same thing to the user)
        raise ExportError(f"{path}: not an ONNX file ({type(e).__name__}: {e})") from e
    props = {p.key: p.value for p in proto.metadata_props}
    if "hub3d" not in props:
        raise ExportError(f"{path}: no hub3d metadata; export it with hub3d.export to keep preprocessing and labels")
    meta = json.loads(props["hub3d"])
    meta["pretrained_cfg"] = json.loads(props["hub3d.pretrained_cfg"])
    meta["labels"] = json.loads(props["hub3d.labels"])
    return meta


# ------------------------------------------------------------------------------------------------ export
def _dynamic_shapes(n_inputs: int, dynamic: bool):
    dim = torch.export.Dim
    spec = {0: dim("batch", min=1, max=1 << 16)}
    if dynamic:
        spec.update({2: dim.DYNAMIC, 3: dim.DYNAMIC, 4: dim.DYNAMIC})
    return (tuple(dict(spec) for _ in range(n_inputs)),)  # forward(*xs): one varargs entry


def _input_specs(ep, names, clip_inputs) -> list[dict]:
    """Per input: its shape (None where torch.export kept the size symbolic) and the proven range of those."""
    from torch.utils._sympy.numbers import int_oo

    user = set(ep.graph_signature.user_inputs)
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user]
    specs = []
    for name, node, x in zip(names, placeholders, clip_inputs):
        shape, ranges = [], {}
        for axis, size in zip(AXES, node.meta["val"].shape):
            if isinstance(size, int):
                shape.append(size)
                continue
            shape.append(None)
            vr = ep.range_constraints.get(size.node.expr)
            lo = int(vr.lower) if vr is not None else 1
            hi = None if vr is None or vr.upper is int_oo else int(vr.upper)
            ranges[axis] = [lo, hi]
        specs.append({"name": name, "shape": shape, "ranges": ranges, "example": list(x.shape)})
    return specs


def _torch_export(model, inputs, dynamic: bool, where: str):
    wrapper = _Heads(model, len(inputs)).eval()
    try:
        return torch.export.export(wrapper, inputs, dynamic_shapes=_dynamic_shapes(len(inputs), dynamic), strict=False)
    except Exception as e:  # noqa: BLE001  (reported with the model's name and the reason)
        what = "with dynamic T/H/W" if dynamic else "at a fixed clip shape"
        hint = ("; the graph depends on the clip size (e.g. padding computed per input): export with dynamic=False "
                "at the size you will run") if dynamic else ""
        raise ExportError(f"{where}: torch.export cannot capture it {what} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}){hint}") from e


def export(
    model: nn.Module,
    path: PathLike,
    format: str = "onnx",
    clip: Optional[Sequence[int]] = None,
    *,
    dynamic: Optional[bool] = None,
    opset: Optional[int] = None,
    batch: int = 2,
) -> Path:
    """Write ``model`` to ``path`` as ONNX (``format="onnx"``), TorchScript (``"torchscript"``, by tracing) or a
    torch.export program (``"export"``), with outputs (logits, features) and a dynamic batch axis.

    clip: (T, H, W) to export at (default: the weights' clip_len x crop_size). dynamic: also keep T/H/W dynamic
    (ONNX / export only), in the range torch.export proves; default: the model's ``dynamic_input_shapes`` (False
    when it does not declare one). Raises :class:`ExportError` saying why when the model cannot be exported.
    Written atomically.
    """
    from . import io

    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {format!r}")
    clip = tuple(int(c) for c in (clip or default_clip(model)))
    if len(clip) != 3:
        raise ValueError(f"clip must be (T, H, W), got {clip}")
    if dynamic is None:  # a trace cannot keep sizes symbolic: TorchScript stays fixed whatever the model declares
        dynamic = format != "torchscript" and bool(getattr(model, "dynamic_input_shapes", False))
    if dynamic and format == "torchscript":
        raise ExportError("TorchScript traces fix T/H/W; use format='onnx' or 'export' for dynamic clip shapes")
    where = f"{getattr(model, 'arch_name', type(model).__name__)} -> {format}"
    was_training = model.training
    model.eval()
    inputs = example_inputs(model, clip, batch)
    names = _input_names(len(inputs))
    path = Path(path)
    try:
        with torch.no_grad():
            if format == "torchscript":
                return _save_torchscript(model, inputs, names, clip, path, where)
            ep = _torch_export(model, inputs, dynamic, where)
            meta = export_metadata(model, clip, format, _input_specs(ep, names, inputs))
            if format == "export":
                with io.atomic_path(path, keep_suffix=True) as tmp:  # torch.export.save wants a .pt2 name
                    torch.export.save(ep, tmp, extra_files={METADATA_FILE: json.dumps(meta)})
                return path
            return _save_onnx(ep, meta, names, path, opset, where)
    finally:
        model.train(was_training)


def _save_torchscript(model, inputs, names, clip, path, where):
    from . import io

    try:
        traced = torch.jit.trace(_Heads(model, len(inputs)).eval(), inputs, check_trace=False)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{where}: torch.jit.trace failed ({type(e).__name__}: {e})") from e
    specs = [{"name": n, "shape": [None, *x.shape[1:]], "ranges": {"batch": [1, None]}, "example": list(x.shape)}
             for n, x in zip(names, inputs)]
    meta = export_metadata(model, clip, "torchscript", specs)
    with io.atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta)})
    return path


def _save_onnx(ep, meta, names, path, opset, where):
    from . import io

    onnx = _need("onnx", "onnx")
    _need("onnxscript", "onnx")  # the dynamo exporter's translator
    try:
        program = torch.onnx.export(ep, input_names=names, output_names=list(OUTPUTS), opset_version=opset,
                                    dynamo=True, optimize=True, verbose=False)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{where}: torch.onnx cannot translate it ({type(e).__name__}: {e})") from e
    proto = program.model_proto
    props = {"hub3d": json.dumps({k: v for k, v in meta.items() if k not in ("pretrained_cfg", "labels")}),
             "hub3d.pretrained_cfg": json.dumps(meta["pretrained_cfg"]), "hub3d.labels": json.dumps(meta["labels"])}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{where}: the ONNX graph fails onnx.checker ({e})") from e
    with io.atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


# ------------------------------------------------------------------------------------------------ runner
def check_input_shape(x_shape, spec: dict, source: str) -> None:
    """Raise ValueError unless a (B, C, T, H, W) shape is one the exported graph holds for."""
    shape, ranges = spec["shape"], spec.get("ranges", {})
    if len(x_shape) != len(shape):
        raise ValueError(f"{source}: input {spec['name']!r} must be {len(shape)}-D (B, C, T, H, W), got {tuple(x_shape)}")
    for axis, want, got in zip(AXES, shape, x_shape):
        if want is not None and want != got:
            fixed = "x".join(str(s) for s in shape[2:])
            raise ValueError(
                f"{source}: exported for clips of {fixed} (C={shape[1]}), got {axis}={got} in {tuple(x_shape)}: a fixed "
                f"{axis} cannot change after export (the graph may depend on it); re-export with --clip for this size")
        lo, hi = ranges.get(axis, (1, None))
        if want is None and (got < lo or (hi is not None and got > hi)):
            raise ValueError(f"{source}: {axis}={got} is outside the range [{lo}, {hi or 'inf'}] the export holds for; "
                             "re-export at this size")


class OnnxRunner:
    """An exported .onnx file as a clip runner: ``runner(batch) -> np.ndarray`` (float32), like ClipRunner.

    batch: float32 (B, C, T, H, W) numpy or torch (a list of them for multi-pathway models), preprocessed as
    ``pretrained_cfg`` says (the file carries it, and its ``labels``). ``head="probs"`` applies softmax in fp32,
    ``"logits"`` the raw scores, ``"features"`` the pooled pre-logits vector. Runs on onnxruntime's CPU provider.
    """

    device = torch.device("cpu")
    training = False  # the engine reads the runner as the model (cfg, labels) and restores its mode after a run

    def train(self, mode: bool = True) -> OnnxRunner:  # a session has no train mode
        return self

    def __init__(self, path: PathLike, head: str = "probs", threads: Optional[int] = None, providers=None):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        ort = _need("onnxruntime", "onnx")
        self.path = str(path)
        self.head = head
        self.metadata = read_metadata(path)
        self.pretrained_cfg = PretrainedCfg.from_dict(self.metadata["pretrained_cfg"])
        self.labels = list(self.metadata["labels"])
        self.arch_name = self.metadata.get("arch_name")
        self.num_classes = int(self.metadata.get("num_classes", len(self.labels)))
        self.inputs = self.metadata["inputs"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(self.path, options, providers=list(providers or ["CPUExecutionProvider"]))

    def with_head(self, head: str) -> OnnxRunner:
        """The same session, another head."""
        other = object.__new__(OnnxRunner)
        other.__dict__.update(self.__dict__)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        other.head = head
        return other

    def __call__(self, batch) -> np.ndarray:
        xs = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        if len(xs) != len(self.inputs):
            raise ValueError(f"{self.path}: the model takes {len(self.inputs)} input(s), got {len(xs)}")
        feed = {}
        for spec, x in zip(self.inputs, xs):
            x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            if x.dtype != np.float32:
                raise ValueError(f"{self.path}: input must be float32, got {x.dtype}")
            check_input_shape(x.shape, spec, self.path)
            feed[spec["name"]] = np.ascontiguousarray(x)
        out = self.session.run(["features" if self.head == "features" else "logits"], feed)[0]
        if self.head == "probs":
            out = torch.from_numpy(out).float().softmax(dim=-1).numpy()  # the same op ClipRunner applies
        return out.astype(np.float32, copy=False)

    def __repr__(self):
        return f"OnnxRunner({self.path!r}, head={self.head!r}, arch={self.arch_name})"


__all__ = ["ExportError", "OnnxRunner", "default_clip", "example_inputs", "export", "parse_clip", "read_metadata"]
