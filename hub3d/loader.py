"""hub3d.load: one call from a name, a tag, a file, a directory or a Hub repo to a ready model.

The loader builds models (through the registry), loads checkpoints into them (hub3d.checkpoint reads the
formats), and converts original files into hub3d's cache (hub3d.sources finds the files).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .checkpoint import (
    CONFIG_NAME,
    Checkpoint,
    load_state_dict_strict,
    read_checkpoint,
    write_pretrained,
)
from .errors import CheckpointError, ConfigError
from .io import default_mode
from .pretrained import PretrainedCfg, is_bare_name, packaged_label_file, parse_label_text
from .registry import (
    TAG_ALIASES,
    _pretrained_cfgs,
    create_model,
    get_family,
    get_pretrained_cfg,
    infer_arch_kwargs,
    is_model,
    list_models,
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
    looks_like_hf_repo,
    original_file_name,
    parse_hf_id,
    weights_lock,
)
from .specs import resolve_clip_spec

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


# torchvision's release names: '<model>-<first hex digits of the sha256>.pth' (r3d_18-b3b3357e.pth).
_RELEASE_NAME = re.compile(r"(?P<model>[A-Za-z0-9_]+)-[0-9a-f]{6,64}\.(?:pth|pt|pyth)")


def identify_model(ckpt: Checkpoint) -> Optional[str]:
    """The registered model a checkpoint holds: what it says; else a released file name (a tag's file, or
    torchvision's '<model>-<hash>.pth'); else the one model whose family detects the state dict and whose
    keys and shapes it fits exactly. None when that is ambiguous or nothing fits."""
    stated = stated_model(ckpt)
    if stated is not None or ckpt.layout == "hub3d":
        return stated
    filename = ckpt.path.name
    for model, cfgs in _pretrained_cfgs.items():
        if any(original_file_name(cfg) == filename for cfg in cfgs.values()):
            return model
    match = _RELEASE_NAME.fullmatch(filename)
    if match and is_model(match["model"]):
        return match["model"]
    return detect_model(ckpt.state_dict)


def detect_model(state_dict: dict) -> Optional[str]:
    """The one registered model that a bare state dict fits (families' detect, then keys and shapes on meta)."""
    fits = []
    detected: dict = {}  # family -> remapped state dict, or None when the family does not detect it
    for model in list_models():
        family = get_family(model)
        if family not in detected:
            try:
                remapped = family.remap_state_dict(state_dict)
                detected[family] = remapped if family.detect(remapped) else None
            except Exception:  # noqa: BLE001  (a foreign layout may trip another family's remapping)
                detected[family] = None
        remapped = detected[family]
        if remapped is None:
            continue
        try:
            with torch.device("meta"):
                expected = create_model(model, **family.infer_arch_kwargs(remapped)).state_dict()
        except Exception:  # noqa: BLE001  (arguments this model does not take: not this model)
            continue
        keys = {k for k in expected if not k.endswith("num_batches_tracked")}
        given = {k for k in remapped if not k.endswith("num_batches_tracked")}
        if keys == given and all(tuple(remapped[k].shape) == tuple(expected[k].shape) for k in keys):
            fits.append(model)
    return fits[0] if len(fits) == 1 else None


def _load_checkpoint(
    ckpt: Checkpoint, name: Optional[str], tag: Optional[str], num_classes: Optional[int], arch_kwargs: dict
) -> nn.Module:
    """Build the architecture the checkpoint needs, load it strictly, then adapt the classifier if asked."""
    stated = stated_model(ckpt)
    if name is None:
        stated = identify_model(ckpt)
        if stated is None or not is_model(stated):
            raise CheckpointError(
                f"{ckpt.path}: cannot tell which architecture this checkpoint holds "
                f"(arch={ckpt.arch!r}); name it: hub3d.load('<model>', pretrained='{ckpt.path}')"
            )
        name = stated
    elif ckpt.layout == "hub3d" and stated != name:
        raise CheckpointError(f"{ckpt.path}: holds a {stated!r} model, not {name!r}")

    if ckpt.layout == "hub3d":
        cfg, labels = config_of_checkpoint(ckpt)
        kwargs = {**ckpt.config["arch_kwargs"], **arch_kwargs}
        check_config_against_weights(name, kwargs, cfg, labels, ckpt)
    else:
        cfg = cfg_for_checkpoint(name, ckpt, tag)
        kwargs = {**cfg.arch_kwargs, **infer_arch_kwargs(name, ckpt.state_dict), **arch_kwargs}
        labels = None
    weights_classes = kwargs.pop("num_classes", cfg.num_classes)
    try:  # clip_len, crop, mean, ... checked once here, not video by video
        resolve_clip_spec(cfg)
    except (TypeError, ValueError) as e:
        source = ckpt.path / CONFIG_NAME if ckpt.layout == "hub3d" else f"tag {cfg.tag!r}"
        raise ConfigError(f"{source}: pretrained_cfg: {e}") from None
    # Built on the meta device: nothing is allocated until the weights (checked key by key, shape by shape)
    # become the parameters themselves (load_state_dict(assign=True)), so a config the weights contradict
    # fails before any allocation, and a good one is not initialised only to be overwritten.
    with torch.device("meta"):
        model = create_model(name, num_classes=weights_classes, pretrained_cfg=cfg, **kwargs)
    if labels is not None:
        model.labels = list(labels)
    where = f"{name} (tag {cfg.tag}, {ckpt.layout} checkpoint {ckpt.path})"
    load_state_dict_strict(model, ckpt.state_dict, where, family=get_family(name))
    if num_classes is not None and num_classes != weights_classes:
        model.reset_classifier(num_classes)
    return model


def _config_error(ckpt: Checkpoint, field: str, value, why: str) -> ConfigError:
    return ConfigError(f"{ckpt.path / CONFIG_NAME}: {field} {value!r}: {why}")


def config_of_checkpoint(ckpt: Checkpoint) -> tuple[PretrainedCfg, Optional[list]]:
    """The PretrainedCfg and label list of a hub3d directory's config.json, every path-like field checked.

    A config never makes hub3d read outside where it belongs: ``labels`` is a label file of the package
    (hub3d/labels/) or a file name (no path) inside the model directory, read here; ``mean_array`` likewise
    (hub3d/weights/ or the model directory); ``file`` is a bare file name, ``url`` / ``drive_folder`` http(s)
    URLs and ``hf_hub_id`` an 'org/name' repo id. Anything else is a ConfigError naming the file and field.
    """
    config = ckpt.config
    raw = config["pretrained_cfg"]
    if not isinstance(raw, dict) or not isinstance(config["arch_kwargs"], dict):
        raise _config_error(ckpt, "pretrained_cfg/arch_kwargs", type(raw).__name__, "must be JSON objects")
    try:
        cfg = PretrainedCfg.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{ckpt.path / CONFIG_NAME}: pretrained_cfg: {e}") from None
    directory = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
    labels = config.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise _config_error(ckpt, "labels", type(labels).__name__, "must be a list of class names")
    changes = {}
    if cfg.labels is not None and not packaged_label_file(cfg.labels):
        local = _file_in_dir(ckpt, directory, "pretrained_cfg.labels", cfg.labels, "hub3d/labels/")
        if labels is None:
            labels = list(parse_label_text(local.read_text(encoding="utf-8")))
        changes["labels"] = None  # the names travel inline from now on (re-saved configs list them)
    if cfg.mean_array is not None and not _packaged_weights_file(cfg.mean_array):
        changes["mean_array"] = str(_file_in_dir(ckpt, directory, "pretrained_cfg.mean_array", cfg.mean_array,
                                                 "hub3d/weights/"))
    if cfg.file is not None and not is_bare_name(cfg.file):
        raise _config_error(ckpt, "pretrained_cfg.file", cfg.file, "must be a file name without a path")
    for key in ("url", "drive_folder"):
        value = getattr(cfg, key)
        if value is not None and not (isinstance(value, str) and value.startswith(("https://", "http://"))):
            raise _config_error(ckpt, f"pretrained_cfg.{key}", value, "must be an http(s) URL")
    if cfg.hf_hub_id is not None and not (isinstance(cfg.hf_hub_id, str) and looks_like_hf_repo(cfg.hf_hub_id)):
        raise _config_error(ckpt, "pretrained_cfg.hf_hub_id", cfg.hf_hub_id, "must be a Hub repo id 'org/name'")
    return (cfg.replace(**changes) if changes else cfg), labels


def _packaged_weights_file(name) -> bool:
    from importlib import resources

    return is_bare_name(name) and resources.files("hub3d.weights").joinpath(name).is_file()


def _file_in_dir(ckpt: Checkpoint, directory: Path, field: str, name, packaged: str) -> Path:
    """A file a config names inside its own model directory (no path, no link leading out of it)."""
    if not is_bare_name(name):
        raise _config_error(ckpt, field, name, f"must be a file of {packaged} or a file name (without a path) "
                                               "in the model directory")
    path = directory / name
    inside = path.resolve().parent == directory.resolve()
    if not (inside and path.is_file()):
        raise _config_error(ckpt, field, name, f"no such file in {packaged} or in the model directory {directory}")
    return path


def check_config_against_weights(name: str, kwargs: dict, cfg: PretrainedCfg, labels, ckpt: Checkpoint) -> None:
    """Before building anything: what the weights' own shapes determine (classes, input channels, width: the
    family says which) must be what config.json says, so an absurd size fails here, not in the allocator."""
    inferred = infer_arch_kwargs(name, ckpt.state_dict)
    stated = {**kwargs}
    stated.setdefault("num_classes", cfg.num_classes)
    for key, value in inferred.items():
        if key in stated and not _same(stated[key], value):
            raise _config_error(ckpt, f"arch_kwargs.{key}", stated[key], f"the weights have {value}")
    classes = inferred.get("num_classes", stated["num_classes"])
    if cfg.num_classes != classes:
        raise _config_error(ckpt, "pretrained_cfg.num_classes", cfg.num_classes, f"the weights have {classes}")
    if labels is not None and len(labels) != classes:
        raise _config_error(ckpt, "labels", f"{len(labels)} names", f"the weights have {classes} classes")


def _same(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


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
        default_mode(tmp)  # mkdtemp's 0700 would keep a shared cache private to one user
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
