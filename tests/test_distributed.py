"""Datasets: shards (--shard, torchrun, Slurm arrays), resume from the manifest, and Ray Data (hub3d[ray]).

Every path must write the same files, bit for bit (fp32 on CPU), as one plain `hub3d features --out-dir` run.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import dist_helpers
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import random_frames

import hub3d
from hub3d.cli import main
from hub3d.distributed import extract_dataset
from hub3d.manifest import Manifest
from hub3d.outputs import INDEX_CSV, INDEX_NAME

ROOT = Path(__file__).resolve().parents[1]
CLIP_LEN = 8
# 12 videos of 2..5 clips of 8 frames; shards, resumes and Ray cut batches differently from one process.
FRAMES = [9, 17, 24, 33, 40, 12, 20, 28, 36, 15, 23, 31]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len=CLIP_LEN, num_classes=4)
    torch.manual_seed(0)
    net = hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.125)
    d = tmp_path_factory.mktemp("tiny_model")
    net.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from hub3d.video import write_video

    d = tmp_path_factory.mktemp("vids")
    (d / "sub").mkdir()
    out = []
    for i, n in enumerate(FRAMES):
        folder = d / "sub" if i % 3 == 2 else d
        out.append(str(write_video(folder / f"clip{i:02d}.mp4", random_frames(n, 40, 48, seed=i), fps=10)))
    return out


@pytest.fixture(scope="module")
def bad_video(videos):
    p = Path(videos[0]).parent / "broken.mp4"  # beside the others: the output names stay the same
    p.write_bytes(b"this is not a video")
    return str(p)


def run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def reference(model_dir, videos, tmp_path_factory):
    """One plain single-process `hub3d features --out-dir` run."""
    out = tmp_path_factory.mktemp("reference")
    r = run("features", *videos, "-m", model_dir, "--out-dir", out, "-q")
    assert r.exit_code == 0, r.output
    return out


def outputs(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*.npy"))}


def index_rows(d: Path) -> list:
    """The index's facts about each output (a Python-API run describes its model more briefly than the CLI)."""
    keys = ("video", "file", "rows", "clip_frames", "clip_seconds", "complete", "decoded_seconds",
            "declared_seconds")
    return [{k: e.get(k) for k in keys} for e in json.loads((d / INDEX_NAME).read_text())["videos"]]


def assert_same_as(reference: Path, out: Path):
    ref = outputs(reference)
    assert len(ref) == len(FRAMES)
    assert outputs(out) == ref  # same names, same bytes
    assert index_rows(out) == index_rows(reference)
    assert (out / INDEX_CSV).read_text() == (reference / INDEX_CSV).read_text()


def done_counts(out: Path) -> dict:
    counts: dict[str, int] = {}
    for r in Manifest(out).records():
        if r.get("kind") == "video" and r["status"] == "done":
            counts[r["video"]] = counts.get(r["video"], 0) + 1
    return counts


def stats(out: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.npy")}


def load_net(model_dir, hook=None):
    net = hub3d.load(str(model_dir))
    if hook is not None:
        net.conv1.register_forward_pre_hook(hook)
    return net


# ------------------------------------------------------------------------------------------- no Ray
def test_shard_option_matches_single_process(model_dir, videos, reference, tmp_path):
    out = tmp_path / "out"
    r0 = run("features", *videos, "-m", model_dir, "--out-dir", out, "--shard", "0/2")
    assert r0.exit_code == 0, r0.output
    assert "shard 0/2: 6 video(s) done, 0 failed" in r0.output and "index waits for the other shards" in r0.output
    assert not (out / INDEX_NAME).exists()
    r = run("features", "--merge-index", out)  # before shard 1: says what is missing
    assert r.exit_code == 1
    missing = sorted(videos)[1::2]
    assert "6 video(s) not done yet" in r.output and all(f"{v}: not started" in r.output for v in missing)
    r1 = run("features", *videos, "-m", model_dir, "--out-dir", out, "--shard", "1/2", "-q")
    assert r1.exit_code == 0, r1.output
    assert_same_as(reference, out)  # the last shard wrote the index
    (out / INDEX_NAME).unlink()
    assert run("features", "--merge-index", out).exit_code == 0
    assert_same_as(reference, out)
    assert set(done_counts(out).values()) == {1} and len(done_counts(out)) == len(videos)


def test_torchrun_processes_match_single_process(model_dir, videos, reference, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "hub3d", "features", *videos, "-m", str(model_dir), "--out-dir", str(out), "-q"]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in range(2)]  # both at once
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output
    if not (out / INDEX_NAME).exists():  # both finished at the same moment: neither saw the other done
        assert run("features", "--merge-index", out).exit_code == 0
    assert_same_as(reference, out)
    workers = {r["worker"]["rank"] for r in Manifest(out).records() if r.get("kind") == "video"}
    assert workers == {0, 1}


