"""Result files of whole runs, with resume: the classification JSON, a feature folder with its index, and a
single feature file. The CLI drives these; library users can too. Every write is atomic (hub3d.io), and the
files are kept current while a run goes on (rewritten at most every ``every`` seconds, and at the end, also
on Ctrl-C and errors), so an interrupted run resumes where it stopped.

May import: numpy, hub3d.io, hub3d.inference (result types).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from . import io
from .inference import FeatureResult, VideoResult

INDEX_FIELDS = ["video", "file", "row", "frame_start", "frame_end", "start_s", "end_s", "complete"]


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
        self.to_stdout = self.path == "-"  # written once, at the end
        self.meta = dict(meta)
        self.options = to_dict_options
        self.entries: dict[str, dict] = {}
        self.failed: list[dict] = []
        self._closing = False
        if self.path and not self.to_stdout:
            io.check_writable(Path(os.path.abspath(self.path)).parent)
        if resume and self.path and not self.to_stdout and os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    previous = json.load(f)
                self.entries = {e["video"]: e for e in previous["videos"]}
            except (ValueError, KeyError, TypeError) as e:
                raise io.OutputError(self.path, f"exists and is not a hub3d results file ({type(e).__name__}: {e}); "
                                                "move it away, or drop --skip-existing to replace it") from None

    @property
    def done(self) -> set:
        return set(self.entries)

    def add(self, result: VideoResult) -> None:
        self.entries[result.video] = result.to_dict(**self.options)
        self.tick()

    def fail(self, video: str, error: str) -> None:
        self.failed.append({"video": video, "error": error})

    def save(self) -> None:
        data = {**self.meta, "videos": list(self.entries.values()), "failed": self.failed}
        if self.to_stdout:
            if self._closing:
                sys.stdout.write(json.dumps(data, indent=2, default=io._json_default, allow_nan=False) + "\n")
        elif self.path:
            io.write_json(self.path, data)

    def __exit__(self, *exc):
        self._closing = True
        return super().__exit__(*exc)


INDEX_NAME = "hub3d-index.json"  # hub3d-owned names: a user's own index.json / index.csv is never touched
INDEX_CSV = "hub3d-index.csv"
INDEX_FORMAT = "hub3d-features-index"
FILE_FORMAT = "hub3d-feature-file"  # the description each output carries (npz key / .npy sidecar)
NPZ_KEY = "hub3d"  # the npz member holding the description, as a JSON string


def sidecar_path(path) -> Path:
    """The description written next to a ``.npy`` output (``x.npy`` -> ``x.npy.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


class DamagedOutput(ValueError):
    """An output file that cannot be trusted: unreadable, cut short, or not described."""


def read_description(path) -> dict:
    """The description an output carries, checked against the data it describes; DamagedOutput says what is wrong."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if NPZ_KEY not in z.files:
                    raise DamagedOutput("not written by hub3d (no description inside)")
                desc = json.loads(str(z[NPZ_KEY]))
                rows = int(np.atleast_2d(z["features"]).shape[0])
        else:
            side = sidecar_path(path)
            if not side.exists():
                raise DamagedOutput(f"no description ({side.name} is missing)")
            desc = json.loads(side.read_text(encoding="utf-8"))
            array = np.load(path, allow_pickle=False)
            rows = int(np.atleast_2d(array).shape[0])
            if isinstance(desc, dict) and desc.get("sha256") != _digest(array):
                raise DamagedOutput(f"its data is not what {side.name} describes (a run stopped between the two)")
    except DamagedOutput:
        raise
    except Exception as e:  # noqa: BLE001  (cut short, not npy/npz, unreadable: all mean "redo it")
        raise DamagedOutput(f"unreadable or cut short ({type(e).__name__}: {e})") from None
    if not isinstance(desc, dict) or desc.get("format") != FILE_FORMAT or "video" not in desc:
        raise DamagedOutput("its description is not a hub3d feature file's")
    if desc.get("rows") != rows:
        raise DamagedOutput(f"holds {rows} rows, its description says {desc.get('rows')}")
    return desc


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class FeatureFolder(_Periodic):
    """One feature file per video in ``out_dir``, each describing itself (video, clip frames and seconds,
    coverage, model/tag/spec: inside the ``.npz``, or in a ``.npy.json`` sidecar written just before the
    ``.npy``), and ``hub3d-index.json`` / ``hub3d-index.csv`` listing them: always rebuilt from the files, so a
    crash or a lost index loses nothing (:func:`rebuild_index`).

    Names: the video's stem, or its path below ``root`` (see hub3d.io.output_names); an output already in
    ``out_dir`` keeps its video's name. resume=True: a video whose output is intact is done; a damaged one is
    redone, with a warning.
    """

    def __init__(self, out_dir, videos: Sequence[str], *, fmt: str = "npy", per_video_mean: bool = False,
                 resume: bool = False, root=None, meta: Optional[dict] = None):
        if fmt not in ("npy", "npz"):
            raise ValueError(f"feature files are npy or npz, not {fmt!r}")
        self.out_dir = Path(out_dir)
        self.videos = list(videos)
        self.per_video_mean = per_video_mean
        self.mean_only = per_video_mean and fmt == "npy"  # such files hold the (D,) mean, not clip rows
        self.meta = dict(meta or {})
        self.index_json = self.out_dir / INDEX_NAME
        _check_index_is_ours(self.index_json)
        io.check_writable(self.out_dir)
        existing, self.damaged = scan_outputs(self.out_dir)
        taken = {e["file"]: e["video"] for e in existing.values()}
        self.names = dict(zip(self.videos, io.output_names(self.videos, "." + fmt, root=root, taken=taken)))
        self.entries: dict[str, dict] = {}
        self.extra = {v: e for v, e in existing.items() if v not in self.names}  # earlier runs' other videos
        self.todo: list[str] = []
        for v in self.videos:
            name = self.names[v]
            if name in self.damaged:
                warnings.warn(f"{self.out_dir / name}: {self.damaged[name]}; computing it again", stacklevel=2)
            if resume and v in existing and existing[v]["file"] == name:
                self.entries[v] = existing[v]
            else:
                self.todo.append(v)
        self.written = 0

    def add(self, result: FeatureResult) -> None:
        self.entries[result.video] = write_output(self.out_dir, self.names[result.video], result,
                                                  per_video_mean=self.per_video_mean, meta=self.meta)
        self.written += 1
        self.tick()

    def save(self) -> None:
        ordered = [self.entries[v] for v in self.videos if v in self.entries] + list(self.extra.values())
        write_index(self.out_dir, ordered, self.per_video_mean)


def write_output(out_dir, name: str, result: FeatureResult, *, per_video_mean: bool = False,
                 meta: Optional[dict] = None) -> dict:
    """Write one video's self-describing feature file ``out_dir/name`` (.npz: the description inside; .npy: a
    ``.npy.json`` sidecar first) and return its index entry. Every writer of feature folders goes through here."""
    target = Path(out_dir) / name
    mean_only = per_video_mean and target.suffix == ".npy"  # such files hold the (D,) mean, not clip rows
    entry = {"format": FILE_FORMAT, "video": result.video, "file": name,
             "rows": 1 if mean_only else result.n_clips, "mean": per_video_mean,
             "clip_frames": result.clip_frames.tolist(), "clip_seconds": result.clip_seconds.tolist(),
             "complete": result.complete, "decoded_seconds": result.decoded_seconds,
             "declared_seconds": result.declared_seconds, **(meta or {})}
    if target.suffix == ".npz":
        arrays = {"features": result.features, "clip_frames": result.clip_frames,
                  "clip_seconds": result.clip_seconds, NPZ_KEY: np.array(json.dumps(entry))}
        if per_video_mean:
            arrays["mean_features"] = result.features.mean(0) if result.mean_features is None \
                else result.mean_features
        io.write_npz(target, **arrays)
    else:
        # The sidecar first, with the data's SHA-256: a crash between the two leaves a description with no
        # .npy, or with an older one that the digest tells apart; never a .npy that nothing describes.
        data = result.features.mean(0) if per_video_mean else result.features
        io.write_json(sidecar_path(target), {**entry, "sha256": _digest(np.asarray(data))})
        io.write_npy(target, data)
    return entry


def _check_index_is_ours(path: Path) -> None:
    """Refuse to overwrite a file at the index's name that hub3d did not write."""
    if not path.exists():
        return
    try:
        ours = json.loads(path.read_text(encoding="utf-8")).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise io.OutputError(path, f"exists and is not a hub3d index (no \"format\": \"{INDEX_FORMAT}\"); "
                                   "move it away or choose another output folder")


