"""The one registry of architectures and of their pretrained weight tags."""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Union

import torch

from .errors import ConfigError
from .pretrained import ModelMeta, PretrainedCfg

_entrypoints: dict[str, Callable[..., torch.nn.Module]] = {}
_pretrained_cfgs: dict[str, dict[str, PretrainedCfg]] = {}  # model -> tag -> cfg; first tag is the default
_random_cfgs: dict[str, PretrainedCfg] = {}  # preprocessing used when a model has no weights
_families: dict[str, object] = {}  # model -> its hub3d.models.family.Family

# "kinetics" means the model's Kinetics-400 weights where they exist, else its Kinetics-700 ones.
TAG_ALIASES = {"kinetics": ("kinetics400", "kinetics700")}


def register_model(
    fn: Optional[Callable] = None,
    *,
    pretrained: Optional[dict[str, PretrainedCfg]] = None,
    random_cfg: Optional[PretrainedCfg] = None,
    family=None,
):
    """Register a model entry point, with its pretrained configs keyed by tag (first = default) and its
    ``family`` (a hub3d.models.family.Family: original arch names, state-dict remapping, arch-kwargs inference)."""

    def wrap(fn):
        name = fn.__name__
        if name in _entrypoints:
            raise ValueError(f"model {name!r} is registered twice")
        if family is None:
            raise ValueError(f"model {name!r}: register_model needs family=<hub3d.models.family.Family>")
        _entrypoints[name] = fn
        cfgs = {}
        for tag, cfg in (pretrained or {}).items():
            cfgs[tag] = cfg.replace(tag=tag)
        _pretrained_cfgs[name] = cfgs
        base = random_cfg or (next(iter(cfgs.values())) if cfgs else PretrainedCfg())
        _random_cfgs[name] = base.replace(
            tag="random", file=None, url=None, sha256=None, hf_hub_id=None, metrics={}, drive_folder=None
        )
        _families[name] = family
        return fn

    return wrap(fn) if fn is not None else wrap


def _check_name(name: str) -> None:
    if name not in _entrypoints:
        close = fnmatch.filter(_entrypoints, f"*{name.split('_')[0]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}. See hub3d.list_models().")


def is_model(name: str) -> bool:
    return name in _entrypoints


def split_model_tag(name: str) -> tuple[str, Optional[str]]:
    """'resnet3d_34.kinetics400' (a name list_pretrained() prints) -> ('resnet3d_34', 'kinetics400').

    A registered model name comes back as (name, None), and so does anything else (a path, a Hub id, a typo):
    callers check for an existing path first, so a file named like a model.tag wins.
    """
    if name in _entrypoints:
        return name, None
    model, dot, tag = name.rpartition(".")
    if dot and tag and model in _entrypoints:
        return model, tag
    return name, None


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching a glob pattern; only those with weights when pretrained=True."""
    names = sorted(n for n in _entrypoints if fnmatch.fnmatch(n, pattern))
    if pretrained:
        names = [n for n in names if _pretrained_cfgs[n]]
    return names


def list_pretrained(pattern: str = "*") -> list[str]:
    """Every 'model.tag' pair with weights, e.g. 'resnet3d_34.kinetics400'."""
    return [f"{n}.{t}" for n in sorted(_entrypoints) for t in _pretrained_cfgs[n] if fnmatch.fnmatch(f"{n}.{t}", pattern)]


def list_tags(name: str) -> list[str]:
    _check_name(name)
    return list(_pretrained_cfgs[name])


def model_family(name: str) -> str:
    """The name of the model's family."""
    return get_family(name).name


def get_family(name: str):
    """The hub3d.models.family.Family a registered model belongs to."""
    _check_name(name)
    return _families[name]


def infer_arch_kwargs(name: str, state_dict: dict) -> dict:
    """Architecture arguments of model ``name`` that a state dict determines by itself (its family says which)."""
    family = get_family(name)
    return family.infer_arch_kwargs(family.remap_state_dict(state_dict))


def model_for_arch(arch: str) -> Optional[str]:
    """The registered model an original checkpoint's 'arch' string ('resnet-34', 'densenet-121') names, if any."""
    for family in dict.fromkeys(_families.values()):
        name = family.model_for_arch(arch)
        if name is not None and name in _entrypoints:
            return name
    return None


def resolve_tag(name: str, tag: Union[bool, str]) -> str:
    """Turn True / 'default' / an alias into one of the model's tags, or raise a clear error."""
    tags = list_tags(name)
    if not tags:
        raise ConfigError(f"model {name!r} has no pretrained weights; use pretrained=None or a file path")
    if tag is True or tag == "default":
        return tags[0]
    if tag in tags:
        return tag
    for candidate in TAG_ALIASES.get(tag, ()):
        if candidate in tags:
            return candidate
    raise ConfigError(f"model {name!r} has no tag {tag!r}; its tags: {', '.join(tags)}")


