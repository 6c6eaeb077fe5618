"""One manifest per output directory: what was done for each video, by whom, with what, and how to resume.

``DIR/manifest.jsonl`` is JSON Lines, one record per line, append-only. JSON Lines rather than Parquet because
many writers (shards, Ray, reruns) add records at once while the run goes: a Parquet file cannot be appended
to (it would take one file per writer plus a compaction), while a line is appended under an exclusive
``fcntl.flock`` in one ``write`` and fsync'ed, so concurrent writers never interleave or tear records, a crash
loses at most the line being written (a torn last line is ignored on reading), and ``tail -f`` / ``grep`` /
``pandas.read_json(lines=True)`` read it as it grows. (On NFS, flock is emulated with POSIX locks by Linux
(NFSv4 and v3 with lockd); on Lustre mount with ``-o flock``.)

Records (``kind``):
- ``video``: ``status`` ("done", "failed", or "partial": some clips were computed but the rest were lost when
  a worker died past its retries; no output then), ``video``, ``file`` (relative to DIR), ``sha256``,
  ``n_clips``, ``model``, ``tag``, ``spec`` (everything that determines the output: the ClipSpec's fields,
  precision, format), ``error``, ``worker`` (host, pid, rank, actor), ``started`` / ``finished``
  (Unix seconds).
- ``summary``: one per finished run (or shard): videos, clips, seconds, videos/s, clips/s, worker.

The latest ``video`` record of a video wins. A video is finished when that record is "done" AND its output
still has the recorded sha256: :meth:`Manifest.finished` is what resume skips, and no run overwrites it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Union

from .errors import ConfigError

PathLike = Union[str, os.PathLike]
MANIFEST_NAME = "manifest.jsonl"
STATUSES = ("done", "failed", "partial")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def spec_record(spec, *, precision="fp32", fmt="npy", per_video_mean=False) -> dict:
    """Everything that determines a video's output file (with the model), as JSON: compared on resume.

    spec: the run's hub3d.specs.ClipSpec (every field; a mean array by the sha256 of its bytes).
    """
    import dataclasses

    record = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name == "mean_array" and value is not None:
            value = hashlib.sha256(value.tobytes()).hexdigest()
        record[f.name] = list(value) if isinstance(value, tuple) else value  # as JSON reads it back
    return {**record, "precision": precision, "format": fmt, "per_video_mean": bool(per_video_mean)}


def worker_info(**extra) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), **{k: v for k, v in extra.items() if v is not None}}


class Manifest:
    """``DIR/manifest.jsonl``: locked appends, tolerant reads (see the module doc)."""

    def __init__(self, out_dir: PathLike):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST_NAME

    @contextlib.contextmanager
    def _locked(self, flags: int, lock: int) -> Iterator[int]:
        fd = os.open(self.path, flags, 0o644)
        try:
            fcntl.flock(fd, lock)
            yield fd
        finally:
            os.close(fd)  # also releases the lock

    def append(self, records: dict | Iterable[dict]) -> None:
        """Append records as lines, in one locked write, then fsync (durable before the caller goes on)."""
        records = [records] if isinstance(records, dict) else list(records)
        if not records:
            return
        data = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False, default=str) + "\n" for r in records)
        data = data.encode("utf-8")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self._locked(os.O_RDWR | os.O_APPEND | os.O_CREAT, fcntl.LOCK_EX) as fd:
            # A writer that crashed mid-line left no newline: start on a fresh line so both records survive apart.
            if os.fstat(fd).st_size and os.pread(fd, 1, os.fstat(fd).st_size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:  # os.write may write less than asked (signals, quotas): finish under the same lock
                view = view[os.write(fd, view):]
            os.fsync(fd)

    def records(self) -> list[dict]:
        """Every readable record in file order; a torn or garbled line (a crash mid-write) is skipped."""
        try:
            with self._locked(os.O_RDONLY, fcntl.LOCK_SH) as fd, os.fdopen(os.dup(fd), "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def latest(self, records: list | None = None) -> dict[str, dict]:
        """video -> its last ``video`` record."""
        latest: dict[str, dict] = {}
        for r in self.records() if records is None else records:
            if r.get("kind") == "video" and "video" in r:
                latest[r["video"]] = r
        return latest

    def verified(self, record: dict) -> bool:
        """A done record whose output file exists with the recorded sha256."""
        if record.get("status") != "done" or not record.get("file"):
            return False
        target = self.out_dir / record["file"]
        try:
            return target.is_file() and sha256_file(target) == record.get("sha256")
        except OSError:
            return False

    def finished(self, videos: Iterable[str], model: str, spec: dict) -> dict[str, dict]:
        """The videos (of ``videos``) already done and verified: video -> record. Resume skips exactly these.

        A verified output made with another model or spec is not redone: it raises ConfigError instead, since
        the run would otherwise overwrite a finished output with a different one (use another directory).
        """
        latest = self.latest()
        done = {}
        for v in videos:
            r = latest.get(v)
            if r is None or not self.verified(r):
                continue
            if r.get("model") != model or r.get("spec") != spec:
                raise ConfigError(
                    f"{self.out_dir}: {v} was already extracted with another model or clip spec "
                    f"(model {r.get('model')!r}, spec {r.get('spec')}); now model {model!r}, spec {spec}. "
                    "A finished output is never overwritten: write to another --out-dir.")
            done[v] = r
        return done


def video_record(status: str, video: str, *, file: str | None = None, sha256: str | None = None,
                 n_clips: int | None = None, model: str | None = None, tag: str | None = None,
                 spec: dict | None = None, error: str | None = None, worker: dict | None = None,
                 started: float | None = None, **extra: Any) -> dict:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    return {"kind": "video", "status": status, "video": video, "file": file, "sha256": sha256, "n_clips": n_clips,
            "model": model, "tag": tag, "spec": spec, "error": error, "worker": worker or worker_info(),
            "started": started, "finished": time.time(), **extra}


def summary_record(n_videos: int, n_failed: int, n_clips: int, seconds: float, worker: dict | None = None,
                   **extra: Any) -> dict:
    seconds = max(seconds, 1e-9)
    return {"kind": "summary", "videos": n_videos, "failed": n_failed, "clips": n_clips,
            "seconds": round(seconds, 3), "videos_per_s": round(n_videos / seconds, 4),
            "clips_per_s": round(n_clips / seconds, 4), "worker": worker or worker_info(), "finished": time.time(),
            **extra}
