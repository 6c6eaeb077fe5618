"""`hub3d list`, `hub3d info`, `hub3d convert`: the model zoo from the shell."""
from __future__ import annotations

import json

import click


def format_table(rows: list[dict]) -> str:
    """Plain aligned text table of dict rows (same keys)."""
    if not rows:
        return "(nothing)"
    headers = list(rows[0])
    cells = [[str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


@click.command("list")
@click.argument("pattern", default="*")
@click.option("--pretrained", is_flag=True, help="Only models with released weights.")
@click.option("--tags", "show_tags", is_flag=True, help="One row per weight tag, with its source and metrics.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(pattern, pretrained, show_tags, as_json):
    """The model zoo: models (or weight tags) matching PATTERN, with params, GFLOPs and feature dim."""
    import hub3d

    if show_tags:
        rows = [tag_row(name, tag) for name in hub3d.list_models(pattern, pretrained=True) for tag in hub3d.list_tags(name)]
    else:
        rows = [hub3d.model_info(name).as_row() for name in hub3d.list_models(pattern, pretrained=pretrained)]
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))


def tag_row(name: str, tag: str) -> dict:
    import hub3d

    from ..sources import hf_repo_id

    cfg = hub3d.get_pretrained_cfg(name, tag)
    if cfg.release == "bundled":
        source = "bundled"
    else:  # the order hub3d.sources.locate_weights tries, after the cache
        source = " > ".join([f"hf:{hf_repo_id(name, cfg)}"] + ["url"] * bool(cfg.url) + ["drive"] * bool(cfg.drive_folder))
    metrics = ", ".join(f"{k}={v}" for k, v in cfg.metrics.items()) or "-"
    return {
        "weights": f"{name}.{tag}",
        "classes": cfg.num_classes,
        "labels": (cfg.labels or "class_i") + ("" if cfg.labels_verified else " (order unverified)"),
        "input": f"{cfg.clip_len}x{cfg.crop_size}x{cfg.crop_size}",
        "source": source,
        "metrics": metrics,
    }


@click.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_command(model, as_json):
    """Everything about one MODEL: size, cost, input, and each weight tag with preprocessing and provenance."""
    import hub3d

    try:
        info = hub3d.model_info(model)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    tags = {tag: hub3d.get_pretrained_cfg(model, tag).to_dict() for tag in info.tags}
    layers = hub3d.registry.model_layers(model)
    if as_json:
        click.echo(json.dumps({"model": info.as_row(), "layers": layers, "tags": tags}, indent=2))
        return
    for key, value in info.as_row().items():
        click.echo(f"{key:>12}: {value}")
    click.echo("\nlayers (--layer NAME; output per clip at the default input):")
    for layer, shape in layers.items():
        click.echo(f"  {layer:>20}: {_shape(shape)}")
    for tag, cfg in tags.items():
        click.echo(f"\n[{model}.{tag}]")
        for key in ("num_classes", "labels", "labels_verified", "arch_kwargs", "modality", "value_scale", "mean",
                    "std", "resize", "crop_size", "clip_len", "file", "url", "drive_folder", "metrics", "license",
                    "notes"):
            if cfg.get(key) not in (None, {}, "", "rgb"):
                click.echo(f"  {key:>15}: {cfg[key]}")


def _shape(shape) -> str:
    return " + ".join(map(_shape, shape)) if isinstance(shape, list) else "x".join(map(str, shape))


@click.command("convert")
@click.argument("file", type=click.Path(exists=True))
@click.argument("out_dir", type=click.Path(), required=False)
@click.option("--model", "model_name",
              help="hub3d model name (or MODEL.TAG), when the file does not say (torchvision files).")
@click.option("--tag", help="Tag whose labels and preprocessing go with the file (default: matched by file name).")
def convert_command(file, out_dir, model_name, tag):
    """Convert an original checkpoint FILE into hub3d's format (model.safetensors + config.json) in OUT_DIR.

    Without OUT_DIR the result goes into hub3d's cache under MODEL.TAG, where hub3d.load(MODEL,
    pretrained=TAG) finds it.
    """
    from ..errors import Hub3dError
    from ..loader import convert

    try:
        if out_dir is None:
            out_dir = default_convert_dir(file, model_name, tag)
        path = convert(file, out_dir, model_name=model_name, tag=tag)
    except (Hub3dError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {path}")


def default_convert_dir(file, model_name, tag):
    """The cache directory where hub3d.load looks for the converted weights of FILE."""
    from ..checkpoint import read_checkpoint
    from ..loader import cfg_for_checkpoint, identify_model
    from ..registry import split_model_tag
    from ..sources import converted_dir

    ckpt = read_checkpoint(file)
    name, name_tag = split_model_tag(model_name) if model_name else (identify_model(ckpt), None)
    if name is None:
        raise click.ClickException(f"{file}: cannot tell which model this is; pass --model")
    cfg = cfg_for_checkpoint(name, ckpt, tag or name_tag)
    if cfg.tag == "random":
        raise click.ClickException(f"{file}: matches no weight tag of {name}; pass --tag or an OUT_DIR")
    return converted_dir(name, cfg.tag)


COMMANDS = [list_command, info_command, convert_command]

