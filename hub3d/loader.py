"""hub3d.load: one call from a name, a tag, a file, a directory or a Hub repo to a ready model.

The loader builds models (through the registry), loads checkpoints into them (hub3d.checkpoint reads the
formats), and converts original files into hub3d's cache (hub3d.sources finds the files).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .checkpoint import (
    Checkpoint,
    load_state_dict_strict,
    read_checkpoint,
    write_pretrained,
)
from .errors import CheckpointError, ConfigError
from .pretrained import PretrainedCfg
from .registry import (
    TAG_ALIASES,
    _pretrained_cfgs,
    create_model,
    get_family,
    get_pretrained_cfg,
    infer_arch_kwargs,
    is_model,
    model_for_arch,
    resolve_tag,
    split_model_tag,
)
from .sources import (
    cache_dir,
    cached_sha256,
    converted_dir,
    download_hf,
    is_hub3d_dir,
    locate_weights,
    parse_hf_id,
    weights_key,
    weights_lock,
)


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
      verified and cached (see hub3d.sources); ``load("resnet3d_34.kinetics400")`` is the same as
      ``pretrained="kinetics400"`` (the names list_pretrained() prints).
    - ``load("resnet3d_34", pretrained="resnet-34-kinetics.pth")``: any original checkpoint file; what the file
      determines (classes, shortcut type, stem, cardinality) is read from it.
    - ``load("path/to/dir_or_file")``, ``load("hf-hub:org/name@revision")``: hub3d-format models, and original
      files whose 'arch' names the model.
    ``num_classes`` different from the weights' keeps everything but a fresh classifier. ``tag`` picks the
    preprocessing and labels to use with a file whose name hub3d does not know.
    """
    name = str(name_or_path)
    if name.startswith("hf-hub:"):
        directory = download_hf(*parse_hf_id(name))
        return _load_checkpoint(read_checkpoint(directory), None, None, num_classes, arch_kwargs)
    if not is_model(name) and os.path.exists(name):  # an existing path wins over a 'model.tag' reading
        return _load_checkpoint(read_checkpoint(name), None, tag, num_classes, arch_kwargs)
    name, pretrained, tag = _name_tag(name, pretrained, tag)
    if not is_model(name):
        create_model(name)  # raises the registry's clear "unknown model" error

    if pretrained is None or pretrained is False:
        return create_model(name, num_classes=num_classes, **arch_kwargs)
    if isinstance(pretrained, os.PathLike) or (isinstance(pretrained, str) and _looks_like_path(pretrained)):
        return cached_conversion(pretrained, name, tag, num_classes, arch_kwargs)

    cfg = get_pretrained_cfg(name, pretrained)
    path = fetch_weights(name, cfg)
    return _load_checkpoint(read_checkpoint(path), name, cfg.tag, num_classes, arch_kwargs)


def _name_tag(name: str, pretrained, tag: Optional[str]) -> tuple:
    """Read 'model.tag' as model + tag: (model, pretrained, tag) for load's own arguments.

    The tag in the name means pretrained=tag and wins over a generic request (True, 'default', an alias such
    as 'kinetics': what a CLI default passes); with a file as ``pretrained`` it picks the file's preprocessing
    and labels (the ``tag`` argument). Another tag, or pretrained=False, contradicts the name: an error.
    """
    model, name_tag = split_model_tag(name)
    if name_tag is None:
        return name, pretrained, tag
    if tag is not None and tag != name_tag:
        raise ConfigError(f"{name!r} names tag {name_tag!r} but tag={tag!r} was given too")
    if pretrained is None or pretrained is True or pretrained in (name_tag, "default", *TAG_ALIASES):
        return model, name_tag, None
    if pretrained is False:
        raise ConfigError(f"{name!r} names pretrained weights but pretrained=False was given: "
                          f"use hub3d.create_model({name!r}) for that tag's model with random weights")
    if isinstance(pretrained, os.PathLike) or _looks_like_path(str(pretrained)):
        return model, pretrained, name_tag
    raise ConfigError(f"{name!r} names tag {name_tag!r} but pretrained={pretrained!r} was given too")


def fetch_weights(model_name: str, cfg: PretrainedCfg, progress: bool = True) -> Path:
    """The local hub3d directory of one tag: located (hub3d.sources) and, for an original file, converted once.

    The conversion runs under the tag's lock, so processes loading the same tag at once convert it once.
    """
    path = locate_weights(model_name, cfg, progress=progress)
    if is_hub3d_dir(path):
        return path
    with weights_lock(model_name, cfg.tag):
        converted = converted_dir(model_name, cfg.tag)
        if is_hub3d_dir(converted):  # another process converted it first
            return converted
        return convert_into_cache(path, model_name, cfg.tag)


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pth", ".pt", ".tar", ".safetensors", ".bin")) or os.path.exists(value)


def stated_model(ckpt: Checkpoint) -> Optional[str]:
    """The registered model a checkpoint says it holds (its hub3d architecture, or its original 'arch'), if any."""
    if ckpt.layout == "hub3d":
        return ckpt.stated_arch
    return model_for_arch(ckpt.arch) if ckpt.arch else None


