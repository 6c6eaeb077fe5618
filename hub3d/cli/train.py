"""`hub3d train` (also `torchrun --nproc_per_node=N -m hub3d.train ...`): the paper's recipe from the shell.

The options are TrainConfig's fields (hub3d.train.engine), so a new knob is one field with its help text."""
from __future__ import annotations

import ast
import dataclasses

import click

from ..train.engine import TrainConfig
from ..train.engine import train as run_training


def _kv(ctx, param, values):
    """KEY=VALUE pairs -> dict; values are Python literals when they parse (0.25, True, 'B'), else strings."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _numbers(kind):
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            return tuple(kind(float(v)) if kind is int else kind(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None
    return parse


def config_options(fn):
    """One click option per TrainConfig field, from the field's default and metadata (help, choices, ...)."""
    options = []
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata)
        if meta.get("cli") is False:
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        kw = {"help": meta.get("help")}
        if meta.get("kv"):
            kw.update(multiple=True, callback=_kv, metavar="KEY=VALUE")
        elif meta.get("numbers"):
            kw.update(default=None, callback=_numbers(meta["numbers"]), show_default=False)
        elif isinstance(default, bool):
            kw["default"] = default
            if default:
                flag = f"{flag}/--no-{flag[2:]}"
            else:
                kw["is_flag"] = True
        elif meta.get("required"):
            kw.update(required=True)
        else:
            kw["default"] = default
            if meta.get("choices"):
                kw["type"] = click.Choice(list(meta["choices"]))
            elif meta.get("path"):
                kw["type"] = click.Path(exists=True, dir_okay=False)
            elif "type" in meta:
                kw["type"] = meta["type"]
        options.append(click.option(flag, f.name, **kw))
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("train", context_settings={"show_default": True})
@config_options
def train(**opts):
    """Train or fine-tune a model (Hara et al.'s recipe; every knob a flag). Under torchrun: DDP."""
    fields = {k: v for k, v in opts.items() if v is not None or k not in ("scales", "milestones")}
    try:
        cfg = TrainConfig(**fields)
        run_training(cfg)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


COMMANDS = [train]