def get_pretrained_cfg(name: str, tag: Union[None, bool, str] = None) -> PretrainedCfg:
    """The config of one tag, or the random-init config (preprocessing only) when tag is None."""
    _check_name(name)
    if tag is None or tag is False:
        return _random_cfgs[name]
    return _pretrained_cfgs[name][resolve_tag(name, tag)]


def create_model(
    name: str,
    num_classes: Optional[int] = None,
    pretrained_cfg: Optional[PretrainedCfg] = None,
    **arch_kwargs,
) -> torch.nn.Module:
    """Build an architecture (no weights loaded) as a pretrained config describes it.

    The config's architecture overrides apply first, then the caller's; num_classes defaults to the config's.
    The model remembers its name, its full arguments, its config and its class names, so that it can be
    saved and rebuilt exactly. ``name`` may be 'model.tag': that tag's config (no weights: see hub3d.load).
    """
    name, tag = split_model_tag(name)
    _check_name(name)
    if tag is not None and pretrained_cfg is None:
        pretrained_cfg = get_pretrained_cfg(name, tag)
    cfg = pretrained_cfg or _random_cfgs[name]
    kwargs = {**cfg.arch_kwargs, **arch_kwargs}
    kwargs["num_classes"] = cfg.num_classes if num_classes is None else num_classes
    model = _entrypoints[name](**kwargs)
    model.meta = ModelMeta.build(name, kwargs, cfg, kwargs["num_classes"])
    return model


@dataclass
class ModelInfo:
    name: str
    family: str
    params: int
    gflops: float  # 2 x multiply-adds for one clip at the default input
    num_features: int
    input_size: tuple  # (C, T, H, W)
    tags: list

    def as_row(self) -> dict:
        return {
            "model": self.name,
            "family": self.family,
            "params (M)": round(self.params / 1e6, 2),
            "GFLOPs": round(self.gflops, 1),
            "features": self.num_features,
            "input": "x".join(map(str, self.input_size)),
            "tags": ", ".join(self.tags) or "-",
        }


def model_info(name: str, num_classes: Optional[int] = None, tag: Union[None, str] = None,
               live: bool = False) -> ModelInfo:
    """Parameters, GFLOPs per clip, feature dim and default input.

    With the default arguments the numbers come from hub3d/zoo_stats.py (generated by
    tools/gen_zoo_stats.py; a test checks it against the live count), so `hub3d list` needs no model build
    and no FLOP counter. Otherwise (or ``live=True``) they are counted on the meta device (no memory).
    """
    cfg = get_pretrained_cfg(name, tag)
    stats = None
    if not live and num_classes is None and tag is None:
        from .zoo_stats import ZOO_STATS

        stats = ZOO_STATS.get(name)
    if stats is None:
        stats = count_model(name, num_classes, cfg)
    channels = stats["n_input_channels"]
    return ModelInfo(
        name=name,
        family=model_family(name),
        params=stats["params"],
        gflops=stats["gflops"],
        num_features=stats["num_features"],
        input_size=(channels, cfg.clip_len, *((cfg.crop_size,) * 2 if isinstance(cfg.crop_size, int) else cfg.crop_size)),
        tags=list_tags(name),
    )


def count_model(name: str, num_classes: Optional[int], cfg: PretrainedCfg) -> dict:
    """Build the model on the meta device and count its parameters and FLOPs for one clip at cfg's input."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, pretrained_cfg=cfg)
        channels = model.arch_kwargs.get("n_input_channels", 3)
        x = model.example_input(1, cfg.clip_len, cfg.crop_size, channels)  # a list for SlowFast
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.eval()(x)
    return {"params": sum(p.numel() for p in model.parameters()), "gflops": counter.get_total_flops() / 1e9,
            "num_features": model.num_features, "n_input_channels": channels}


def model_layers(name: str, tag: Union[None, str] = None) -> dict:
    """The named feature layers (``model.feature_layers``, forward order) -> their output shape per clip at the
    default input (no batch axis; a list of shapes for per-pathway outputs). At the default tag they come from
    hub3d/zoo_stats.py (no model built, nothing heavy imported: `hub3d info`); otherwise traced on meta."""
    if tag is None:
        from .zoo_stats import ZOO_LAYERS

        if name in ZOO_LAYERS:
            return dict(ZOO_LAYERS[name])
    return traced_layers(name, tag)


def traced_layers(name: str, tag: Union[None, str] = None) -> dict:
    """model_layers computed now: the model built on the meta device, its input traced through (torch's symbolic
    shapes come with that: sympy, torch._dynamo)."""
    cfg = get_pretrained_cfg(name, tag)
    with torch.device("meta"):
        model = create_model(name, pretrained_cfg=cfg).eval()
        x = model.example_input(1, cfg.clip_len, cfg.crop_size, model.arch_kwargs.get("n_input_channels", 3))
        with torch.no_grad():
            outs = model.forward_intermediates(x, model.feature_layers)

    def shape(t):
        return [shape(o) for o in t] if isinstance(t, (list, tuple)) else tuple(t.shape[1:])

    return {layer: shape(out) for layer, out in outs.items()}
