"""`hub3d classify` / `hub3d features` through click's CliRunner, and the hub3d.io helpers they write with."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import random_frames

import hub3d
from hub3d import io
from hub3d.cli import main

CLIP_LEN = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model saved in hub3d format: the CLI loads it with `-m DIR` like any published model."""
    cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len=CLIP_LEN, num_classes=4)
    torch.manual_seed(1)
    net = hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.25)
    d = tmp_path_factory.mktemp("tiny_model")
    net.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def net(model_dir):
    return hub3d.load(str(model_dir))


@pytest.fixture
def videos(make_video, tmp_path):
    (tmp_path / "vids" / "sub").mkdir(parents=True)
    return [
        make_video(frames=random_frames(20, 48, 64, seed=0), fps=10, name="a.mp4", directory=tmp_path / "vids"),
        make_video(frames=random_frames(9, 48, 64, seed=1), fps=10, name="b.mp4", directory=tmp_path / "vids/sub"),
    ]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def no_temp_files(root):
    return not [p for p in root.rglob("*") if io.TMP_MARKER in p.name]


def test_classify_table_and_json(model_dir, net, videos, tmp_path):
    out = tmp_path / "res" / "out.json"
    r = run("classify", *videos, "-m", model_dir, "--json", out, "-k", 2, "--per-clip", "-q", "-b", 3)
    assert r.exit_code == 0, r.output
    expected = hub3d.classify(net, videos, topk=2)
    for v, e in zip(videos, expected):
        assert str(v) in r.stdout
        assert f"1. {e.topk[0][0]}" in r.stdout and f"{e.topk[0][2]:.4f}" in r.stdout
    assert "clip 2: frames [16, 20)" in r.stdout  # --per-clip rows
    d = json.loads(out.read_text())
    assert d["clip_len"] == CLIP_LEN and d["tail"] == "loop" and d["failed"] == []
    assert [v["video"] for v in d["videos"]] == [str(v) for v in videos]
    for v, e in zip(d["videos"], expected):
        assert [t["index"] for t in v["topk"]] == [i for _, i, _ in e.topk]
        assert v["topk"][0]["prob"] == pytest.approx(e.probs.max(), abs=1e-5)
        assert [c["frames"] for c in v["clips"]] == e.clip_frames.tolist()
        np.testing.assert_allclose([c["seconds"] for c in v["clips"]], e.clip_seconds)
        assert "probs" not in v
    assert no_temp_files(tmp_path)


def test_classify_bad_video_goes_on_and_exits_1(model_dir, videos, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video" * 50)
    out = tmp_path / "out.json"
    r = run("classify", videos[0], bad, tmp_path / "nope*.avi", videos[1], "-m", model_dir, "--json", out, "-q")
    assert r.exit_code == 1
    assert f"{bad}: not a readable video" in r.stderr
    assert "nope*.avi: the pattern matches no file" in r.stderr
    d = json.loads(out.read_text())
    assert [v["video"] for v in d["videos"]] == [str(videos[0]), str(videos[1])]
    assert {f["video"] for f in d["failed"]} == {str(bad), str(tmp_path / "nope*.avi")}


def test_classify_skip_existing_keeps_done_videos(model_dir, videos, tmp_path):
    out = tmp_path / "out.json"
    assert run("classify", videos[0], "-m", model_dir, "--json", out, "-q").exit_code == 0
    d = json.loads(out.read_text())
    d["videos"][0]["n_clips"] = 999  # marks the entry: a resumed run must not recompute it
    out.write_text(json.dumps(d))
    r = run("classify", *videos, "-m", model_dir, "--json", out, "--skip-existing")
    assert r.exit_code == 0 and "1 video(s) already done, 1 to go" in r.stderr
    d = json.loads(out.read_text())
    assert [v["video"] for v in d["videos"]] == [str(v) for v in videos]
    assert d["videos"][0]["n_clips"] == 999 and d["videos"][1]["n_clips"] == 2


def test_interrupted_classify_keeps_finished_videos(model_dir, videos, tmp_path, monkeypatch):
    from hub3d import inference

    real = inference.iter_classify

    def interrupted(*args, **kwargs):  # Ctrl-C while the second video is being classified
        gen = real(*args, **kwargs)
        yield next(gen)
        gen.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "iter_classify", interrupted)
    out = tmp_path / "out.json"
    r = run("classify", *videos, "-m", model_dir, "--json", out, "-q")
    assert r.exit_code != 0
    assert [v["video"] for v in json.loads(out.read_text())["videos"]] == [str(videos[0])]
    assert no_temp_files(tmp_path)
    monkeypatch.undo()
    r = run("classify", *videos, "-m", model_dir, "--json", out, "-q", "--skip-existing")  # resume
    assert r.exit_code == 0 and str(videos[0]) not in r.stdout and str(videos[1]) in r.stdout
    assert [v["video"] for v in json.loads(out.read_text())["videos"]] == [str(v) for v in videos]


