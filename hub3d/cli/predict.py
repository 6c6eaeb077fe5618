"""`hub3d classify` and `hub3d features`: thin wrappers over hub3d.inference; every file goes through hub3d.io."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

NO_WEIGHTS = ("none", "random", "no", "false", "")


# ------------------------------------------------------------------------------------------ shared parts
def engine_options(fn):
    """Options every inference command takes (model, clips, runtime)."""
    options = [
        click.argument("videos", nargs=-1, required=True),
        click.option("--model", "-m", default="resnet3d_34", show_default=True,
                     help="Model name, or a hub3d model directory/file, or hf-hub:org/name."),
        click.option("--pretrained", "-p", default="kinetics", show_default=True,
                     help="Weights: a tag (kinetics, kinetics700, ...), a checkpoint file, or 'none' (random)."),
        click.option("--clip-len", type=click.IntRange(min=1), help="Frames per clip [weights' default]."),
        click.option("--stride", type=click.IntRange(min=1), help="Frames between clip starts [clip length]."),
        click.option("--tail", type=click.Choice(["loop", "drop", "2017"]), default="loop", show_default=True,
                     help="Last partial clip: loop-pad it, drop it, or the 2017 tool's exact windows."),
        click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Resample videos to this rate."),
        click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True),
        click.option("--device", help="cpu, cuda, cuda:1, mps [best available]."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True),
        click.option("--num-workers", type=click.IntRange(min=1), help="Decoder threads [1 on cpu, 4 on GPUs]."),
        click.option("--threads", type=click.IntRange(min=1),
                     help="The model's torch threads [cpu: all cores, less one per decoder when 2+ remain]."),
        click.option("--skip-existing", is_flag=True, help="Resume: skip videos whose outputs already exist."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or notices."),
        click.option("--runtime", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True,
                     help="onnxruntime: --model is a .onnx file from `hub3d export` (cpu, fp32)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def auto_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def load_model(model: str, pretrained: str, quiet: bool = False):
    """hub3d.load with the CLI's spelling of 'no weights'; says loudly when the weights are random."""
    import hub3d
    from hub3d.registry import is_model

    random_weights = is_model(model) and pretrained.lower() in NO_WEIGHTS
    try:
        net = hub3d.load(model, pretrained=None if random_weights else pretrained)
    except Exception as e:  # noqa: BLE001  (any loading problem ends the command with its message)
        raise click.ClickException(f"cannot load model {model!r} (pretrained={pretrained!r}): {e}") from e
    if random_weights:
        click.secho(f"WARNING: {model} has RANDOM weights (--pretrained {pretrained}); its outputs mean nothing.",
                    fg="yellow", err=True)
    return net


