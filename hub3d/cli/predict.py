"""`hub3d classify` and `hub3d features`: thin wrappers over hub3d.inference; every file goes through hub3d.io."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from .dataset import dataset_options, run_dataset, wants_dataset

NO_WEIGHTS = ("none", "random", "no", "false", "")


# ------------------------------------------------------------------------------------------ shared parts
def engine_options(fn):
    """Options every inference command takes (model, clips, runtime)."""
    options = [
        click.argument("videos", nargs=-1, required=True),
        click.option("--model", "-m", default="resnet3d_34", show_default=True,
                     help="Model name, or a hub3d model directory/file, or hf-hub:org/name."),
        click.option("--pretrained", "-p", default="default", show_default=True,
                     help="Weights: a tag (default: the model's own first tag, e.g. kinetics400, sports1m for c3d; "
                          "kinetics, kinetics700, ...), a checkpoint file, or 'none' (random)."),
        click.option("--clip-len", type=click.IntRange(min=1), help="Frames per clip [weights' default]."),
        click.option("--stride", type=click.IntRange(min=1), help="Frames between clip starts [clip length]."),
        click.option("--tail", type=click.Choice(["loop", "drop", "2017"]), default="loop", show_default=True,
                     help="Last partial clip: loop-pad it, drop it, or the 2017 tool's exact windows."),
        click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Resample videos to this rate."),
        click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True),
        click.option("--device", help="cpu, cuda, cuda:1, mps [best available]."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16", "auto"]), default="fp32",
                     show_default=True,
                     help="auto: bf16 where the device runs it natively (AMX/AVX512-BF16 CPUs, CUDA >= 8.0), else fp32."),
        click.option("--num-workers", type=click.IntRange(min=1), help="Decoder threads [cpu: 1, 2 with bf16; GPUs: 4]."),
        click.option("--threads", type=click.IntRange(min=1),
                     help="The model's torch threads [cpu: all cores, less one per decoder when 2+ remain]."),
        click.option("--skip-existing", is_flag=True, help="Resume: skip videos whose outputs already exist."),
        click.option("--allow-partial", is_flag=True,
                     help="Exit 0 even when a video ends well before its declared length (it is flagged anyway)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or notices."),
        click.option("--runtime", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True,
                     help="onnxruntime: --model is a .onnx file from `hub3d export` (cpu, fp32)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_model(model: str, pretrained: str, quiet: bool = False):
    """hub3d.load with the CLI's spelling of 'no weights'; says loudly when the weights are random."""
    import hub3d
    from hub3d.registry import is_model

    random_weights = is_model(model) and pretrained.lower() in NO_WEIGHTS
    if quiet:
        from hub3d.sources import quiet_hub
        quiet_hub()  # no "Retrying ..." warnings from huggingface_hub under -q
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
    from hub3d.errors import VideoError
    from hub3d.io import expand_video_paths

    videos, failures, seen = [], [], set()
    for item in inputs:
        try:
            found = expand_video_paths([item])
        except (FileNotFoundError, OSError, VideoError) as e:
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
    from hub3d.specs import resolve_device, resolve_precision

    device = resolve_device(o["device"] or "auto")
    try:
        precision = resolve_precision(o["precision"], device)  # "auto" -> what runs, also for the results file
    except ValueError as e:
        raise click.UsageError(f"--precision {o['precision']}: {e}") from None
    return dict(clip_len=o["clip_len"], stride=o["stride"], tail=o["tail"], fps=o["fps"], batch_size=o["batch_size"],
                device=device, precision=precision, num_workers=o["num_workers"], threads=o["threads"],
                on_error="skip", progress=not o["quiet"])


def finish(failures: list, n_ok: int, quiet: bool, partial: list = (), allow_partial: bool = False) -> None:
    if not quiet or failures or partial:
        more = f", {len(partial)} incomplete" if partial else ""
        click.echo(f"{n_ok} video(s) done{more}, {len(failures)} failed", err=True)
    if partial and not allow_partial:
        click.echo(f"error: {len(partial)} video(s) end well before their declared length (their results cover "
                   f"only the decoded part, flagged complete: false): {', '.join(partial)}; --allow-partial "
                   "accepts them", err=True)
    if failures or (partial and not allow_partial):
        sys.exit(1)


def note_partial(r, partial: list) -> None:
    """Remember a result that covers only part of its video (the decoder has already warned, naming it)."""
    if not r.complete:
        partial.append(r.video)


