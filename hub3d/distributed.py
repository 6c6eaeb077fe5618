"""Features for a whole dataset: one process, shards (``--shard I/N``, torchrun, Slurm arrays) or Ray Data.

Every path writes one file per video into ``out_dir`` (atomically, named by :func:`hub3d.io.output_names` over
the WHOLE list, so every shard agrees) and a record per video into ``out_dir/manifest.jsonl``
(:mod:`hub3d.manifest`). Resume is always on: a video whose done record matches its file's sha256 is never
recomputed nor overwritten. The index (index.json / index.csv, the format of ``hub3d features --out-dir``) is
built from the manifest, once every video of the plan is done: by the run itself, by the last shard to finish,
or by :func:`merge_index` (``hub3d features --merge-index DIR``), which lists the missing videos otherwise.

Shards: shard i of n takes ``sorted(videos)[i::n]`` (round robin over the sorted list: deterministic in every
process, and long and short videos of a folder spread evenly).

Ray (``pip install "hub3d[ray]"``): rows are CLIPS. Decoding + preprocessing run in CPU tasks (one input block
per video, so a crashed decoder costs that video only), the model in an actor pool (``map_batches`` with a
class: ``num_gpus=1`` per replica on GPUs), and the driver regroups the returned clip features per video and
writes the outputs. Rows of whole videos would hold every clip of a video in the object store at once (a one
hour video: ~5600 clips of 2.4 MB at 16x112x112), and chunks of a video sent to different replicas need
regrouping anyway; clip rows keep memory at a few blocks per worker whatever the video lengths, the model sees
exactly ``batch_size`` clips as in one process, and regrouping is cheap because what comes back is features
(D floats per clip). A replica that dies is restarted and its batch retried up to ``max_retries`` times (Ray's
``max_task_retries``; decode tasks: ``max_retries``); after that the block is dropped (``max_errored_blocks``
unlimited) and its videos are recorded failed ("partial" when some of their clips came back).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Union

from .errors import ConfigError, IncompleteError
from .manifest import (
    Manifest,
    sha256_file,
    spec_record,
    summary_record,
    video_record,
    worker_info,
)
from .outputs import write_output

PathLike = Union[str, os.PathLike]
PLAN_NAME = "manifest.plan.json"


# ------------------------------------------------------------------------------------------------ shards
def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (0-based I) -> (I, N)."""
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"shard {text!r}: expected I/N, e.g. 0/4 (0-based)") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard {text!r}: need 0 <= I < N")
    return i, n


