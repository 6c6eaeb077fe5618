"""hub3d.manifest (locked JSON Lines appends, sha256-verified resume) and the shard partition."""
from __future__ import annotations

import json
import multiprocessing

import pytest

from hub3d.distributed import parse_shard, shard_from_env, shard_videos
from hub3d.manifest import Manifest, sha256_file, summary_record, video_record

SPEC = {"clip_len": 8, "stride": 8, "tail": "loop"}


def _append_many(out_dir, writer, n, payload):
    m = Manifest(out_dir)
    for i in range(n):
        m.append({"kind": "test", "writer": writer, "i": i, "payload": payload})


def test_concurrent_appends_never_interleave(tmp_path):
    # Records far over PIPE_BUF (4096), from 6 processes at once: only the lock keeps lines whole.
    payload = "x" * 20_000
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(tmp_path, w, 60, payload)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / "manifest.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]  # every line parses: none torn or interleaved
    assert sorted((r["writer"], r["i"]) for r in records) == [(w, i) for w in range(6) for i in range(60)]
    assert all(r["payload"] == payload for r in records)
    for w in range(6):  # each writer's records stay in its own order
        assert [r["i"] for r in records if r["writer"] == w] == list(range(60))


def test_torn_last_line_is_skipped_and_next_record_starts_fresh(tmp_path):
    m = Manifest(tmp_path)
    m.append(video_record("failed", "a.mp4", error="a.mp4: broken"))
    with open(m.path, "ab") as f:
        f.write(b'{"kind": "video", "status": "do')  # a writer killed mid-line
    m.append(summary_record(1, 1, 3, 2.0))
    recs = m.records()
    assert [r["kind"] for r in recs] == ["video", "summary"]
    assert recs[1]["videos_per_s"] == 0.5 and recs[1]["clips_per_s"] == 1.5
    assert m.latest()["a.mp4"]["error"] == "a.mp4: broken"


def test_finished_needs_done_record_and_same_sha(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "a.npy").write_bytes(b"features a")
    (tmp_path / "b.npy").write_bytes(b"features b")
    m.append([video_record("done", "a.mp4", file="a.npy", sha256=sha256_file(tmp_path / "a.npy"), model="m",
                           spec=SPEC),
              video_record("done", "b.mp4", file="b.npy", sha256=sha256_file(tmp_path / "b.npy"), model="m",
                           spec=SPEC),
              video_record("failed", "c.mp4", model="m", spec=SPEC, error="c.mp4: broken")])
    assert set(m.finished(["a.mp4", "b.mp4", "c.mp4", "d.mp4"], "m", SPEC)) == {"a.mp4", "b.mp4"}
    (tmp_path / "b.npy").write_bytes(b"changed")  # no longer what was recorded: not finished
    assert set(m.finished(["a.mp4", "b.mp4"], "m", SPEC)) == {"a.mp4"}
    # The latest record wins: a later failure of a makes it unfinished.
    m.append(video_record("failed", "a.mp4", model="m", spec=SPEC, error="x"))
    assert m.finished(["a.mp4"], "m", SPEC) == {}


def test_finished_output_of_another_spec_is_refused(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "a.npy").write_bytes(b"a")
    m.append(video_record("done", "a.mp4", file="a.npy", sha256=sha256_file(tmp_path / "a.npy"), model="m",
                          spec=SPEC))
    with pytest.raises(ValueError, match="a.mp4 was already extracted with another model or clip spec"):
        m.finished(["a.mp4"], "m", {**SPEC, "clip_len": 16})
    with pytest.raises(ValueError, match="never overwritten"):
        m.finished(["a.mp4"], "other", SPEC)


def test_video_record_fields():
    r = video_record("partial", "v.mp4", n_clips=2, error="lost", model="m", tag="kinetics", spec=SPEC)
    assert r["worker"]["pid"] > 0 and r["worker"]["host"] and r["finished"] > 0
    assert {"status", "video", "file", "sha256", "n_clips", "model", "tag", "spec", "error", "started"} <= set(r)
    with pytest.raises(ValueError, match="status"):
        video_record("started", "v.mp4")


# ------------------------------------------------------------------------------------------------ shards
def test_parse_shard():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_shard_from_env():
    assert shard_from_env({}) is None
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4)
    # Slurm arrays: --array=1-3 (ids from 1), --array=0-10:5 (a step)
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}
    assert shard_from_env(slurm) == (2, 3)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0",
                           "SLURM_ARRAY_TASK_STEP": "5"}) == (2, 3)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}) == (0, 2)
    with pytest.raises(ValueError, match="Slurm array task 3"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3"})  # MIN unset: ids 0..2


def test_shards_partition_the_sorted_list():
    videos = [f"v{i:03d}.mp4" for i in range(23)]
    shuffled = videos[7:] + videos[:7]
    parts = [shard_videos(shuffled, i, 4) for i in range(4)]
    assert sorted(sum(parts, [])) == videos  # every video in exactly one shard
    assert [len(p) for p in parts] == [6, 6, 6, 5]
    assert parts == [shard_videos(videos, i, 4) for i in range(4)]  # the input order does not matter
