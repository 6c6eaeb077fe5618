"""The Ray Data pipeline behind ``extract_dataset(..., ray=...)`` (design and failure handling: hub3d.distributed).

videos --(CPU tasks: decode + preprocess, one block per video)--> clip rows --(actor pool: the model)-->
clip feature rows --(driver: regroup per video, write, manifest)--> files.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from typing import Optional

import numpy as np

from .errors import MissingExtraError

MAX_BLOCKS = 20_000  # input blocks (one video each up to this): more only burdens Ray's scheduler
# "complete", "decoded", "declared": the video's Coverage (read on its last row; NaN: unknown)
ROW_KEYS = ("vid", "index", "last", "frames", "seconds", "error", "started", "complete", "decoded", "declared")


def require_ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingExtraError("ray", "hub3d --ray (Ray Data)", str(e)) from None
    return ray


def _clip_shapes(spec) -> dict:
    """{column: clip shape}: "clip" (all T frames), and "clip_slow" (T // alpha) for two-pathway models."""
    crop = spec.crop_size if isinstance(spec.crop_size, tuple) else (spec.crop_size, spec.crop_size)
    shapes = {"clip": (spec.channels, spec.clip_len, *crop)}
    if spec.pathway_alpha:
        shapes["clip_slow"] = (spec.channels, spec.clip_len // spec.pathway_alpha, *crop)
    return shapes


def _clip_columns(clip) -> dict:
    """A Clip's input as row columns: SlowFast's [slow, fast] -> clip_slow, clip (fixed-shape numpy columns)."""
    if isinstance(clip, (list, tuple)):
        slow, fast = clip
        return {"clip": fast.numpy(), "clip_slow": slow.numpy()}
    return {"clip": clip.numpy()}


def _row(vid, started, clips: dict, index=-1, last=False, frames=(0, 0), seconds=(0.0, 0.0), error=""):
    return {"vid": vid, "index": index, "last": last, "frames": np.asarray(frames, np.int64),
            "seconds": np.asarray(seconds, np.float64), **clips, "error": error, "started": started,
            "complete": True, "decoded": np.nan, "declared": np.nan}


def _seconds_or_none(value) -> Optional[float]:
    return None if value is None or np.isnan(value) else float(value)


def decode_video(row, *, spec, shapes):
    """flat_map: one video -> its clip rows (the last one flagged), or one error row (zero clips)."""

    from .clips import spec_clips
    from .inference import _as_video_error, _no_clip_hint, set_torch_threads
    from .video import Coverage

    set_torch_threads(1)  # a decoder is one CPU; as the local engine's decode threads
    vid, video, started = int(row["vid"]), str(row["video"]), time.time()
    prev = None
    coverage = Coverage()
    try:
        for c in spec_clips(video, spec, coverage):
            if prev is not None:
                yield prev
            prev = _row(vid, started, _clip_columns(c.clip), c.index, False, c.frames, c.seconds)
        if prev is None:
            raise ValueError("no clips" + _no_clip_hint(spec))
    except Exception as e:  # noqa: BLE001  (this video fails, reported by path; the others go on)
        yield _row(vid, started, {k: np.zeros(v, np.float32) for k, v in shapes.items()},
                   error=str(_as_video_error(video, e)))
        return
    prev["last"] = True
    prev["complete"] = coverage.complete
    prev["decoded"], prev["declared"] = (np.nan if v is None else v
                                         for v in (coverage.decoded_seconds, coverage.declared_seconds))
    yield prev


class FeatureActor:
    """map_batches class: one model replica (on a GPU when given one); error rows pass through."""

    def __init__(self, model_ref, device=None, precision="fp32", batch_size=8, threads=None):
        import ray

        from .inference import ClipRunner, set_torch_threads
        from .specs import resolve_run_spec

        model = ray.get(model_ref[0])
        if threads:
            set_torch_threads(threads)
        # "auto": the GPU Ray gave this actor, else its CPU. for_run: the engine's runner, padding included.
        run = resolve_run_spec(model, device=device or "auto", precision=precision, batch_size=batch_size)
        self.runner = ClipRunner.for_run(model, "features", run)
        self.dim = int(getattr(model, "num_features", 0))
        # Named in the manifest's worker field (host/pid/actor id) of the videos this replica finishes.
        self.name = f"{socket.gethostname()}/{os.getpid()}/{ray.get_runtime_context().get_actor_id()}"

    def __call__(self, batch: dict) -> dict:
        import torch

        ok = np.asarray([not e for e in batch["error"]], bool)
        feats = np.zeros((len(ok), self.dim), np.float32)
        if ok.any():
            x = torch.from_numpy(np.ascontiguousarray(batch["clip"][ok]))
            if "clip_slow" in batch:  # SlowFast: [slow, fast], as the local engine collates them
                x = [torch.from_numpy(np.ascontiguousarray(batch["clip_slow"][ok])), x]
            out = self.runner(x)  # batch-independent outputs: see ClipRunner
            feats = np.zeros((len(ok), out.shape[1]), out.dtype)
            feats[ok] = out
        return {**{k: batch[k] for k in ROW_KEYS}, "features": feats, "actor": np.asarray([self.name] * len(ok))}


def run_ray(model, todo, writer, spec, engine: dict, *, address=None, replicas=None, max_retries=2) -> None:
    """Run ``todo`` through Ray Data; every video ends in ``writer`` as done, failed or partial."""
    ray = require_ray()
    from .inference import FeatureResult

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.max_errored_blocks, ctx.enable_progress_bars
    ctx.max_errored_blocks = -1  # a block that fails past its retries costs its videos, not the run
    ctx.enable_progress_bars = False  # hub3d's bar shows videos/s and clips/s
    try:
        res = ray.cluster_resources()
        device = engine.get("device")
        use_gpu = res.get("GPU", 0) >= 1 and not (device and str(device).startswith("cpu"))
        cpus = max(1, int(res.get("CPU", 1)))
        decoders = engine.get("num_workers") or (4 if use_gpu else 1)
        replicas = replicas or (int(res["GPU"]) if use_gpu else max(1, cpus // 4))
        model_cpus = 1 if use_gpu else max(1, cpus // replicas - decoders)
        ds = ray.data.from_items([{"vid": i, "video": v} for i, v in enumerate(todo)],
                                 override_num_blocks=min(len(todo), MAX_BLOCKS))
        model_ref = [ray.put(model)]  # once in the object store; each replica gets it from there
        with warnings.catch_warnings():
            # Ray 2.60 deprecates ray_remote_args but has no named parameter for the retry limits yet.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.flat_map(decode_video, fn_kwargs=dict(spec=spec, shapes=_clip_shapes(spec)),
                             compute=ray.data.TaskPoolStrategy(size=decoders * replicas), num_cpus=1,
                             max_retries=max_retries)
            ds = ds.map_batches(FeatureActor, batch_size=engine.get("batch_size", 8), batch_format="numpy",
                                fn_constructor_kwargs=dict(model_ref=model_ref, device=device if use_gpu else "cpu",
                                                           precision=engine.get("precision", "fp32"),
                                                           batch_size=engine.get("batch_size", 8),
                                                           threads=None if use_gpu else model_cpus),
                                compute=ray.data.ActorPoolStrategy(size=replicas), num_cpus=model_cpus,
                                num_gpus=1 if use_gpu else 0, max_restarts=-1, max_task_retries=max_retries)
        jobs: dict[int, dict] = {}
        closed: set[int] = set()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for j in range(len(batch["vid"])):
                vid = int(batch["vid"][j])
                if vid in closed:  # a retried task repeats rows already used
                    continue
                job = jobs.setdefault(vid, {"rows": {}, "frames": {}, "seconds": {}, "n": None,
                                            "started": float(batch["started"][j])})
                if batch["error"][j]:
                    closed.add(vid)
                    jobs.pop(vid)
                    writer.fail(todo[vid], str(batch["error"][j]), job["started"])
                    continue
                i = int(batch["index"][j])
                job["rows"][i], job["frames"][i], job["seconds"][i] = (
                    batch["features"][j], batch["frames"][j], batch["seconds"][j])
                if batch["last"][j]:
                    job["n"] = i + 1
                    job["coverage"] = dict(complete=bool(batch["complete"][j]),
                                           decoded_seconds=_seconds_or_none(batch["decoded"][j]),
                                           declared_seconds=_seconds_or_none(batch["declared"][j]))
                if job["n"] is not None and len(job["rows"]) == job["n"]:
                    closed.add(vid)
                    jobs.pop(vid)
                    order = range(job["n"])
                    feats = np.stack([job["rows"][k] for k in order])
                    writer.done(FeatureResult(
                        todo[vid], feats, np.stack([job["frames"][k] for k in order]).astype(np.int64),
                        np.stack([job["seconds"][k] for k in order]).astype(np.float64),
                        feats.mean(axis=0) if writer.per_video_mean else None, **job["coverage"]), job["started"],
                        worker={**writer.worker, "actor": str(batch["actor"][j])})
        for vid, video in enumerate(todo):
            if vid not in closed:  # its block failed past the retries (a worker died each time)
                n = len(jobs[vid]["rows"]) if vid in jobs else 0
                writer.fail(video, f"lost: a Ray worker died on it {max_retries + 1} time(s) "
                            f"({n} clip(s) had come back; see the Ray logs)",
                            jobs[vid]["started"] if vid in jobs else None,
                            status="partial" if n else "failed", n_clips=n or None)
    finally:
        ctx.max_errored_blocks, ctx.enable_progress_bars = saved
        if started_here:
            ray.shutdown()
