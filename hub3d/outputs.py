"""Result files of whole runs, with resume: the classification JSON, a feature folder with its index, and a
single feature file. The CLI drives these; library users can too. Every write is atomic (hub3d.io), and the
files are kept current while a run goes on (rewritten at most every ``every`` seconds, and at the end, also
on Ctrl-C and errors), so an interrupted run resumes where it stopped.

May import: numpy, hub3d.io, hub3d.inference (result types).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import io
from .inference import FeatureResult, VideoResult

INDEX_FIELDS = ["video", "file", "row", "frame_start", "frame_end", "start_s", "end_s"]


class _Periodic:
    """Context manager calling self.save() at most every ``every`` seconds via tick(), and always on exit."""

    every = 2.0
    _last = 0.0

    def tick(self) -> None:
        if time.monotonic() - self._last > self.every:
            self.save()
            self._last = time.monotonic()

    def save(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.save()
        return False


class ResultsJson(_Periodic):
    """``{**meta, "videos": [VideoResult.to_dict(...)], "failed": [{"video", "error"}]}`` at ``path``.

    resume=True keeps the videos an earlier run of the same file finished (``done``); failures are retried.
    path None: nothing is written (results are only collected).
    """

    def __init__(self, path, meta: dict, *, resume: bool = False, **to_dict_options):
        self.path = None if path is None else os.fspath(path)
        self.meta = dict(meta)
        self.options = to_dict_options
        self.entries: dict[str, dict] = {}
        self.failed: list[dict] = []
        if resume and self.path and os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                previous = json.load(f)
            self.entries = {e["video"]: e for e in previous.get("videos", [])}

    @property
    def done(self) -> set:
        return set(self.entries)

    def add(self, result: VideoResult) -> None:
        self.entries[result.video] = result.to_dict(**self.options)
        self.tick()

    def fail(self, video: str, error: str) -> None:
        self.failed.append({"video": video, "error": error})

    def save(self) -> None:
        if self.path:
            io.write_json(self.path, {**self.meta, "videos": list(self.entries.values()), "failed": self.failed})


class FeatureFolder(_Periodic):
    """One feature file per video (named after its path below the videos' common folder) in ``out_dir``, and
    ``index.json`` / ``index.csv`` listing each file with its clips' frame and second ranges.

    resume=True: a video whose file exists is done (its index entry kept, or read back from the file).
    """

    def __init__(self, out_dir, videos: Sequence[str], *, fmt: str = "npy", per_video_mean: bool = False,
                 resume: bool = False):
        if fmt not in ("npy", "npz"):
            raise ValueError(f"feature files are npy or npz, not {fmt!r}")
        self.out_dir = Path(out_dir)
        self.videos = list(videos)
        self.per_video_mean = per_video_mean
        self.mean_only = per_video_mean and fmt == "npy"  # such files hold the (D,) mean, not clip rows
        self.names = dict(zip(self.videos, io.output_names(self.videos, "." + fmt)))
        self.index_json = self.out_dir / "index.json"
        previous = {}
        if self.index_json.exists():
            with open(self.index_json, encoding="utf-8") as f:
                previous = {e["video"]: e for e in json.load(f).get("videos", [])}
        self.entries: dict[str, dict] = {}
        self.todo: list[str] = []
        for v in self.videos:
            target = self.out_dir / self.names[v]
            if resume and target.exists():
                self.entries[v] = previous.get(v) or _entry_from_file(v, self.names[v], target)
            else:
                self.todo.append(v)
        self.written = 0

    def add(self, result: FeatureResult) -> None:
        name = self.names[result.video]
        result.save(self.out_dir / name, mean=self.per_video_mean)
        self.entries[result.video] = index_entry(result.video, name, result.n_clips, result.clip_frames.tolist(),
                                                 result.clip_seconds.tolist(), self.mean_only)
        self.written += 1
        self.tick()

    def save(self) -> None:
        ordered = [self.entries[v] for v in self.videos if v in self.entries]
        write_index(self.out_dir, ordered, per_video_mean=self.per_video_mean, mean_only=self.mean_only)


def index_entry(video: str, file: str, n_clips: int, clip_frames, clip_seconds, mean_only: bool) -> dict:
    """A video's entry in index.json: its file, its rows (1 when the file holds the (D,) mean), its clips."""
    return {"video": video, "file": file, "rows": 1 if mean_only else n_clips, "clip_frames": clip_frames,
            "clip_seconds": clip_seconds}


def write_index(out_dir, entries: Sequence[dict], *, per_video_mean: bool, mean_only: bool) -> None:
    """``index.json`` (the entries, in order) and ``index.csv`` (one row per clip) of a feature folder; written
    by FeatureFolder and, from the manifest, by hub3d.distributed.merge_index."""
    out_dir = Path(out_dir)
    io.write_json(out_dir / "index.json", {"videos": list(entries), "per_video_mean": per_video_mean})
    rows = []
    for e in entries:
        for i, (f, s) in enumerate(zip(e.get("clip_frames") or [], e.get("clip_seconds") or [])):
            rows.append({"video": e["video"], "file": e["file"], "row": "" if mean_only else i,
                         "frame_start": f[0], "frame_end": f[1], "start_s": s[0], "end_s": s[1]})
    io.write_csv(out_dir / "index.csv", rows, INDEX_FIELDS)


def _entry_from_file(video, name, target: Path) -> dict:
    """Index entry of an output written by an earlier run whose index is gone: read back what the file holds."""
    if target.suffix == ".npz":
        with np.load(target) as z:
            return {"video": video, "file": name, "rows": int(np.atleast_2d(z["features"]).shape[0]),
                    "clip_frames": z["clip_frames"].tolist(), "clip_seconds": z["clip_seconds"].tolist()}
    arr = np.load(target, mmap_mode="r")
    return {"video": video, "file": name, "rows": int(np.atleast_2d(arr).shape[0]), "clip_frames": None,
            "clip_seconds": None}


def write_feature_file(out, results: Sequence[FeatureResult], *, per_video_mean: bool = False,
                       single: Optional[bool] = None) -> None:
    """One video: its (n_clips, D) features (or (D,) mean) as .npy / .npz. Several (per-video means): one
    (n_videos, D) array, one row per video, with ``STEM.index.csv`` / ``STEM.index.json`` naming the rows."""
    out = os.fspath(out)
    single = len(results) == 1 if single is None else single
    if single:
        results[0].save(out, mean=per_video_mean)
        return
    if not per_video_mean:
        raise ValueError(f"{out}: several videos in one file need per_video_mean=True")
    means = [r.mean_features if r.mean_features is not None else r.features.mean(0) for r in results]
    rows = [{"row": i, "video": r.video, "clips": r.n_clips} for i, r in enumerate(results)]
    if out.lower().endswith(".npz"):
        io.write_npz(out, features=means, videos=[r.video for r in results])
    else:
        io.write_npy(out, means)
    stem = str(Path(out).with_suffix(""))
    io.write_csv(stem + ".index.csv", rows, ["row", "video", "clips"])
    io.write_json(stem + ".index.json", rows)


__all__ = ["FeatureFolder", "INDEX_FIELDS", "ResultsJson", "index_entry", "write_feature_file", "write_index"]
