"""The one registry of architectures and of their pretrained weight tags."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

from .pretrained import PretrainedCfg

_entrypoints: dict[str, Callable[..., torch.nn.Module]] = {}
_pretrained_cfgs: dict[str, dict[str, PretrainedCfg]] = {}  # model -> tag -> cfg; first tag is the default
_random_cfgs: dict[str, PretrainedCfg] = {}  # preprocessing used when a model has no weights
_families: dict[str, str] = {}

# "kinetics" means the model's Kinetics-400 weights where they exist, else its Kinetics-700 ones.
TAG_ALIASES = {"kinetics": ("kinetics400", "kinetics700")}


def register_model(
    fn: Optional[Callable] = None,
    *,
    pretrained: Optional[dict[str, PretrainedCfg]] = None,
    random_cfg: Optional[PretrainedCfg] = None,
):
    """Register a model entry point, with its pretrained configs keyed by tag (first = default)."""

    def wrap(fn):
        name = fn.__name__
        if name in _entrypoints:
            raise ValueError(f"model {name!r} is registered twice")
        _entrypoints[name] = fn
        cfgs = {}
        for tag, cfg in (pretrained or {}).items():
            cfgs[tag] = cfg.replace(tag=tag)
        _pretrained_cfgs[name] = cfgs
        base = random_cfg or (next(iter(cfgs.values())) if cfgs else PretrainedCfg())
        _random_cfgs[name] = base.replace(
            tag="random", file=None, url=None, sha256=None, hf_hub_id=None, metrics={}, drive_folder=None
        )
        _families[name] = fn.__module__.rsplit(".", 1)[-1]
        return fn

    return wrap(fn) if fn is not None else wrap


def _check_name(name: str) -> None:
    if name not in _entrypoints:
        close = fnmatch.filter(_entrypoints, f"*{name.split('_')[0]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}. See hub3d.list_models().")


def is_model(name: str) -> bool:
    return name in _entrypoints


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
    _check_name(name)
    return _families[name]


def resolve_tag(name: str, tag: Union[bool, str]) -> str:
    """Turn True / 'default' / an alias into one of the model's tags, or raise a clear error."""
    tags = list_tags(name)
    if not tags:
        raise ValueError(f"model {name!r} has no pretrained weights; use pretrained=None or a file path")
    if tag is True or tag == "default":
        return tags[0]
    if tag in tags:
        return tag
    for candidate in TAG_ALIASES.get(tag, ()):
        if candidate in tags:
            return candidate
    raise ValueError(f"model {name!r} has no tag {tag!r}; its tags: {', '.join(tags)}")


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
    saved and rebuilt exactly.
    """
    _check_name(name)
    cfg = pretrained_cfg or _random_cfgs[name]
    kwargs = {**cfg.arch_kwargs, **arch_kwargs}
    kwargs["num_classes"] = cfg.num_classes if num_classes is None else num_classes
    model = _entrypoints[name](**kwargs)
    model.arch_name = name
    model.arch_kwargs = kwargs
    if kwargs["num_classes"] != cfg.num_classes:
        cfg = cfg.replace(num_classes=kwargs["num_classes"], labels=None, labels_verified=False)
    model.pretrained_cfg = cfg
    model.labels = cfg.class_names()
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


def model_info(name: str, num_classes: Optional[int] = None, tag: Union[None, str] = None) -> ModelInfo:
    """Parameters, GFLOPs per clip, feature dim and default input, computed on the meta device (no memory)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = get_pretrained_cfg(name, tag)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, pretrained_cfg=cfg)
        channels = model.arch_kwargs.get("n_input_channels", 3)
        x = model.example_input(1, cfg.clip_len, cfg.crop_size, channels)  # a list for SlowFast
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.eval()(x)
    return ModelInfo(
        name=name,
        family=_families[name],
        params=sum(p.numel() for p in model.parameters()),
        gflops=counter.get_total_flops() / 1e9,
        num_features=model.num_features,
        input_size=(channels, cfg.clip_len, *((cfg.crop_size,) * 2 if isinstance(cfg.crop_size, int) else cfg.crop_size)),
        tags=list_tags(name),
    )
