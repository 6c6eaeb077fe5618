"""`hub3d features --out-dir` for datasets: shards, Ray and the manifest (hub3d.distributed), as options."""
from __future__ import annotations

import os

import click


def _merge_index(ctx, param, value):
    """--merge-index DIR: runs alone, before VIDEOS are required."""
    if not value or ctx.resilient_parsing:
        return
    from hub3d.distributed import merge_index
    from hub3d.errors import IncompleteError

    try:
        result = merge_index(value)
    except (IncompleteError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    for video, error in result["failed"].items():
        click.echo(f"failed (not in the index): {video}: {error}", err=True)
    click.echo(f"{value}: hub3d-index.json / hub3d-index.csv written ({result['done']} video(s))", err=True)
    ctx.exit(0)


def dataset_options(fn):
    options = [
        click.option("--shard", help="Do shard I of N (0-based), e.g. 0/4, of the sorted video list "
                                     "[torchrun's RANK/WORLD_SIZE or a Slurm array's task, when set]."),
        click.option("--ray", "ray_address", is_flag=False, flag_value="auto", default=None,
                     help="Run on Ray Data: --ray (RAY_ADDRESS or a new local cluster) or --ray ADDRESS."),
        click.option("--replicas", type=click.IntRange(min=1), help="Ray: model replicas [one per GPU, or per 4 CPUs]."),
        click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
                     help="Ray: retries of a batch whose worker died, before its videos are recorded failed."),
        click.option("--manifest", "use_manifest", is_flag=True,
                     help="Write DIR/manifest.jsonl and resume from it (implied by --shard, --ray, torchrun, Slurm)."),
        click.option("--merge-index", type=click.Path(file_okay=False, exists=True), is_eager=True,
                     expose_value=False, callback=_merge_index,
                     help="Write DIR's index from its shards' manifest once all are done (or list what is missing)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def wants_dataset(o: dict) -> bool:
    from hub3d.distributed import shard_from_env

    if o.get("shard") or o.get("ray_address") or o.get("use_manifest"):
        return True
    try:
        return shard_from_env() is not None
    except ValueError as e:  # e.g. a Slurm array task outside its range
        raise click.UsageError(f"{e}; give --shard I/N") from None


def run_dataset(paths, out_dir, fmt, per_video_mean, failures, o, *, engine: dict, load, report, meta) -> int:
    """Extract with hub3d.distributed.extract_dataset; returns the number of videos done (now or before).

    engine, load, report, meta: cli.predict's engine_kwargs(o), load_model, report_failure and the outputs'
    description of a model (passed in: predict
    imports this module, so this one must not import predict)."""
    from hub3d.distributed import extract_dataset, parse_shard
    from hub3d.errors import Hub3dError
    from hub3d.registry import is_model
    from hub3d.specs import resolve_device

    shard = "auto"
    if o.get("shard"):
        try:
            shard = parse_shard(o["shard"])
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--shard") from None
    ray = o.get("ray_address")
    kwargs = dict(engine)
    for key in ("on_error", "progress"):
        kwargs.pop(key)
    if ray:
        kwargs["device"] = o["device"]  # None: each replica takes the GPU Ray gives it, else its CPU
    elif kwargs["device"].type == "cuda" and os.environ.get("LOCAL_RANK", "").isdigit():
        # torchrun: one GPU per process on a node (an explicit --device cuda:K is kept)
        kwargs["device"] = resolve_device(o["device"] or "auto", local_rank=int(os.environ["LOCAL_RANK"]))
    net = load(o["model"], o["pretrained"], o["quiet"])
    try:
        s = extract_dataset(paths, out_dir, net, model_name=o["model"],
                            pretrained=o["pretrained"] if is_model(o["model"]) else None, fmt=fmt,
                            per_video_mean=per_video_mean, shard=shard, ray=True if ray == "auto" else ray,
                            replicas=o.get("replicas"), max_retries=o.get("retries", 2), progress=not o["quiet"],
                            meta=meta(net),
                            **kwargs)
    except (Hub3dError, ValueError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    for video, error in s["failed"].items():
        report(video, error)
        failures.append((video, error))
    if not o["quiet"]:
        where = f"shard {s['shard'][0]}/{s['shard'][1]}: " if s["shard"][1] > 1 else ""
        index = "index written" if s["index"] else "index waits for the other shards (--merge-index)"
        click.echo(f"{where}{s['videos']} video(s) done, {len(s['failed'])} failed in {s['seconds']:.1f} s "
                   f"({s['videos_per_s']:.2f} videos/s, "
                   f"{s['clips_per_s']:.1f} clips/s), {s['skipped']} already done; {index}", err=True)
    return s["videos"] + s["skipped"]
