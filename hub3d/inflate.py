"""2D -> 3D inflation (I3D's "boring video" bootstrap): 2D ImageNet weights into a hub3d 3D model.

``inflate(state_dict_2d, model_3d, mode)`` fills every tensor of ``model_3d`` from the 2D state dict:
a 2D kernel (O, I, H, W) becomes (O, I, T, H, W) with T the 3D kernel's temporal size, either

- ``"repeat"``: the kernel repeated T times and divided by T (Carreira & Zisserman), or
- ``"center"``: the kernel at the middle time step, zeros elsewhere (an identity in time, as P3D / R(2+1)D
  initialise their temporal convolutions);

BatchNorm and every other same-shaped tensor is copied; pools need no weights (the 3D model's pools already have
their time dimension). The classifier is copied when its shape fits (e.g. 1000 ImageNet classes), else left as
the 3D model initialised it.

Supported 2D layouts, told from the keys: torchvision's ResNets (into hub3d's 3D ResNets of the same depth: the
parameter names are the same) and torchvision's GoogLeNet (into ``i3d``: conv1 -> Conv3d_1a_7x7, inception3a ->
Mixed_3b, branch2.0 -> b1a, ...; aux classifiers are ignored).

The fixed point. On a boring video (one image repeated), ``"center"`` gives the 2D network's activations at every
time step, hence its pooled features, exactly. ``"repeat"`` gives them only at time steps whose receptive field
stays inside the clip: a temporal convolution zero-pads the clip's ends, so its first and last outputs see fewer
than T copies of the frame, and that border effect spreads inward layer by layer. (Max pools pad with zeros after
ReLUs: no effect.) The 2D network is the one whose padding the 3D model uses in space: symmetric for the ResNets,
TF "SAME" for I3D (TF-Slim Inception-v1, which torchvision's GoogLeNet ports with symmetric padding).
"""
from __future__ import annotations

import re

import torch
from torch import nn

MODES = ("repeat", "center")

_GOOGLENET_TOP = {
    "conv1": "Conv3d_1a_7x7", "conv2": "Conv3d_2b_1x1", "conv3": "Conv3d_2c_3x3",
    "inception3a": "Mixed_3b", "inception3b": "Mixed_3c", "inception4a": "Mixed_4b", "inception4b": "Mixed_4c",
    "inception4c": "Mixed_4d", "inception4d": "Mixed_4e", "inception4e": "Mixed_4f", "inception5a": "Mixed_5b",
    "inception5b": "Mixed_5c", "fc": "logits.conv3d",
}
_GOOGLENET_BRANCH = {"branch1": "b0", "branch2.0": "b1a", "branch2.1": "b1b", "branch3.0": "b2a",
                     "branch3.1": "b2b", "branch4.1": "b3b"}
_GOOGLENET_KEY = re.compile(r"^(\w+?)\.(?:(branch\d(?:\.\d)?)\.)?(?:(conv|bn)\.)?(\w+)$")


def googlenet_key(key: str):
    """torchvision GoogLeNet name -> I3D name (piergiaj's), or None for tensors I3D has no place for (aux*)."""
    m = _GOOGLENET_KEY.match(key)
    if not m or m.group(1) not in _GOOGLENET_TOP:
        return None
    top, branch, unit, leaf = m.groups()
    parts = [_GOOGLENET_TOP[top]]
    if branch:
        if branch not in _GOOGLENET_BRANCH:
            return None
        parts.append(_GOOGLENET_BRANCH[branch])
    if unit:
        parts.append("conv3d" if unit == "conv" else "bn")
    return ".".join(parts + [leaf])


def is_googlenet(state_dict: dict) -> bool:
    return "inception3a.branch1.conv.weight" in state_dict


def inflate_kernel(weight: torch.Tensor, time: int, mode: str = "repeat") -> torch.Tensor:
    """(O, I, H, W) -> (O, I, time, H, W): repeated / time, or centred (zeros at the other time steps)."""
    if mode == "repeat":
        return weight.unsqueeze(2).repeat(1, 1, time, 1, 1) / time
    out = weight.new_zeros(weight.shape[0], weight.shape[1], time, *weight.shape[2:])
    out[:, :, time // 2] = weight
    return out


def inflate(state_dict_2d: dict, model_3d: nn.Module, mode: str = "repeat") -> nn.Module:
    """Load a 2D network's weights into ``model_3d`` (in place, returned); see the module docstring.

    Raises ValueError naming every 3D tensor the 2D state dict cannot fill (missing, or of an unrelated shape),
    the classifier excepted.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if is_googlenet(state_dict_2d):
        source = {googlenet_key(k): v for k, v in state_dict_2d.items()}
        source.pop(None, None)
    else:
        source = dict(state_dict_2d)
    classifier = getattr(model_3d, "classifier_name", "fc") + "."
    target = model_3d.state_dict()
    new, problems = {}, []
    for key, value in target.items():
        src = source.get(key)
        if src is None:
            if not key.endswith("num_batches_tracked") and not key.startswith(classifier):
                problems.append(f"{key}: not in the 2D state dict")
            continue
        if value.dim() == 5 and src.dim() == 4:
            src = inflate_kernel(src, value.shape[2], mode)
        elif value.dim() == 5 and src.dim() == 2:  # a Linear classifier into a 1x1x1 conv (I3D's logits)
            src = src.reshape(*src.shape, 1, 1, 1)
        if tuple(src.shape) != tuple(value.shape):
            if not key.startswith(classifier):
                problems.append(f"{key}: 2D shape {tuple(source[key].shape)} does not fit {tuple(value.shape)}")
            continue
        new[key] = src.to(value.dtype)
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        raise ValueError(f"cannot inflate into {type(model_3d).__name__}: {shown}")
    model_3d.load_state_dict({**target, **new}, strict=True)
    return model_3d