def shard_from_env(env=None) -> tuple[int, int] | None:
    """(index, count) from torchrun (RANK, WORLD_SIZE) or a Slurm array, else None.

    Slurm: SLURM_ARRAY_TASK_ID runs from SLURM_ARRAY_TASK_MIN (0, 1 or anything) in steps of
    SLURM_ARRAY_TASK_STEP; index = (ID - MIN) // STEP of SLURM_ARRAY_TASK_COUNT.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        return parse_shard(f"{env['RANK']}/{env['WORLD_SIZE']}")
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
        low, step = int(env.get("SLURM_ARRAY_TASK_MIN", 0)), int(env.get("SLURM_ARRAY_TASK_STEP", 1) or 1)
        index = (task - low) // step
        if not 0 <= index < count:
            raise ConfigError(f"Slurm array task {task} (min {low}, step {step}) is not one of {count} tasks")
        return index, count
    return None


def shard_videos(videos: Sequence[str], index: int, count: int) -> list[str]:
    return sorted(videos)[index::count]


# ----------------------------------------------------------------------------------------------- index
def write_index(out_dir: PathLike, records: Sequence[dict], per_video_mean: bool, fmt: str) -> None:
    """The feature folder's index from done manifest records: hub3d.outputs' index, as ``hub3d features --out-dir``
    writes it (from the outputs' own descriptions, which every output carries)."""
    from .outputs import read_description
    from .outputs import write_index as write_folder_index

    entries = []
    for r in records:
        entry = read_description(Path(out_dir) / r["file"])
        entry["file"] = r["file"]
        entries.append(entry)
    write_folder_index(out_dir, entries, per_video_mean)


def merge_index(out_dir: PathLike) -> dict:
    """Write DIR's index from its manifest once every planned video has been tried (else IncompleteError).

    Videos recorded failed are left out of the index (as ``hub3d features`` does). Returns
    ``{"done": n_videos_in_index, "failed": {video: error}}``.
    """
    import json

    out_dir = Path(out_dir)
    try:
        plan = json.loads((out_dir / PLAN_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{out_dir}: no {PLAN_NAME}; is this a directory written with a manifest "
                                "(--shard, --ray, --manifest)?") from None
    manifest = Manifest(out_dir)
    latest = manifest.latest()
    missing, failed, done = {}, {}, []
    for v in plan["videos"]:
        r = latest.get(v)
        if r is None:
            missing[v] = "not started"
        elif r.get("status") != "done":
            failed[v] = f"{r['status']}: {r.get('error')}"
        elif not manifest.verified(r):
            missing[v] = "its output file is missing or changed since it was recorded"
        else:
            done.append(r)
    if missing:
        raise IncompleteError(out_dir, missing)
    write_index(out_dir, done, plan["per_video_mean"], plan["format"])
    return {"done": len(done), "failed": failed}


def _write_plan(out_dir: Path, videos: list[str], fmt: str, per_video_mean: bool, shards: int) -> None:
    import json

    from . import io

    plan = {"videos": videos, "format": fmt, "per_video_mean": per_video_mean, "shards": shards}
    path = out_dir / PLAN_NAME
    try:
        if json.loads(path.read_text(encoding="utf-8")) == plan:
            return  # every shard writes the same plan; skip rewriting a large one
    except (FileNotFoundError, ValueError):
        pass
    io.write_json(path, plan, indent=None)


# ------------------------------------------------------------------------------------------------ driver
class _Writer:
    """Saves finished videos, appends their records, and counts videos/s and clips/s for the bar and summary."""

    def __init__(self, out_dir, names, manifest, model_name, tag, spec, per_video_mean, worker, total, progress,
                 meta=None):
        self.meta = meta if meta is not None else {"model": model_name, "tag": tag}  # described in each output
        self.out_dir, self.names, self.manifest = out_dir, names, manifest
        self.model_name, self.tag, self.spec, self.per_video_mean, self.worker = (
            model_name, tag, spec, per_video_mean, worker)
        self.t0 = time.monotonic()
        self.n_done = self.n_failed = self.n_clips = 0
        self.failed: dict[str, str] = {}
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="video", dynamic_ncols=True, desc="features")

    def done(self, result, started: float | None, worker: dict | None = None) -> None:
        name = self.names[result.video]
        target = self.out_dir / name
        write_output(self.out_dir, name, result, per_video_mean=self.per_video_mean,
                     meta=self.meta)
        self.manifest.append(video_record(
            "done", result.video, file=name, sha256=sha256_file(target), n_clips=result.n_clips,
            model=self.model_name, tag=self.tag, spec=self.spec, worker=worker or self.worker, started=started,
            clip_frames=result.clip_frames.tolist(), clip_seconds=result.clip_seconds.tolist()))
        self.n_done += 1
        self.n_clips += result.n_clips
        self._tick()

    def fail(self, video: str, error: str, started: float | None = None, status: str = "failed",
             n_clips: int | None = None) -> None:
        self.manifest.append(video_record(status, video, n_clips=n_clips, model=self.model_name, tag=self.tag,
                                          spec=self.spec, error=error, worker=self.worker, started=started))
        self.n_failed += 1
        self.failed[video] = error
        self._tick()

    def _tick(self):
        if self.bar is not None:
            dt = max(time.monotonic() - self.t0, 1e-9)
            self.bar.set_postfix(videos_s=f"{self.n_done / dt:.2f}", clips_s=f"{self.n_clips / dt:.1f}",
                                 failed=self.n_failed, refresh=False)
            self.bar.update(1)

    def close(self, **extra) -> dict:
        if self.bar is not None:
            self.bar.close()
        rec = summary_record(self.n_done, self.n_failed, self.n_clips, time.monotonic() - self.t0,
                             worker=self.worker, model=self.model_name, **extra)
        self.manifest.append(rec)
        return rec


def extract_dataset(
    videos: Sequence[PathLike],
    out_dir: PathLike,
    model,
    *,
    pretrained=None,
    model_name: str | None = None,
    fmt: str = "npy",
    per_video_mean: bool = False,
    spec=None,
    clip_len: int | None = None,
    frame_step: int | None = None,
    stride: int | None = None,
    tail: str | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    batch_size: int = 8,
    device=None,
    precision: str = "fp32",
    num_workers: int | None = None,
    threads: int | None = None,
    shard: None | str | tuple = "auto",
    ray: None | bool | str = None,
    replicas: int | None = None,
    max_retries: int = 2,
    progress: bool = True,
    meta: dict | None = None,
) -> dict:
    """Clip features of every video into ``out_dir`` (one file each), resumable, with a manifest.

    model: a hub3d model, or a name / path given to :func:`hub3d.load` (with ``pretrained``).
    spec / clip_len / frame_step / stride / tail / fps / start / end: the clips, as :func:`hub3d.extract_features`
    (hub3d.specs.resolve_clip_spec); batch_size / device / precision / threads: as there too.
    shard: "auto" (torchrun / Slurm array variables, else everything), None (everything), (i, n) or "i/n".
    ray: None/False: this process; True: Ray at $RAY_ADDRESS or a new local cluster; a string: that address.
    num_workers: decoders per model replica (threads here, CPU tasks under Ray) [cpu: 1, 2 with bf16 (not under Ray: 1); GPUs: 4].
    replicas: Ray model actors [one per GPU; on CPUs one per 4 CPUs]. max_retries: Ray retries per batch.
    Returns the run's summary record plus ``failed`` (video -> error) and ``index`` (written or not).
    """
    if fmt not in ("npy", "npz"):
        raise ConfigError(f"fmt must be 'npy' or 'npz', not {fmt!r}")
    from . import io
    from .specs import resolve_clip_spec

    if isinstance(model, (str, os.PathLike)):
        from .loader import load

        model_name = model_name or os.fspath(model)
        model = load(os.fspath(model), pretrained=pretrained)
    model_name = model_name or getattr(model, "arch_name", type(model).__name__)
    clips = resolve_clip_spec(spec if spec is not None else model, clip_len=clip_len, frame_step=frame_step,
                              stride=stride, tail=tail, fps=fps, start=start, end=end)
    record = spec_record(clips, precision=precision, fmt=fmt, per_video_mean=per_video_mean)
    if pretrained is not None:
        record["weights"] = str(pretrained)
    videos = [os.fspath(v) for v in videos]
    out_dir = Path(out_dir)
    names = dict(zip(videos, io.output_names(videos, "." + fmt)))
    manifest = Manifest(out_dir)

    if ray:
        shard = None
    elif shard == "auto":
        shard = shard_from_env()
    elif isinstance(shard, str):
        shard = parse_shard(shard)
    index, count = shard or (0, 1)
    mine = shard_videos(videos, index, count) if count > 1 else list(videos)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_plan(out_dir, videos, fmt, per_video_mean, count)

    finished = manifest.finished(mine, model_name, record)
    todo = [v for v in mine if v not in finished]
    worker = worker_info(rank=index if count > 1 else None, shards=count if count > 1 else None)
    writer = _Writer(out_dir, names, manifest, model_name, model.pretrained_cfg.tag, record, per_video_mean, worker,
                     len(todo), progress, meta)
    engine = dict(batch_size=batch_size, device=device, precision=precision, num_workers=num_workers,
                  threads=threads)
    try:
        if todo and ray:
            from .ray_backend import run_ray

            run_ray(model, todo, writer, clips, engine, address=None if ray is True else ray, replicas=replicas,
                    max_retries=max_retries)
        elif todo:
            _run_local(model, todo, writer, clips, engine, per_video_mean)
    finally:
        summary = writer.close(shard=[index, count], skipped=len(finished), ray=bool(ray))
    try:
        merge_index(out_dir)
        wrote_index = True
    except IncompleteError:
        wrote_index = False  # other shards (or failed videos) still to come
    return {**summary, "failed": writer.failed, "index": wrote_index}


def _run_local(model, todo, writer: _Writer, spec, engine: dict, per_video_mean: bool) -> None:
    from .inference import FailedVideo, iter_extract_features

    started = time.time()
    for r in iter_extract_features(model, todo, per_video_mean=per_video_mean, spec=spec, on_error="skip",
                                   progress=False, **engine):
        # The engine decodes ahead, so a video's start is only known to within the previous result.
        if isinstance(r, FailedVideo):
            writer.fail(r.video, r.error, started)
        else:
            writer.done(r, started)
        started = time.time()


__all__ = ["IncompleteError", "extract_dataset", "merge_index", "parse_shard", "shard_from_env", "shard_videos",
           "write_index"]