def output_errors(fn):
    """Write failures (hub3d.errors.OutputError) end the command with their one line: path and OS reason."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from hub3d.errors import OutputError

        try:
            return fn(*args, **kwargs)
        except OutputError as e:
            raise click.ClickException(str(e)) from None
    return wrapper


def _model_meta(net, o: dict) -> dict:
    from hub3d.registry import is_model
    from hub3d.specs import resolve_clip_spec

    cfg = net.pretrained_cfg
    spec = resolve_clip_spec(net, clip_len=o["clip_len"], stride=o["stride"], tail=o["tail"])  # as the engine does
    pretrained = o["pretrained"] if is_model(o["model"]) else None  # a model file/dir carries its own weights
    return {"model": o["model"], "arch": getattr(net, "arch_name", None), "pretrained": pretrained,
            "tag": cfg.tag, "clip_len": spec.clip_len, "frame_step": spec.frame_step, "stride": spec.stride,
            "tail": spec.tail, "precision": engine_kwargs(o)["precision"]}


def _folder_meta(net, o: dict) -> dict:
    """What every feature file says of the model and clips it came from (precision aside: outputs do not depend
    on where they were computed)."""
    return {**{k: v for k, v in _model_meta(net, o).items() if k != "precision"}, "fps": o["fps"]}


# ---------------------------------------------------------------------------------------------- classify
@click.command("classify")
@engine_options
@click.option("--topk", "-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--per-clip", is_flag=True, help="Also print every clip's top-k.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the full result here ('-': standard output; the table then goes to standard error).")
@click.option("--probs", is_flag=True, help="In --json, also every class probability (per video and clip).")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Timeline picture (.png/.svg) of the top classes per clip; several videos: one file each.")
@click.option("--two-stream", is_flag=True,
              help="Also run the flow stream on TV-L1 flow of each video (pip install 'hub3d[flow]') and average "
                   "the RGB and flow softmaxes per clip, as the I3D paper.")
@click.option("--flow-model", help="With --two-stream: the flow model [MODEL_flow, e.g. i3d -> i3d_flow; same "
              "--pretrained].")
@output_errors
def classify(videos, topk, per_clip, json_path, probs, plot, two_stream, flow_model, **o):
    """Top-k actions of each video (mean of the clip softmaxes).

    VIDEOS: files, directories (searched recursively), globs, or a list file (@list.txt).
    """
    from hub3d.inference import FailedVideo, iter_classify, iter_classify_two_stream
    from hub3d.outputs import ResultsJson

    if flow_model and not two_stream:
        raise click.UsageError("--flow-model goes with --two-stream")
    if two_stream and o["runtime"] != "torch":
        raise click.UsageError("--two-stream runs torch models: drop --runtime onnxruntime")

    paths, failures = collect_videos(videos)
    for item, error in failures:
        report_failure(item, error)
    if o["skip_existing"] and not json_path:
        click.echo("note: --skip-existing needs --json to know what is done; classifying everything", err=True)
    results = ResultsJson(json_path, {}, resume=o["skip_existing"], per_clip=True, clip_topk=topk,
                          probs=probs)  # checks the output is writable before the model loads
    net, runtime = load_runtime(o, "probs")
    results.meta = _model_meta(net, o)
    flow_net = None
    if two_stream:
        flow_model = flow_model or f"{o['model']}_flow"
        flow_net = load_model(flow_model, o["pretrained"], o["quiet"])
        if flow_net.pretrained_cfg.modality != "flow" or net.pretrained_cfg.modality != "rgb":
            raise click.UsageError(f"--two-stream needs an RGB --model and a flow --flow-model; {o['model']} takes "
                                   f"{net.pretrained_cfg.modality}, {flow_model} {flow_net.pretrained_cfg.modality}")
        results.meta["flow_model"] = flow_model
    require_flow_extra(flow_net or net, paths)
    if results.done:
        paths = [p for p in paths if p not in results.done]
        if not o["quiet"]:
            click.echo(f"{json_path}: {len(results.done)} video(s) already done, {len(paths)} to go", err=True)
    for v, e in failures:
        results.fail(v, e)

    show = click.echo if o["quiet"] else _write_above_bar
    if json_path == "-":  # standard output holds the JSON alone
        show = functools.partial(click.echo, err=True) if o["quiet"] else functools.partial(_write_above_bar,
                                                                                            file=sys.stderr)
    n_ok, partial = 0, []
    with results:  # also on Ctrl-C and errors: the file lists every video done
        if flow_net is not None:
            stream = iter_classify_two_stream(net, flow_net, paths, topk=topk, **engine_kwargs(o))
        else:
            stream = iter_classify(net, paths, topk=topk, **{**engine_kwargs(o), **runtime})
        for r in stream:
            if isinstance(r, FailedVideo):
                report_failure(r.video, r.error)
                failures.append((r.video, r.error))
                results.fail(r.video, r.error)
                continue
            n_ok += 1
            note_partial(r, partial)
            results.add(r)
            show(format_video(r, per_clip, topk))
            if plot:
                _plot(r, plot, paths, o)
    finish(failures, n_ok, o["quiet"], partial, o["allow_partial"])


def _plot(result, plot, paths, o):
    from hub3d import plots

    target = plots.plot_path(plot, result.video, paths)
    if hasattr(result, "features"):
        plots.plot_similarity(result, target)
    else:
        plots.plot_timeline(result, target)
    if not o["quiet"]:
        _write_above_bar(f"wrote {target}")


def require_flow_extra(net, paths) -> None:
    """A flow model that will compute TV-L1 flow fails now, once, when the flow extra is missing (not per video)."""
    from hub3d.errors import VideoError
    from hub3d.video import is_flow_folder

    def stored(path):
        try:
            return is_flow_folder(path)
        except VideoError:
            return True  # a broken flow folder: the engine reports it, naming the image

    if getattr(getattr(net, "pretrained_cfg", None), "modality", "rgb") != "flow" or all(map(stored, paths)):
        return  # nothing to compute: RGB, or stored flow folders only
    from hub3d.errors import MissingExtraError
    from hub3d.flow import tvl1

    try:
        tvl1()
    except MissingExtraError as e:
        raise click.ClickException(str(e)) from None


def load_runtime(o: dict, head: str):
    """(model, extra engine kwargs): a torch model, or with --runtime onnxruntime an OnnxRunner, which carries the
    exported file's preprocessing and labels (the engine reads them as a model's) and runs the batches."""
    if o["runtime"] == "torch":
        return load_model(o["model"], o["pretrained"], o["quiet"]), {}
    if o["precision"] != "fp32" or (o["device"] or "cpu") != "cpu":
        raise click.UsageError("--runtime onnxruntime runs on cpu in fp32: drop --device/--precision")
    from hub3d.errors import ExportError
    from hub3d.exporter import OnnxRunner, check_input_shape, default_clip

    try:
        runner = OnnxRunner(o["model"], head=head, threads=o["threads"])
    except (ExportError, ImportError, OSError) as e:
        raise click.ClickException(f"--runtime onnxruntime --model {o['model']}: {e}") from e
    if len(runner.inputs) == 1:  # refuse a clip shape the file cannot run before decoding anything
        t, h, w = default_clip(runner)
        spec = runner.inputs[0]
        try:
            check_input_shape((1, spec["shape"][1], o["clip_len"] or t, h, w), spec, o["model"])
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    return runner, {"runner": runner, "device": "cpu"}


def _write_above_bar(text: str, file=None) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=file or sys.stdout)


def format_video(r, per_clip: bool, topk: int) -> str:
    span = f"{r.clip_seconds[0, 0]:.2f}-{r.clip_seconds[-1, 1]:.2f} s" if r.n_clips else "-"
    cut = "" if r.complete else f", INCOMPLETE: {r.decoded_seconds or 0:.2f} of {r.declared_seconds or 0:.2f} s"
    lines = [f"{r.video}  ({r.n_clips} clip{'s' if r.n_clips != 1 else ''}, {span}{cut})"]
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
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="One file per video (each describing itself) + hub3d-index.csv / hub3d-index.json.")
@click.option("--format", "fmt", type=click.Choice(["npy", "npz"]), default="npy", show_default=True,
              help="File type in --out-dir (npz also holds clip_frames and clip_seconds).")
@click.option("--per-video-mean", is_flag=True, help="Average the clip features of each video: (D,) per video.")
@click.option("--layer", help="A named layer's output instead of the pooled pre-logits vector (`hub3d info MODEL` "
              "lists them; case-insensitive).")
@click.option("--pool", type=click.Choice(["avg", "max", "none"]), default="avg", show_default=True,
              help="With --layer: pool the map over T, H, W per clip, or keep it whole (none).")
@click.option("--root", type=click.Path(file_okay=False),
              help="In --out-dir, name outputs by their path below this folder [the video's file name].")
@click.option("--rebuild-index", type=click.Path(file_okay=False, exists=True), is_eager=True, expose_value=False,
              callback=lambda ctx, _, d: _rebuild_index(ctx, d),
              help="Rewrite DIR's index from its feature files alone (after a crash or a lost index), and exit.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Clip similarity picture (.png/.svg: cosine matrix + PCA); several videos: one file each.")
@dataset_options  # datasets: --shard, --ray, --manifest, --merge-index (hub3d/cli/dataset.py)
@output_errors
def features(videos, out, out_dir, fmt, per_video_mean, root, layer, pool, plot, **o):
    """Clip features (the pooled vector before the classifier) of each video.

    VIDEOS: files, directories (searched recursively), globs, or a list file (@list.txt).
    """
    o["partial"] = []
    if bool(out) == bool(out_dir):
        raise click.UsageError("give exactly one of --out FILE or --out-dir DIR")
    if out and Path(out).suffix.lower() not in (".npy", ".npz"):
        raise click.UsageError(f"--out {out}: use a .npy or .npz file name")
    o["layer"], o["pool"] = layer, None if pool == "none" else pool
    paths, failures = collect_videos(videos)
    for item, error in failures:
        report_failure(item, error)
    if root and not out_dir:
        raise click.UsageError("--root names the files of --out-dir")
    if out and len(paths) > 1 and not per_video_mean:
        raise click.UsageError(f"{len(paths)} videos: use --out-dir DIR (one file per video), or --per-video-mean "
                               "to write one (n_videos, D) array to --out")
    o["plot"], o["paths"] = plot, paths
    if out:
        n_ok = _features_to_file(paths, out, per_video_mean, failures, o)
    elif wants_dataset(o):  # shards / Ray / manifest: hub3d.distributed
        n_ok = run_dataset(paths, out_dir, fmt, per_video_mean, failures, o, engine=engine_kwargs(o),
                           load=load_model, report=report_failure, meta=lambda net: _folder_meta(net, o))
    else:
        n_ok = _features_to_dir(paths, out_dir, fmt, per_video_mean, root, failures, o)
    finish(failures, n_ok, o["quiet"], o["partial"], o["allow_partial"])


def _rebuild_index(ctx, out_dir):
    if out_dir is None or ctx.resilient_parsing:
        return
    from hub3d.errors import OutputError
    from hub3d.outputs import INDEX_NAME, rebuild_index

    try:
        n, damaged = rebuild_index(out_dir)
    except (OutputError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    for name, why in damaged.items():
        click.echo(f"warning: {Path(out_dir) / name}: {why}; left out of the index (run again to redo it)", err=True)
    click.echo(f"{Path(out_dir) / INDEX_NAME}: {n} feature file(s) indexed", err=True)
    ctx.exit(0)


def _run_features(net, paths, per_video_mean, failures, o):
    from hub3d.inference import FailedVideo, iter_extract_features

    try:
        layer = None if o["layer"] is None else net.resolve_layer(o["layer"])
    except ValueError as e:
        raise click.UsageError(f"--layer: {e}") from None
    require_flow_extra(net, paths)
    for r in iter_extract_features(net, paths, per_video_mean=per_video_mean, layer=layer, pool=o["pool"],
                                   **{**engine_kwargs(o), **o.get("runtime_kwargs", {})}):
        if isinstance(r, FailedVideo):
            report_failure(r.video, r.error)
            failures.append((r.video, r.error))
        else:
            note_partial(r, o["partial"])
            if o["plot"]:
                _plot(r, o["plot"], o["paths"], o)
            yield r


def _features_to_file(paths, out, per_video_mean, failures, o) -> int:
    from hub3d.io import check_writable
    from hub3d.outputs import write_feature_file

    if o["skip_existing"] and os.path.exists(out):
        click.echo(f"{out} exists; skipped (--skip-existing)", err=True)
        return 0
    check_writable(Path(os.path.abspath(out)).parent)
    net, o["runtime_kwargs"] = load_runtime(o, "features")
    results = list(_run_features(net, paths, per_video_mean, failures, o))
    if not results:
        return 0
    write_feature_file(out, results, per_video_mean=per_video_mean, single=len(paths) == 1)
    if not o["quiet"]:
        click.echo(f"wrote {out}", err=True)
    return len(results)


def _features_to_dir(paths, out_dir, fmt, per_video_mean, root, failures, o) -> int:
    """One file per video + hub3d-index.csv / hub3d-index.json (hub3d.outputs.FeatureFolder)."""
    from hub3d.outputs import FeatureFolder

    try:
        folder = FeatureFolder(out_dir, paths, fmt=fmt, per_video_mean=per_video_mean, resume=o["skip_existing"],
                               root=root)
    except ValueError as e:  # a video outside --root
        raise click.UsageError(str(e)) from None
    if o["skip_existing"] and not o["quiet"]:
        click.echo(f"{out_dir}: {len(paths) - len(folder.todo)} video(s) already done, {len(folder.todo)} to go",
                   err=True)
    if folder.todo:
        net, o["runtime_kwargs"] = load_runtime(o, "features")
        folder.meta = _folder_meta(net, o)
    with folder:  # also on Ctrl-C and errors: the index lists every file written
        for r in _run_features(net, folder.todo, per_video_mean, failures, o) if folder.todo else ():
            folder.add(r)
    if not o["quiet"]:
        click.echo(f"wrote {folder.written} file(s) and the index to {out_dir}", err=True)
    return folder.written + len(paths) - len(folder.todo)


COMMANDS = [classify, features]