def scan_outputs(out_dir) -> tuple[dict, dict]:
    """({video: description} of the intact hub3d outputs below out_dir, {file name: what is wrong} of the damaged
    ones: unreadable, cut short, or with no description)."""
    out_dir = Path(out_dir)
    good, damaged = {}, {}
    if not out_dir.is_dir():
        return good, damaged
    for path in sorted(out_dir.rglob("*")):
        if path.suffix not in (".npy", ".npz") or not path.is_file() or io.TMP_MARKER in path.name:
            continue
        name = path.relative_to(out_dir).as_posix()
        try:
            desc = read_description(path)
        except DamagedOutput as e:
            damaged[name] = str(e)
            continue
        desc["file"] = name
        good[desc["video"]] = desc
    return good, damaged


def write_index(out_dir, entries: Sequence[dict], per_video_mean: Optional[bool] = None) -> None:
    out_dir = Path(out_dir)
    _check_index_is_ours(out_dir / INDEX_NAME)
    entries = [{k: v for k, v in e.items() if k not in ("format", "sha256")} for e in entries]
    io.write_json(out_dir / INDEX_NAME, {"format": INDEX_FORMAT, "version": 1, "per_video_mean": per_video_mean,
                                         "videos": entries})
    rows = []
    for e in entries:
        mean_only = e.get("mean") and e["file"].endswith(".npy")
        for i, (f, s) in enumerate(zip(e.get("clip_frames") or [], e.get("clip_seconds") or [])):
            rows.append({"video": e["video"], "file": e["file"], "row": "" if mean_only else i,
                         "frame_start": f[0], "frame_end": f[1], "start_s": s[0], "end_s": s[1],
                         "complete": e.get("complete", True)})
    io.write_csv(out_dir / INDEX_CSV, rows, INDEX_FIELDS)


def rebuild_index(out_dir) -> tuple[int, dict]:
    """Write out_dir's index from its outputs' own descriptions alone: (outputs indexed, {damaged file: why})."""
    good, damaged = scan_outputs(out_dir)
    if not good and not damaged:
        raise FileNotFoundError(f"{out_dir}: no hub3d feature files (.npy with .npy.json, or .npz) here")
    means = {bool(e.get("mean")) for e in good.values()}
    entries = sorted(good.values(), key=lambda e: e["file"])
    write_index(out_dir, entries, means.pop() if len(means) == 1 else None)
    return len(good), damaged


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


__all__ = ["FeatureFolder", "INDEX_FIELDS", "INDEX_NAME", "ResultsJson", "read_description", "rebuild_index",
           "scan_outputs", "write_feature_file", "write_index", "write_output"]