def test_random_weights_are_announced(videos):
    # A registered name with --pretrained none: random init, default (112 px) preprocessing; 4-frame clips keep it cheap.
    r = run("classify", videos[1], "-m", "resnet3d_10", "-p", "none", "--clip-len", 4, "-q", "--tail", "drop")
    assert r.exit_code == 0, r.output
    assert "RANDOM weights" in r.stderr
    assert "class_" in r.stdout  # no label file for random weights: class indices


def test_features_one_video_npy_and_npz(model_dir, net, videos, tmp_path):
    expected = hub3d.extract_features(net, videos[0])[0]
    r = run("features", videos[0], "-m", model_dir, "--out", tmp_path / "f.npy", "-q")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected.features, atol=1e-5)
    assert np.load(tmp_path / "f.npy").shape == (3, net.num_features)
    assert run("features", videos[0], "-m", model_dir, "--out", tmp_path / "f.npz", "-q").exit_code == 0
    with np.load(tmp_path / "f.npz") as z:
        np.testing.assert_allclose(z["features"], expected.features, atol=1e-5)
        assert z["clip_frames"].tolist() == [[0, 8], [8, 16], [16, 20]]
        np.testing.assert_allclose(z["clip_seconds"], expected.clip_seconds)
    assert run("features", videos[0], "-m", model_dir, "--out", tmp_path / "m.npy", "--per-video-mean", "-q").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), expected.features.mean(0), atol=1e-5)
    assert no_temp_files(tmp_path)


def test_features_many_videos(model_dir, net, videos, tmp_path):
    out_dir = tmp_path / "feats"
    r = run("features", tmp_path / "vids", "-m", model_dir, "--out-dir", out_dir, "-q", "--root", tmp_path / "vids")
    assert r.exit_code == 0, r.output  # a directory, recursive; names below --root
    expected = hub3d.extract_features(net, videos)
    for name, e in zip(["a.npy", "sub/b.npy"], expected):
        np.testing.assert_allclose(np.load(out_dir / name), e.features, atol=1e-5)
    index = json.loads((out_dir / "hub3d-index.json").read_text())["videos"]
    assert [(e["video"], e["file"], e["rows"]) for e in index] == [(str(videos[0]), "a.npy", 3), (str(videos[1]), "sub/b.npy", 2)]
    assert index[0]["clip_frames"] == [[0, 8], [8, 16], [16, 20]]
    with open(out_dir / "hub3d-index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["file"], r["row"], r["frame_start"], r["frame_end"]) for r in rows] == [
        ("a.npy", "0", "0", "8"), ("a.npy", "1", "8", "16"), ("a.npy", "2", "16", "20"),
        ("sub/b.npy", "0", "0", "8"), ("sub/b.npy", "1", "8", "9")]
    assert float(rows[2]["end_s"]) == pytest.approx(2.0)
    # Several videos into one file needs --per-video-mean: one row per video, with an index.
    assert run("features", *videos, "-m", model_dir, "--out", tmp_path / "x.npy", "-q").exit_code == 2
    r = run("features", *videos, "-m", model_dir, "--out", tmp_path / "means.npy", "--per-video-mean", "-q")
    assert r.exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "means.npy"), [e.features.mean(0) for e in expected], atol=1e-5)
    assert json.loads((tmp_path / "means.index.json").read_text())[1]["video"] == str(videos[1])
    assert no_temp_files(tmp_path)