def collect_videos(inputs) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand each input (file, directory, glob, @list.txt); an input that expands to nothing is a failure."""
    from hub3d.io import expand_video_paths

    videos, failures, seen = [], [], set()
    for item in inputs:
        try:
            found = expand_video_paths([item])
        except (FileNotFoundError, OSError) as e:
            failures.append((item, str(e)))
            continue
        for v in found:
            if v not in seen:
                seen.add(v)
                videos.append(v)
    return videos, failures


def report_failure(video: str, error: str) -> None:
    from tqdm import tqdm

    # The error text already starts with the path when it comes from hub3d.video.
    message = f"error: {error if error.startswith(video) else f'{video}: {error}'}"
    # tqdm.write: printed above the progress bar instead of through it.
    tqdm.write(click.style(message, fg="red") if sys.stderr.isatty() else message, file=sys.stderr)


def engine_kwargs(o: dict) -> dict:
    device = o["device"] or auto_device()
    if o["precision"] == "fp16" and device.startswith("cpu"):
        raise click.UsageError("--precision fp16 needs a cuda or mps device; on cpu use bf16")
    return dict(clip_len=o["clip_len"], stride=o["stride"], tail=o["tail"], fps=o["fps"], batch_size=o["batch_size"],
                device=device, precision=o["precision"], num_workers=o["num_workers"], threads=o["threads"], on_error="skip",
                progress=not o["quiet"])


def finish(failures: list, n_ok: int, quiet: bool) -> None:
    if not quiet or failures:
        click.echo(f"{n_ok} video(s) done, {len(failures)} failed", err=True)
    if failures:
        sys.exit(1)


def _model_meta(net, o: dict) -> dict:
    cfg = net.pretrained_cfg
    from hub3d.registry import is_model

    pretrained = o["pretrained"] if is_model(o["model"]) else None  # a model file/dir carries its own weights
    return {"model": o["model"], "arch": getattr(net, "arch_name", None), "pretrained": pretrained,
            "tag": cfg.tag, "clip_len": o["clip_len"] or cfg.clip_len, "stride": o["stride"] or o["clip_len"] or cfg.stride,
            "tail": o["tail"], "precision": o["precision"]}


# ---------------------------------------------------------------------------------------------- classify
@click.command("classify")
@engine_options
@click.option("--topk", "-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--per-clip", is_flag=True, help="Also print every clip's top-k.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the full result here.")
@click.option("--probs", is_flag=True, help="In --json, also every class probability (per video and clip).")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Timeline picture (.png/.svg) of the top classes per clip; several videos: one file each.")
def classify(videos, topk, per_clip, json_path, probs, plot, **o):
    """Top-k actions of each video (mean of the clip softmaxes).

    VIDEOS: files, directories (searched recursively), globs, or a list file (@list.txt / list.txt).
    """
    from hub3d import io
    from hub3d.inference import FailedVideo, iter_classify

    paths, failures = collect_videos(videos)
    for item, error in failures:
        report_failure(item, error)
    entries: dict[str, dict] = {}
    if o["skip_existing"] and json_path and os.path.exists(json_path):
        with open(json_path, encoding="utf-8") as f:
            previous = json.load(f)
        entries = {e["video"]: e for e in previous.get("videos", [])}
        paths = [p for p in paths if p not in entries]
        if not o["quiet"]:
            click.echo(f"{json_path}: {len(entries)} video(s) already done, {len(paths)} to go", err=True)
    elif o["skip_existing"] and not json_path:
        click.echo("note: --skip-existing needs --json to know what is done; classifying everything", err=True)

    net, runtime = load_runtime(o, "probs")
    meta = _model_meta(net, o)
    failed = [{"video": v, "error": e} for v, e in failures]

    def save():
        if json_path:
            io.write_json(json_path, {**meta, "videos": list(entries.values()), "failed": failed})

    show = click.echo if o["quiet"] else _write_above_bar
    n_ok, last = 0, 0.0
    try:
        for r in iter_classify(net, paths, topk=topk, **{**engine_kwargs(o), **runtime}):
            if isinstance(r, FailedVideo):
                report_failure(r.video, r.error)
                failures.append((r.video, r.error))
                failed.append({"video": r.video, "error": r.error})
                continue
            n_ok += 1
            entries[r.video] = r.to_dict(per_clip=True, clip_topk=topk, probs=probs)
            show(format_video(r, per_clip, topk))
            if plot:
                _plot(r, plot, paths, o)
            if time.monotonic() - last > 2.0:  # keep the file current without rewriting it for every video
                save()
                last = time.monotonic()
    finally:  # also on Ctrl-C and errors: the file lists every video done
        save()
    finish(failures, n_ok, o["quiet"])


def _plot(result, plot, paths, o):
    from hub3d import plots

    target = plots.plot_path(plot, result.video, paths)
    if hasattr(result, "features"):
        plots.plot_similarity(result, target)
    else:
        plots.plot_timeline(result, target)
    if not o["quiet"]:
        _write_above_bar(f"wrote {target}")


# -------------------------------------- --runtime onnxruntime (kept apart: the engine restructure may supersede it)
def load_runtime(o: dict, head: str):
    """(model or runner, extra engine kwargs): a torch model, or with --runtime onnxruntime an OnnxRunner, which
    carries the exported file's preprocessing and labels and is passed to the engine as its runner."""
    if o["runtime"] == "torch":
        return load_model(o["model"], o["pretrained"], o["quiet"]), {}
    if o["precision"] != "fp32" or (o["device"] or "cpu") != "cpu":
        raise click.UsageError("--runtime onnxruntime runs on cpu in fp32: drop --device/--precision")
    from hub3d.exporter import ExportError, OnnxRunner

    try:
        runner = OnnxRunner(o["model"], head=head, threads=o["threads"])
    except (ExportError, ImportError, OSError) as e:
        raise click.ClickException(f"--runtime onnxruntime --model {o['model']}: {e}") from e
    if len(runner.inputs) == 1:  # refuse a clip shape the file cannot run before decoding anything
        from hub3d.exporter import check_input_shape, default_clip

        t, h, w = default_clip(runner)
        spec = runner.inputs[0]
        try:
            check_input_shape((1, spec["shape"][1], o["clip_len"] or t, h, w), spec, o["model"])
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    return runner, {"runner": runner}