def _load_checkpoint(
    ckpt: Checkpoint, name: Optional[str], tag: Optional[str], num_classes: Optional[int], arch_kwargs: dict
) -> nn.Module:
    """Build the architecture the checkpoint needs, load it strictly, then adapt the classifier if asked."""
    stated = stated_model(ckpt)
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
        kwargs = {**cfg.arch_kwargs, **infer_arch_kwargs(name, ckpt.state_dict), **arch_kwargs}
        labels = None
    weights_classes = kwargs.pop("num_classes", cfg.num_classes)
    # hub3d files: built on "meta" (no random init), then the memory-mapped tensors are taken as they are
    # (assign=True, no copy): resnet3d_34 0.74 -> 0.32 s. Originals are copied into a model (remapped, filled).
    on_meta = ckpt.layout == "hub3d"
    with torch.device("meta") if on_meta else contextlib.nullcontext():
        model = create_model(name, num_classes=weights_classes, pretrained_cfg=cfg, **kwargs)
    if labels is not None:
        if len(labels) != weights_classes:
            raise CheckpointError(f"{ckpt.path}: config lists {len(labels)} labels for {weights_classes} classes")
        model.labels = list(labels)
    where = f"{name} (tag {cfg.tag}, {ckpt.layout} checkpoint {ckpt.path})"
    load_state_dict_strict(model, ckpt.state_dict, where, family=get_family(name), assign=on_meta)
    if num_classes is not None and num_classes != weights_classes:
        model.reset_classifier(num_classes)
    return model


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
    classes = infer_arch_kwargs(name, ckpt.state_dict).get("num_classes")
    release = LAYOUT_RELEASE.get(ckpt.layout)
    same_classes = [c for c in cfgs if c.num_classes == classes]
    for cfg in same_classes:
        if release is None or (cfg.release and release in cfg.release):
            return cfg.replace(file=ckpt.path.name)
    base = get_pretrained_cfg(name, None)
    return base.replace(num_classes=classes or base.num_classes, labels=None, labels_verified=False)


def convert(
    file: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], model_name: Optional[str] = None,
    tag: Optional[str] = None,
) -> Path:
    """Convert an original checkpoint into hub3d's format (model.safetensors + config.json) in out_dir.

    ``model_name`` may be 'model.tag' (then ``tag`` is optional).
    """
    if model_name is None:
        model = load(str(file), tag=tag)
    else:  # not through load(): that would also put a copy into the conversion cache
        name, _, tag = _name_tag(str(model_name), str(file), tag)
        if not is_model(name):
            create_model(name)  # raises the registry's clear "unknown model" error
        model = _load_checkpoint(read_checkpoint(file), name, tag, None, {})
    return write_pretrained(model, out_dir, config_extra={"converted_from": Path(file).name})


def convert_into_cache(file: Union[str, os.PathLike], model_name: str, tag: Optional[str],
                       final: Optional[Path] = None) -> Path:
    """Convert an original checkpoint into {cache}/{model}.{tag}/ (or ``final``), atomically (a temp dir renamed
    into place)."""
    final = converted_dir(model_name, tag) if final is None else final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        convert(file, tmp, model_name=model_name, tag=tag)
        if final.exists() and not is_hub3d_dir(final):
            shutil.rmtree(final)  # a leftover that was never a complete conversion
        try:
            os.replace(tmp, final)
        except OSError:
            if not is_hub3d_dir(final):  # not just another process that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def conversion_dir(model_name: str, tag: Optional[str], file_name: str, sha256: str) -> Path:
    """Where the conversion of an original file (by content) lives: {cache}/converted/{sha256[:32]}-{model}-{tag}.

    Without a tag the preprocessing is picked by the file's name (cfg_for_checkpoint), so the name is in the key.
    """
    which = tag if tag is not None else "file-" + hashlib.sha256(file_name.encode()).hexdigest()[:8]
    return cache_dir() / "converted" / f"{sha256[:32]}-{model_name}-{which}"


def cached_conversion(
    path: Union[str, os.PathLike], model_name: str, tag: Optional[str] = None, num_classes: Optional[int] = None,
    arch_kwargs: Optional[dict] = None,
) -> nn.Module:
    """``model_name`` with the weights of an original checkpoint file, converted once into the cache.

    The first load converts the file into {cache}/converted/ (keyed by its sha256, which hub3d.sources remembers
    per path, size and mtime); later loads read that safetensors memory-mapped into a model built on "meta",
    a fraction of torch.load's time for a pickled 2017 file. hub3d formats (directories, .safetensors) and loads
    with architecture overrides are read directly. A cache that cannot be written only costs the speed-up.
    """
    path = Path(path)
    if arch_kwargs or path.is_dir() or path.suffix == ".safetensors" or not path.is_file():
        return _load_checkpoint(read_checkpoint(path), model_name, tag, num_classes, dict(arch_kwargs or {}))
    directory = conversion_dir(model_name, tag, path.name, cached_sha256(path))
    if not is_hub3d_dir(directory):
        try:
            with weights_lock(model_name, directory.name):
                if not is_hub3d_dir(directory):  # another process may have converted it meanwhile
                    convert_into_cache(path, model_name, tag, final=directory)
        except OSError:  # a read-only cache: load the original as it is
            return _load_checkpoint(read_checkpoint(path), model_name, tag, num_classes, {})
    return _load_checkpoint(read_checkpoint(directory), model_name, None, num_classes, {})
