"""`hub3d train` (also `torchrun --nproc_per_node=N -m hub3d.train ...`): the paper's recipe from the shell."""
from __future__ import annotations

import ast

import click


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


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


@click.command("train", context_settings={"show_default": True})
@click.option("--data", required=True, help="'synthetic', a folder (root/<class>/<video>, or with train/ and val/), "
              "a CSV of path,label, a Kinetics CSV, or a UCF-101/HMDB-51 video root (with --annotations).")
@click.option("--val-data", default=None, help="Validation data, same forms as --data (default: the data's own "
              "validation split; synthetic: freshly generated videos).")
@click.option("--format", "fmt", default="auto",
              type=click.Choice(["auto", "folder", "csv", "kinetics", "ucf101", "hmdb51"]))
@click.option("--annotations", default=None, help="UCF-101 / HMDB-51 split-file folder.")
@click.option("--video-root", default=None, help="Folder of a Kinetics CSV's videos (default: next to the CSV).")
@click.option("--split", default=1, type=int, help="UCF-101 / HMDB-51 split number.")
@click.option("--classes", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Class list file (one name per line): explicit class order, saved with the model.")
@click.option("--synthetic-videos", default=2000, help="Training videos of --data synthetic.")
@click.option("--synthetic-val-videos", default=200, help="Validation videos of --data synthetic.")
@click.option("--synthetic-frames", default=32, help="Frames per synthetic video.")
@click.option("--synthetic-size", default=64, help="Frame size of synthetic videos.")
@click.option("--model", required=True, help="Architecture name (hub3d list).")
@click.option("--model-arg", "model_kwargs", multiple=True, callback=_kv, metavar="KEY=VALUE",
              help="Architecture argument, e.g. widen_factor=0.25 (repeatable).")
@click.option("--pretrained", default=None, help="Start from weights: a tag (kinetics, kinetics700, ...), "
              "'default', or a file / hub3d directory. The classifier is replaced when the classes differ.")
@click.option("--finetune-from", default=None, help="Train this stage onwards (layer4 or conv5_x + fc as in the "
              "CVPR paper; layer1..layer4, conv2_x..conv5_x, fc, all); earlier stages are frozen.")
@click.option("--tag", default=None, help="Tag recorded in the exported config (default: the model's).")
@click.option("--clip-len", default=None, type=int, help="Frames per clip (default: the model's config).")
@click.option("--crop-size", default=None, type=int, help="Input size (default: the model's config).")
@click.option("--epochs", default=10)
@click.option("--batch-size", default=32, help="Per process; global batch = batch size x processes.")
@click.option("--lr", default=0.1, help="Learning rate (scale it with the global batch: 0.1 at 256).")
@click.option("--head-lr", default=None, type=float, help="Learning rate of the classifier (default: --lr).")
@click.option("--optimizer", default="sgd", type=click.Choice(["sgd", "adamw"]), help="SGD is the papers'.")
@click.option("--momentum", default=0.9)
@click.option("--dampening", default=0.0)
@click.option("--nesterov", is_flag=True)
@click.option("--weight-decay", default=1e-3)
@click.option("--scheduler", default="plateau", type=click.Choice(["plateau", "cosine", "multistep", "none"]))
@click.option("--lr-factor", default=0.1, help="plateau / multistep: multiply the lr by this.")
@click.option("--lr-drops", default=3, help="plateau: at most this many reductions.")
@click.option("--patience", default=10, help="plateau: epochs without val-loss improvement before reducing.")
@click.option("--milestones", default=None, callback=_floats, help="multistep: epochs, comma-separated.")
@click.option("--warmup-epochs", default=0)
@click.option("--scales", default=None, callback=_floats,
              help="Crop scales of the short side (default: 1,2^-1/4,2^-1/2,2^-3/4,1/2).")
@click.option("--hflip", default=0.5, help="Horizontal flip probability.")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
@click.option("--amp", default="none", type=click.Choice(["none", "bf16", "fp16"]), help="Mixed precision.")
@click.option("--channels-last", is_flag=True, help="channels_last_3d memory format.")
@click.option("--sync-bn", is_flag=True, help="SyncBatchNorm across processes (CUDA).")
@click.option("--workers", default=2, help="DataLoader processes decoding videos, per training process.")
@click.option("--threads", default=None, type=int, help="torch threads per process.")
@click.option("--seed", default=0)
@click.option("--max-steps", default=None, type=int, help="Stop each epoch after this many steps.")
@click.option("--out", required=True, help="Run folder: logs, metrics, checkpoints; ends holding the exported "
              "model (hub3d.load(OUT)).")
@click.option("--resume", default=None, help="A checkpoint, or a run folder (its latest checkpoint).")
@click.option("--checkpoint-every", default=1, help="Epochs between checkpoints (the best is always kept).")
@click.option("--val-every", default=1)
@click.option("--val-batch-size", default=None, type=int)
@click.option("--export", default="best", type=click.Choice(["best", "last"]),
              help="Which epoch's weights --out ends holding.")
@click.option("--progress/--no-progress", default=True)
def train(**opts):
    """Train or fine-tune a model (Hara et al.'s recipe; every knob a flag). Under torchrun: DDP."""
    from ..train.engine import TrainConfig, train as run

    fields = dict(opts)
    fields["format"] = fields.pop("fmt")
    fields["milestones"] = tuple(int(m) for m in (fields["milestones"] or ()))
    if fields["scales"] is None:
        fields.pop("scales")
    try:
        cfg = TrainConfig(**fields)
        run(cfg)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None


COMMANDS = [train]