def _write_above_bar(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)


def format_video(r, per_clip: bool, topk: int) -> str:
    span = f"{r.clip_seconds[0, 0]:.2f}-{r.clip_seconds[-1, 1]:.2f} s" if r.n_clips else "-"
    lines = [f"{r.video}  ({r.n_clips} clip{'s' if r.n_clips != 1 else ''}, {span})"]
    width = max(len(label) for label, _, _ in r.topk)
    lines += [f"  {rank}. {label.ljust(width)}  {prob:.4f}" for rank, (label, _, prob) in enumerate(r.topk, 1)]
    if per_clip:
        for i, (f, s, top) in enumerate(zip(r.clip_frames, r.clip_seconds, r.clip_topk(topk))):
            best = ", ".join(f"{label} {prob:.3f}" for label, _, prob in top)
            lines.append(f"    clip {i}: frames [{f[0]}, {f[1]})  {s[0]:.2f}-{s[1]:.2f} s  {best}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- features
@click.command("features")
@engine_options
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False),
              help="One video: its (n_clips, D) .npy or .npz. Several with --per-video-mean: one (n_videos, D) array.")
@click.option("--out-dir", type=click.Path(file_okay=False), help="One file per video + index.csv/index.json.")
@click.option("--format", "fmt", type=click.Choice(["npy", "npz"]), default="npy", show_default=True,
              help="File type in --out-dir (npz also holds clip_frames and clip_seconds).")
@click.option("--per-video-mean", is_flag=True, help="Average the clip features of each video: (D,) per video.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Clip similarity picture (.png/.svg: cosine matrix + PCA); several videos: one file each.")
def features(videos, out, out_dir, fmt, per_video_mean, plot, **o):
    """Clip features (the pooled vector before the classifier) of each video.

    VIDEOS: files, directories (searched recursively), globs, or a list file (@list.txt / list.txt).
    """
    if bool(out) == bool(out_dir):
        raise click.UsageError("give exactly one of --out FILE or --out-dir DIR")
    if out and Path(out).suffix.lower() not in (".npy", ".npz"):
        raise click.UsageError(f"--out {out}: use a .npy or .npz file name")
    paths, failures = collect_videos(videos)
    for item, error in failures:
        report_failure(item, error)
    if out and len(paths) > 1 and not per_video_mean:
        raise click.UsageError(f"{len(paths)} videos: use --out-dir DIR (one file per video), or --per-video-mean "
                               "to write one (n_videos, D) array to --out")
    o["plot"], o["paths"] = plot, paths
    if out:
        n_ok = _features_to_file(paths, out, per_video_mean, failures, o)
    else:
        n_ok = _features_to_dir(paths, out_dir, fmt, per_video_mean, failures, o)
    finish(failures, n_ok, o["quiet"])


def _run_features(paths, per_video_mean, failures, o):
    from hub3d.inference import FailedVideo, iter_extract_features

    net, runtime = load_runtime(o, "features")
    for r in iter_extract_features(net, paths, per_video_mean=per_video_mean, **{**engine_kwargs(o), **runtime}):
        if isinstance(r, FailedVideo):
            report_failure(r.video, r.error)
            failures.append((r.video, r.error))
        else:
            if o.get("plot"):
                _plot(r, o["plot"], o["paths"], o)
            yield r