def test_features_skip_existing_and_list_file(model_dir, videos, make_video, tmp_path):
    out_dir = tmp_path / "feats"
    listing = tmp_path / "list.txt"
    listing.write_text(f"# videos\n{videos[0]}\nvids/sub/b.mp4\n")  # relative paths: to the list's folder
    assert run("features", f"@{listing}", "-m", model_dir, "--out-dir", out_dir, "-q").exit_code == 0
    first = (out_dir / "a.npy").stat().st_mtime_ns
    os.utime(out_dir / "a.npy", ns=(1, 1))  # a recomputed file would get a fresh mtime
    c = make_video(frames=random_frames(4, 48, 64, seed=3), fps=10, name="c.mp4", directory=tmp_path / "vids")
    r = run("features", f"@{listing}", c, "-m", model_dir, "--out-dir", out_dir, "--skip-existing")
    assert r.exit_code == 0 and "2 video(s) already done, 1 to go" in r.stderr
    assert (out_dir / "a.npy").stat().st_mtime_ns == 1 != first
    assert np.load(out_dir / "c.npy").shape[0] == 1
    index = json.loads((out_dir / "hub3d-index.json").read_text())["videos"]
    assert [e["file"] for e in index] == ["a.npy", "b.npy", "c.npy"]
    assert index[0]["clip_frames"] == [[0, 8], [8, 16], [16, 20]]  # read from a.npy's own description


def test_features_bad_video_and_usage(model_dir, videos, tmp_path):
    empty = tmp_path / "vids" / "empty.mp4"
    empty.write_bytes(b"")
    out_dir = tmp_path / "feats"
    r = run("features", tmp_path / "vids", "-m", model_dir, "--out-dir", out_dir, "-q")
    assert r.exit_code == 1 and f"{empty}: file is empty" in r.stderr
    assert (out_dir / "a.npy").exists() and (out_dir / "b.npy").exists() and not (out_dir / "empty.npy").exists()
    assert run("features", videos[0], "-m", model_dir).exit_code == 2  # neither --out nor --out-dir
    assert run("features", videos[0], "-m", model_dir, "--out", tmp_path / "f.txt").exit_code == 2
    r = run("classify", videos[0], "-m", model_dir, "--precision", "fp16", "--device", "cpu")
    assert r.exit_code == 2 and "fp16 needs a cuda or mps device" in r.output


# --------------------------------------------------------------------------------------------- hub3d.io
def test_atomic_writers_leave_old_file_on_interrupt(tmp_path, monkeypatch):
    path = tmp_path / "x.npy"
    io.write_npy(path, np.arange(4))

    def interrupted(f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.write_npy(path, np.zeros(1000))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(path), np.arange(4))
    assert os.listdir(tmp_path) == ["x.npy"]
    io.write_npz(tmp_path / "y.npz", features=np.ones((2, 3)))
    io.write_json(tmp_path / "d" / "y.json", {"a": np.float32(0.5), "b": np.arange(2)})
    io.write_csv(tmp_path / "y.csv", [{"v": "a,b", "n": 1}])
    assert json.loads((tmp_path / "d" / "y.json").read_text()) == {"a": 0.5, "b": [0, 1]}
    with open(tmp_path / "y.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [{"v": "a,b", "n": "1"}]
    with pytest.raises(ValueError):
        io.write_json(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists() and no_temp_files(tmp_path)


def test_expand_video_paths(tmp_path):
    for name in ["b/2.mp4", "b/1.AVI", "a.mkv", "notes.md", "c/deep/3.webm"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    got = io.expand_video_paths([tmp_path / "a.mkv", tmp_path / "b", str(tmp_path / "c" / "**" / "*.webm"),
                                 tmp_path / "a.mkv", tmp_path / "missing.mp4"])
    assert got == [str(tmp_path / p) for p in ["a.mkv", "b/1.AVI", "b/2.mp4", "c/deep/3.webm", "missing.mp4"]]
    with pytest.raises(FileNotFoundError, match="no video files"):
        (tmp_path / "empty").mkdir()
        io.expand_video_paths([tmp_path / "empty"])
    names = io.output_names([tmp_path / "b/2.mp4", tmp_path / "c/2.mp4", tmp_path / "c/3.avi"], ".npy")
    assert names[2] == "3.npy" and names[0] != names[1] and all(n.startswith("2-") for n in names[:2])
    assert io.output_names([tmp_path / "b/2.mp4", tmp_path / "c/2.mp4"], ".npy", root=tmp_path) == ["b/2.npy", "c/2.npy"]


@pytest.mark.parametrize("native, expected", [(False, "fp32"), (True, "bf16")])  # AVX2-only vs AMX CPU
def test_precision_auto_records_what_ran(model_dir, videos, tmp_path, monkeypatch, native, expected):
    from hub3d import hardware

    monkeypatch.setattr(hardware, "bf16_native", lambda device="cpu": native)
    out = tmp_path / "auto.json"
    r = run("classify", videos[0], "-m", model_dir, "--precision", "auto", "--device", "cpu", "--json", out, "-q")
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["precision"] == expected
    assert "--precision" in run("classify", "--help").output and "auto" in run("classify", "--help").output
