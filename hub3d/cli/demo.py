"""`hub3d demo`: the main job end to end, offline: generate a video, classify it with the shipped model."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click


@click.command("demo")
@click.option("--action", type=str, help="SyntheticMotion class to generate [one picked by --seed].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated video.")
@click.option("--frames", type=click.IntRange(min=1), default=48, show_default=True, help="Video length.")
@click.option("--out", type=click.Path(dir_okay=False), help="Keep the generated video here (an .mp4).")
@click.option("--model", "-m", default="motion_demo", show_default=True)
@click.option("--pretrained", "-p", default="synthetic", show_default=True)
def demo(action, seed, frames, out, model, pretrained):
    """Write a SyntheticMotion video (an object moving, fading or changing size), then classify it.

    The default model, motion_demo, ships inside the package (trained with `hub3d train`; see weights/), so this
    runs without a network. Exit status 0 when the predicted label is the generated one.
    """
    import numpy as np

    from ..data.synthetic import CLASSES, render
    from ..inference import classify
    from ..video import write_video
    from .predict import format_video, load_model

    if action is None:
        action = CLASSES[seed % len(CLASSES)]
    elif action not in CLASSES:
        raise click.BadParameter(f"{action!r} is not one of {', '.join(CLASSES)}", param_hint="--action")
    net = load_model(model, pretrained)
    cfg = net.pretrained_cfg
    video = render(action, np.random.default_rng([seed, 1_000_003]), num_frames=frames, size=max(64, cfg.crop_size))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out) if out else Path(tmp) / f"{action}_{seed}.mp4"
        write_video(path, video, fps=25, pix_fmt="yuv444p", options={"crf": "10"})
        result = classify(net, str(path), topk=3, progress=False)[0]
    click.echo(f"generated: {path if out else path.name} ({frames} frames, true action: {action})")
    click.echo(format_video(result, per_clip=False, topk=3))
    verdict = "right" if result.label == action else "WRONG"
    click.echo(f"predicted: {result.label} ({verdict})")
    sys.exit(0 if result.label == action else 1)


COMMANDS = [demo]