def test_slurm_array_matches_single_process(model_dir, videos, reference, tmp_path):
    out = tmp_path / "out"
    for task in (1, 2):  # --array=1-2: ids from 1
        env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"}
        r = run("features", *videos, "-m", model_dir, "--out-dir", out, "-q", env=env)
        assert r.exit_code == 0, r.output
    assert_same_as(reference, out)


def test_interrupted_run_resumes_without_recomputing(model_dir, videos, reference, tmp_path):
    out = tmp_path / "out"
    dist_helpers.reset()
    net = load_net(model_dir, functools.partial(dist_helpers.interrupt_at, 4))  # Ctrl-C in the 4th batch
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(videos, out, net, model_name=str(model_dir), progress=False)
    first = done_counts(out)
    assert 0 < len(first) < len(videos)
    before = stats(out)
    summary = Manifest(out).records()[-1]
    assert summary["kind"] == "summary" and summary["videos"] == len(first)  # written even when interrupted
    s = extract_dataset(videos, out, load_net(model_dir), model_name=str(model_dir), progress=False)
    assert s["skipped"] == len(first) and s["videos"] == len(videos) - len(first) and s["index"]
    after = stats(out)
    assert all(after[name] == st for name, st in before.items())  # finished files untouched
    assert set(done_counts(out).values()) == {1}
    assert_same_as(reference, out)


def test_bad_video_is_recorded_failed_and_the_rest_go_on(model_dir, videos, bad_video, reference, tmp_path):
    out = tmp_path / "out"
    r = run("features", bad_video, *videos, "-m", model_dir, "--out-dir", out, "--manifest", "-q")
    assert r.exit_code == 1
    assert f"{bad_video}: not a readable video" in r.output
    rec = Manifest(out).latest()[bad_video]
    assert rec["status"] == "failed" and bad_video in rec["error"] and rec["sha256"] is None
    ref = json.loads((reference / INDEX_NAME).read_text())
    got = json.loads((out / INDEX_NAME).read_text())
    assert got == ref  # the index of the videos that worked
    before = stats(out)
    r = run("features", bad_video, *videos, "-m", model_dir, "--out-dir", out, "--manifest")
    assert r.exit_code == 1 and "0 video(s) done, 1 failed in" in r.output  # the failed video was tried again ...
    assert f"{len(videos)} already done" in r.output and stats(out) == before  # ... and only it
    failures = [x for x in Manifest(out).records() if x.get("video") == bad_video]
    assert [x["status"] for x in failures] == ["failed", "failed"]


def test_finished_outputs_are_never_overwritten_by_another_spec(model_dir, videos, tmp_path):
    out = tmp_path / "out"
    assert run("features", *videos[:2], "-m", model_dir, "--out-dir", out, "--manifest", "-q").exit_code == 0
    before = {n: p for n, p in outputs(out).items()}
    r = run("features", *videos[:2], "-m", model_dir, "--out-dir", out, "--manifest", "--clip-len", "4")
    assert r.exit_code == 1 and "another model or clip spec" in r.output and "another --out-dir" in r.output
    assert outputs(out) == before


