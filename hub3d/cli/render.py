"""`hub3d render`: a video with each clip's top label drawn on its frames."""
from __future__ import annotations

import click


@click.command("render")
@click.argument("video", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="The labelled video to write.")
@click.option("--model", "-m", default="resnet3d_34", show_default=True,
              help="Model name, or a hub3d model directory/file, or hf-hub:org/name.")
@click.option("--pretrained", "-p", default="default", show_default=True,
              help="Weights: a tag (default: the model's own first tag), a file, or 'none'.")
@click.option("--clip-len", type=click.IntRange(min=1), help="Frames per clip [weights' default].")
@click.option("--stride", type=click.IntRange(min=1), help="Frames between clip starts [clip length].")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", help="cpu, cuda, mps [best available].")
@click.option("--quiet", "-q", is_flag=True)
def render(video, out, model, pretrained, clip_len, stride, batch_size, device, quiet):
    """Write VIDEO again with each clip's top label and probability drawn on its frames (size and rate kept)."""
    from hub3d.errors import VideoError
    from hub3d.render import render_video

    from .predict import load_model

    net = load_model(model, pretrained, quiet)
    try:
        path = render_video(net, video, out, clip_len=clip_len, stride=stride, batch_size=batch_size,
                            device=device or "auto")
    except VideoError as e:
        raise click.ClickException(str(e)) from e
    if not quiet:
        click.echo(f"wrote {path}", err=True)


COMMANDS = [render]
