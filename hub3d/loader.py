"""hub3d.load: one call from a name, a tag, a file, a directory or a Hub repo to a ready model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from torch import nn

from .checkpoint import Checkpoint, CheckpointError, infer_arch_kwargs, load_state_dict_strict, read_checkpoint
from .pretrained import PretrainedCfg
from .registry import _pretrained_cfgs, create_model, get_pretrained_cfg, is_model, resolve_tag


# Which release a checkpoint layout comes from, to pick the preprocessing of an unnamed file.
LAYOUT_RELEASE = {"hara2018": "CVPR 2018", "hara2020": "2020", "state_dict": None}


def load(
    name_or_path: str,
    pretrained: Union[None, bool, str, os.PathLike] = None,
    num_classes: Optional[int] = None,
    tag: Optional[str] = None,
    **arch_kwargs,
) -> nn.Module:
    """Build a model and load its weights, strictly.

    - ``load("resnet3d_34")``: random weights, the architecture's default preprocessing.
    - ``load("resnet3d_34", pretrained="kinetics")`` (or True, or a tag): the released weights, fetched once,
      verified and cached (see hub3d.hub).
    - ``load("resnet3d_34", pretrained="resnet-34-kinetics.pth")``: any original checkpoint file; what the file
      determines (classes, shortcut type, stem, cardinality) is read from it.
    - ``load("path/to/dir_or_file")``, ``load("hf-hub:org/name@revision")``: hub3d-format models, and original
      files whose 'arch' names the model.
    ``num_classes`` different from the weights' keeps everything but a fresh classifier. ``tag`` picks the
    preprocessing and labels to use with a file whose name hub3d does not know.
    """
    name = str(name_or_path)
    if name.startswith("hf-hub:"):
        from .hub import download_hf, parse_hf_id

        directory = download_hf(*parse_hf_id(name))
        return _load_checkpoint(read_checkpoint(directory), None, None, num_classes, arch_kwargs)
    if not is_model(name):
        if os.path.exists(name):
            return _load_checkpoint(read_checkpoint(name), None, tag, num_classes, arch_kwargs)
        create_model(name)  # raises the registry's clear "unknown model" error

    if pretrained is None or pretrained is False:
        return create_model(name, num_classes=num_classes, **arch_kwargs)
    if isinstance(pretrained, os.PathLike) or (isinstance(pretrained, str) and _looks_like_path(pretrained)):
        return _load_checkpoint(read_checkpoint(pretrained), name, tag, num_classes, arch_kwargs)

    cfg = get_pretrained_cfg(name, pretrained)
    from .hub import fetch_weights

    path = fetch_weights(name, cfg)
    return _load_checkpoint(read_checkpoint(path), name, cfg.tag, num_classes, arch_kwargs)


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pth", ".pt", ".tar", ".safetensors", ".bin")) or os.path.exists(value)


def _load_checkpoint(
    ckpt: Checkpoint, name: Optional[str], tag: Optional[str], num_classes: Optional[int], arch_kwargs: dict
) -> nn.Module:
    """Build the architecture the checkpoint needs, load it strictly, then adapt the classifier if asked."""
    stated = ckpt.model_name
    if name is None:
        if stated is None or not is_model(stated):
            raise CheckpointError(
                f"{ckpt.path}: cannot tell which architecture this checkpoint holds "
                f"(arch={ckpt.arch!r}); name it: hub3d.load('<model>', pretrained='{ckpt.path}')"
            )
        name = stated
    elif ckpt.layout == "hub3d" and stated != name:
        raise CheckpointError(f"{ckpt.path}: holds a {stated!r} model, not {name!r}")

    if ckpt.layout == "hub3d":
        cfg = PretrainedCfg.from_dict(ckpt.config["pretrained_cfg"])
        kwargs = {**ckpt.config["arch_kwargs"], **arch_kwargs}
        labels = ckpt.config.get("labels")
    else:
        cfg = cfg_for_checkpoint(name, ckpt, tag)
        kwargs = {**cfg.arch_kwargs, **family_arch_kwargs(name, ckpt.state_dict), **arch_kwargs}
        labels = None
    weights_classes = kwargs.pop("num_classes", cfg.num_classes)
    if cfg.num_classes != weights_classes:
        cfg = cfg.replace(num_classes=weights_classes, labels=None, labels_verified=False)
    model = create_model(name, num_classes=weights_classes, pretrained_cfg=cfg, **kwargs)
    if labels is not None:
        if len(labels) != weights_classes:
            raise CheckpointError(f"{ckpt.path}: config lists {len(labels)} labels for {weights_classes} classes")
        model.labels = list(labels)
    where = f"{name} (tag {cfg.tag}, {ckpt.layout} checkpoint {ckpt.path})"
    load_state_dict_strict(model, ckpt.state_dict, where)
    if num_classes is not None and num_classes != weights_classes:
        model.reset_classifier(num_classes)
    return model


def family_arch_kwargs(name: str, state_dict: dict) -> dict:
    """What a state dict determines: the family module's own ``infer_arch_kwargs`` where it has one (I3D, C3D,
    P3D: their keys are not the ResNets'), else checkpoint.infer_arch_kwargs. (Transitional: the Family layer
    replaces this look-up.)"""
    import sys

    from .registry import _entrypoints

    family_infer = getattr(sys.modules[_entrypoints[name].__module__], "infer_arch_kwargs", None)
    return (family_infer or infer_arch_kwargs)(state_dict)


def cfg_for_checkpoint(name: str, ckpt: Checkpoint, tag: Optional[str] = None) -> PretrainedCfg:
    """The PretrainedCfg (preprocessing, labels) that goes with an original checkpoint of model ``name``.

    By priority: an explicit tag; a registered tag whose original file name is this file's; a tag of the
    release the layout comes from with the same number of classes; the architecture's default preprocessing.
    """
    if tag is not None:
        return get_pretrained_cfg(name, resolve_tag(name, tag))
    cfgs = list(_pretrained_cfgs[name].values())
    for cfg in cfgs:
        if cfg.file and cfg.file == ckpt.path.name:
            return cfg
    classes = family_arch_kwargs(name, ckpt.state_dict).get("num_classes")
    release = LAYOUT_RELEASE.get(ckpt.layout)
    same_classes = [c for c in cfgs if c.num_classes == classes]
    for cfg in same_classes:
        if release is None or (cfg.release and release in cfg.release):
            return cfg.replace(file=ckpt.path.name)
    base = get_pretrained_cfg(name, None)
    return base.replace(num_classes=classes or base.num_classes, labels=None, labels_verified=False)