def _features_to_file(paths, out, per_video_mean, failures, o) -> int:
    from hub3d import io

    if o["skip_existing"] and os.path.exists(out):
        click.echo(f"{out} exists; skipped (--skip-existing)", err=True)
        return 0
    results = list(_run_features(paths, per_video_mean, failures, o))
    if not results:
        return 0
    if len(paths) == 1:
        results[0].save(out, mean=per_video_mean)
    else:  # several videos, per-video means: one row per video that worked, listed in an index
        means = [r.mean_features for r in results]
        rows = [{"row": i, "video": r.video, "clips": r.n_clips} for i, r in enumerate(results)]
        if out.lower().endswith(".npz"):
            io.write_npz(out, features=means, videos=[r.video for r in results])
        else:
            io.write_npy(out, means)
        stem = str(Path(out).with_suffix(""))
        io.write_csv(stem + ".index.csv", rows, ["row", "video", "clips"])
        io.write_json(stem + ".index.json", rows)
    if not o["quiet"]:
        click.echo(f"wrote {out}", err=True)
    return len(results)


INDEX_FIELDS = ["video", "file", "row", "frame_start", "frame_end", "start_s", "end_s"]


def _features_to_dir(paths, out_dir, fmt, per_video_mean, failures, o) -> int:
    """One file per video (named after its path below the videos' common folder) + index.csv / index.json."""
    from hub3d import io

    out_dir = Path(out_dir)
    names = dict(zip(paths, io.output_names(paths, "." + fmt)))
    index_json = out_dir / "index.json"
    previous = {}
    if index_json.exists():
        with open(index_json, encoding="utf-8") as f:
            previous = {e["video"]: e for e in json.load(f).get("videos", [])}
    entries: dict[str, dict] = {}
    todo = []
    for p in paths:
        target = out_dir / names[p]
        if o["skip_existing"] and target.exists():
            entries[p] = previous.get(p) or _entry_from_file(p, names[p], target)
        else:
            todo.append(p)
    if o["skip_existing"] and not o["quiet"]:
        click.echo(f"{out_dir}: {len(paths) - len(todo)} video(s) already done, {len(todo)} to go", err=True)

    mean_only = per_video_mean and fmt == "npy"  # such files hold the (D,) mean, not clip rows

    def write_index():
        ordered = [entries[p] for p in paths if p in entries]
        io.write_json(index_json, {"videos": ordered, "per_video_mean": per_video_mean})
        rows = []
        for e in ordered:
            for i, (f, s) in enumerate(zip(e.get("clip_frames") or [], e.get("clip_seconds") or [])):
                rows.append({"video": e["video"], "file": e["file"], "row": "" if mean_only else i,
                             "frame_start": f[0], "frame_end": f[1], "start_s": s[0], "end_s": s[1]})
        io.write_csv(out_dir / "index.csv", rows, INDEX_FIELDS)

    n_ok, last = 0, 0.0
    try:
        for r in _run_features(todo, per_video_mean, failures, o) if todo else ():
            r.save(out_dir / names[r.video], mean=per_video_mean)
            entries[r.video] = {"video": r.video, "file": names[r.video], "rows": 1 if mean_only else r.n_clips,
                                "clip_frames": r.clip_frames.tolist(), "clip_seconds": r.clip_seconds.tolist()}
            n_ok += 1
            if time.monotonic() - last > 2.0:  # keep the index current without rewriting it per video
                write_index()
                last = time.monotonic()
    finally:
        write_index()  # also on Ctrl-C and errors: the index lists every file written
    if not o["quiet"]:
        click.echo(f"wrote {n_ok} file(s) and the index to {out_dir}", err=True)
    return n_ok + len(paths) - len(todo)


def _entry_from_file(video, name, target: Path) -> dict:
    """Index entry of an output written by an earlier run whose index is gone: read back what the file holds."""
    import numpy as np

    if target.suffix == ".npz":
        with np.load(target) as z:
            return {"video": video, "file": name, "rows": int(np.atleast_2d(z["features"]).shape[0]),
                    "clip_frames": z["clip_frames"].tolist(), "clip_seconds": z["clip_seconds"].tolist()}
    arr = np.load(target, mmap_mode="r")
    return {"video": video, "file": name, "rows": int(np.atleast_2d(arr).shape[0]), "clip_frames": None,
            "clip_seconds": None}


COMMANDS = [classify, features]
