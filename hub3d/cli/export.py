"""`hub3d export`: a model (name + weights, or a model file/dir) to ONNX, TorchScript or torch.export."""
from __future__ import annotations

import click


@click.command("export")
@click.argument("model")
@click.option("--pretrained", "-p", default="default", show_default=True,
              help="Weights: a tag (default: the model's own first tag), a checkpoint file, or 'none' (random).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "export"]), default="onnx",
              show_default=True, help="ONNX, TorchScript (traced) or a torch.export program (.pt2).")
@click.option("--clip", help="TxHxW to export at [the weights' clip_len x crop_size].")
@click.option("--dynamic/--fixed", default=None,
              help="Keep T/H/W dynamic (in the range torch.export proves) [the model's dynamic_input_shapes].")
@click.option("--opset", type=click.IntRange(min=7), help="ONNX opset [torch.onnx's default].")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--quiet", "-q", is_flag=True)
def export(model, pretrained, fmt, clip, dynamic, opset, out, quiet):
    """Export MODEL with outputs (logits, features), a dynamic batch axis, and its preprocessing and labels."""
    from hub3d.errors import ExportError
    from hub3d.exporter import export as export_model
    from hub3d.exporter import parse_clip, read_metadata

    from .predict import load_model

    try:
        shape = parse_clip(clip) if clip else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--clip") from e
    net = load_model(model, pretrained, quiet)
    try:
        path = export_model(net, out, format=fmt, clip=shape, dynamic=dynamic, opset=opset)
    except (ExportError, ImportError) as e:
        raise click.ClickException(str(e)) from e
    if not quiet:
        spec = read_metadata(path)["inputs"]
        shapes = ", ".join(f"{s['name']} {'x'.join('B' if d is None and a == 0 else str(d or '?') for a, d in enumerate(s['shape']))}"
                           for s in spec)
        click.echo(f"wrote {path} ({fmt}; {shapes}; outputs logits, features)", err=True)


COMMANDS = [export]