def test_ray_missing_names_the_extra(model_dir, videos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    r = run("features", *videos[:1], "-m", model_dir, "--out-dir", tmp_path / "out", "--ray")
    assert r.exit_code == 1 and "pip install 'hub3d[ray]'" in r.output


# ---------------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "hub3d[ray]")')
    pytest.importorskip("ray.data", reason='Ray Data is not installed (pip install "hub3d[ray]")')
    # Workers import hub3d from this checkout and the test hooks from tests/.
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_matches_single_process_and_records_bad_video(ray_cluster, model_dir, videos, bad_video, reference,
                                                           tmp_path):
    out = tmp_path / "out"
    r = run("features", *videos, bad_video, "-m", model_dir, "--out-dir", out, "--ray")
    assert r.exit_code == 1, r.output
    assert f"{bad_video}: not a readable video" in r.output
    assert f"{len(videos)} video(s) done, 1 failed in" in r.output and "videos/s" in r.output and "clips/s" in r.output
    latest = Manifest(out).latest()
    assert latest[bad_video]["status"] == "failed"
    assert_same_as(reference, out)
    summary = [x for x in Manifest(out).records() if x.get("kind") == "summary"][-1]
    assert summary["ray"] and summary["videos"] == len(videos) and summary["clips"] == sum(
        len(range(0, n, CLIP_LEN)) for n in FRAMES) and summary["clips_per_s"] > 0
    # Resume after losing two outputs: exactly those two are computed again, on Ray.
    for name in ("clip00.npy", "clip05.npy"):  # clip05 is in sub/: names are stems without --root
        (out / name).unlink()
    before = stats(out)
    s = extract_dataset(videos, out, load_net(model_dir), model_name=str(model_dir), ray=True, progress=False)
    assert s["videos"] == 2 and s["skipped"] == len(videos) - 2
    assert all(stats(out)[n] == st for n, st in before.items())
    assert_same_as(reference, out)


def test_ray_flags_a_cut_video_as_one_process_does(ray_cluster, model_dir, videos, tmp_path):
    from hub3d.video import write_video

    whole = write_video(tmp_path / "cut.avi", random_frames(40, 40, 48, seed=3), fps=10, codec="mpeg4")
    whole.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])  # cut short: ~60% of its frames
    inputs = [videos[0], str(whole)]
    plain = extract_dataset(inputs, tmp_path / "plain", load_net(model_dir), model_name=str(model_dir),
                            progress=False)
    on_ray = extract_dataset(inputs, tmp_path / "ray", load_net(model_dir), model_name=str(model_dir), ray=True,
                             progress=False)
    assert plain["videos"] == on_ray["videos"] == 2
    rows = {r["video"]: r for r in index_rows(tmp_path / "ray")}
    assert rows[str(whole)]["complete"] is False and rows[videos[0]]["complete"] is True
    assert 0 < rows[str(whole)]["decoded_seconds"] < 0.8 * rows[str(whole)]["declared_seconds"]
    assert index_rows(tmp_path / "ray") == index_rows(tmp_path / "plain")


@pytest.mark.slow
def test_ray_runs_two_pathway_models_as_one_process(ray_cluster, videos, tmp_path):
    """SlowFast's [slow, fast] clips travel as two columns and are collated back: outputs bit-identical."""
    torch.manual_seed(0)
    net = hub3d.create_model("slowfast_r50", num_classes=4).eval()
    net.pretrained_cfg = net.pretrained_cfg.replace(clip_len=8, frame_step=1, crop_size=32, resize=32)
    inputs = videos[:3] + [videos[5]]  # clip05 is in sub/: names are still stems
    # One model thread, as each Ray replica on this 2-CPU cluster has: SlowFast's outputs move by ~3e-7 with the
    # thread count (the ResNets' do not).
    plain = extract_dataset(inputs, tmp_path / "plain", net, model_name="slowfast_r50", progress=False, threads=1)
    on_ray = extract_dataset(inputs, tmp_path / "ray", net, model_name="slowfast_r50", ray=True, progress=False,
                             threads=1)
    assert plain["videos"] == on_ray["videos"] == 4 and on_ray["failed"] == {}
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "plain")
    assert index_rows(tmp_path / "ray") == index_rows(tmp_path / "plain")
    assert np.load(tmp_path / "ray" / "clip00.npy").shape == (len(range(0, FRAMES[0], 8)), 2304)


@pytest.mark.slow
def test_ray_actor_killed_midway_still_does_every_video_once(ray_cluster, model_dir, videos, reference, tmp_path):
    out = tmp_path / "out"
    flag = tmp_path / "crashed"
    net = load_net(model_dir, functools.partial(dist_helpers.crash_once, str(flag), 3))  # dies in its 3rd batch
    s = extract_dataset(videos, out, net, model_name=str(model_dir), ray=True, progress=False, max_retries=2)
    assert flag.exists()  # the replica did die
    dead_pid = flag.read_text()
    pids = {r["worker"]["actor"].split("/")[1] for r in Manifest(out).records() if r.get("kind") == "video"}
    assert pids - {dead_pid}  # the replica Ray restarted (another process) finished the work
    assert s["failed"] == {} and s["videos"] == len(videos)
    assert done_counts(out) == {v: 1 for v in videos}  # every video exactly once
    assert_same_as(reference, out)
