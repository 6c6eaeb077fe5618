"""The PyTorchVideo zoo and S3D through the one engine: each tag's clip_len, frame_step, fps, normalisation and
SlowFast's pathways reach the model from a real h264 video, with exact per-clip frame and seconds ranges.

Spatial sizes are overridden (a tag's PretrainedCfg.replace) to keep the forwards small; the temporal sampling
is each tag's own. A spy runner wraps the real ClipRunner and reads back which source frame each clip frame is
(conftest.pattern_frames: frame i is a flat gray that survives the codec and the resize).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import LEVEL_STEP

import hub3d
from hub3d.inference import ClipRunner

SMALL = {"resize": 32, "crop_size": 32}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Spy:
    """A runner: the real ClipRunner of the model, recording every batch it is given."""

    def __init__(self, model, head):
        self.inner = ClipRunner(model, head)
        self.device = self.inner.device
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch)
        return self.inner(batch)


def frame_ids(clip: torch.Tensor, cfg) -> list[int]:
    """(3, T, H, W) preprocessed by cfg's mean/std -> the pattern frame number of each of the T frames."""
    mean = torch.tensor(cfg.mean).view(3, 1, 1, 1)
    std = torch.tensor(cfg.std).view(3, 1, 1, 1)
    levels = (clip * std + mean) * 255 / cfg.value_scale
    h, w = clip.shape[-2:]
    center = levels[:, :, h // 4: h - h // 4, w // 4: w - w // 4].mean(dim=(0, 2, 3))
    return [int(round((v - 16) / LEVEL_STEP)) for v in center.tolist()]


def pattern(frames) -> list[int]:
    """What frame_ids reads for these source frames (the gray levels repeat every 33 frames)."""
    return [i % 33 for i in frames]


def small_cfg(model, **changes):
    return model.pretrained_cfg.replace(**{**SMALL, **changes})


def test_x3d_s_takes_13_frames_6_apart_and_batches_two_videos(make_video):
    model = hub3d.create_model("x3d_s").eval()
    assert (model.pretrained_cfg.clip_len, model.pretrained_cfg.frame_step) == (13, 6)
    videos = [make_video(100, fps=25), make_video(100, fps=25)]
    spy = Spy(model, "probs")
    results = hub3d.classify(model, videos, spec=small_cfg(model), runner=spy, batch_size=4)
    assert len(spy.batches) == 1 and spy.batches[0].shape == (4, 3, 13, 32, 32)  # both videos in one batch
    for r in results:
        assert r.clip_frames.tolist() == [[0, 78], [78, 100]]  # 13 frames 6 apart span 78 source frames
        np.testing.assert_allclose(r.clip_seconds, [[0, 78 / 25], [78 / 25, 4.0]], atol=1e-6)
        assert r.probs.shape == (400,) and np.isclose(r.probs.sum(), 1, atol=1e-4)
    clips = spy.batches[0]
    assert frame_ids(clips[0], model.pretrained_cfg) == pattern(range(0, 78, 6))
    tail = list(range(78, 100, 6))  # [78, 84, 90, 96], loop-padded to 13
    assert frame_ids(clips[1], model.pretrained_cfg) == pattern(tail[i % 4] for i in range(13))
    assert frame_ids(clips[2], model.pretrained_cfg) == frame_ids(clips[0], model.pretrained_cfg)


def test_fps_model_resamples_to_the_tags_30_fps(make_video):
    model = hub3d.create_model("x3d_s").eval()
    assert model.pretrained_cfg.fps == 30.0
    spy = Spy(model, "features")
    (r,) = hub3d.extract_features(model, make_video(100, fps=25), spec=small_cfg(model), fps="model", runner=spy)
    # 4 s at 30 fps: 120 frames; clips of 78 resampled frames (2.6 s).
    assert r.clip_frames.tolist() == [[0, 78], [78, 120]]
    np.testing.assert_allclose(r.clip_seconds, [[0, 2.6], [2.6, 4.0]], atol=1e-6)
    assert r.features.shape == (2, model.num_features)
    # Tick k at k / 30 s takes the source frame nearest in time (k * 25 / 30, ties to the later).
    nearest = [int(np.floor(k * 25 / 30 + 0.5)) for k in range(0, 78, 6)]
    assert frame_ids(spy.batches[0][0], model.pretrained_cfg) == pattern(nearest)


def test_slowfast_pathways_built_by_the_engine_from_one_window(make_video):
    model = hub3d.create_model("slowfast_r50").eval()
    cfg = model.pretrained_cfg
    assert (cfg.clip_len, cfg.frame_step, cfg.pathway_alpha) == (32, 2, 4)
    videos = [make_video(100, fps=25), make_video(70, fps=25)]
    spy = Spy(model, "features")
    results = hub3d.extract_features(model, videos, spec=small_cfg(model), runner=spy, batch_size=3)
    assert [r.clip_frames.tolist() for r in results] == [[[0, 64], [64, 100]], [[0, 64], [64, 70]]]
    np.testing.assert_allclose(results[1].clip_seconds, [[0, 2.56], [2.56, 2.8]], atol=1e-6)
    assert all(r.features.shape == (2, 2304) for r in results)
    assert [len(b[0]) for b in spy.batches] == [3, 1]  # the second video's first clip shares the first batch
    slow, fast = spy.batches[0]
    assert slow.shape == (3, 3, 8, 32, 32) and fast.shape == (3, 3, 32, 32, 32)
    fast_ids = frame_ids(fast[0], cfg)
    assert fast_ids == pattern(range(0, 64, 2))
    # PyTorchVideo's PackPathway: slow = fast frames at linspace(0, 31, 8).long() = 0, 4, 8, 13, 17, 22, 26, 31.
    assert frame_ids(slow[0], cfg) == [fast_ids[i] for i in (0, 4, 8, 13, 17, 22, 26, 31)]
    assert torch.equal(slow[0], fast[0][:, torch.linspace(0, 31, 8).long()])


def test_s3d_through_the_engine(make_video):
    model = hub3d.create_model("s3d").eval()
    cfg = small_cfg(model, resize=(40, 40))  # s3d's tag resizes both sides: (256, 256)
    assert model.pretrained_cfg.resize == (256, 256) and model.pretrained_cfg.clip_len == 16
    spy = Spy(model, "probs")
    (r,) = hub3d.classify(model, make_video(40, fps=25), spec=cfg, runner=spy)
    assert r.clip_frames.tolist() == [[0, 16], [16, 32], [32, 40]]
    assert spy.batches[0].shape == (3, 3, 16, 32, 32)
    assert frame_ids(spy.batches[0][2], model.pretrained_cfg) == pattern(32 + i % 8 for i in range(16))
    (f,) = hub3d.extract_features(model, make_video(40, fps=25), spec=cfg)
    assert f.features.shape == (3, 1024)


# ---------------------------------------------------------------------------------------------------------
# The CLI: `hub3d classify --model x3d_m`, `hub3d features --model slowfast_r50`, random weights.

def cli(*args):
    from click.testing import CliRunner

    from hub3d.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_cli_classify_x3d_m(make_video, tmp_path):
    from conftest import random_frames

    videos = [make_video(frames=random_frames(n, 48, 64), fps=25) for n in (40, 90)]
    out = tmp_path / "x3d_m.json"
    r = cli("classify", *videos, "--model", "x3d_m", "--pretrained", "none", "--json", out, "-q", "--threads", 1)
    assert "RANDOM weights" in r.output
    doc = json.loads(out.read_text())
    assert doc["tag"] == "random" and (doc["clip_len"], doc["frame_step"], doc["stride"]) == (16, 5, 80)
    rows = {v["video"]: v for v in doc["videos"]}
    assert [c["frames"] for c in rows[str(videos[0])]["clips"]] == [[0, 40]]
    assert [c["frames"] for c in rows[str(videos[1])]["clips"]] == [[0, 80], [80, 90]]
    assert rows[str(videos[1])]["clips"][1]["seconds"] == pytest.approx([3.2, 3.6])
    labels = hub3d.get_pretrained_cfg("x3d_m", "kinetics400").class_names()
    assert len(rows[str(videos[0])]["topk"]) == 5 and rows[str(videos[0])]["topk"][0]["label"] in labels


def test_cli_features_slowfast_r50(make_video, tmp_path):
    from conftest import random_frames

    videos = [make_video(frames=random_frames(20, 48, 64, seed=s), fps=25) for s in (0, 1)]
    out_dir = tmp_path / "feats"
    # --clip-len 8 keeps the forward small (fast 8 frames, slow 2); the sampling rate stays the tag's 2.
    cli("features", *videos, "--model", "slowfast_r50", "--pretrained", "none", "--clip-len", 8,
        "--out-dir", out_dir, "--format", "npz", "-q", "--threads", 1)
    for v in videos:
        data = np.load(out_dir / (v.stem + ".npz"))
        assert data["features"].shape == (2, 2304)
        assert data["clip_frames"].tolist() == [[0, 16], [16, 20]]
        np.testing.assert_allclose(data["clip_seconds"], [[0, 0.64], [0.64, 0.8]], atol=1e-6)


@pytest.mark.parametrize("name", ["x3d_xs", "slow_r50", "s3d"])
def test_bf16_on_cpu_runs_the_fixed_kernel_heads(name, make_video):
    # torch has no CPU bf16 avg_pool3d: the heads pool in fp32 there; bf16 stays close to fp32.
    model = hub3d.create_model(name).eval()
    video = make_video(16, fps=25)
    spec = small_cfg(model, clip_len=8 if name != "s3d" else 16)
    ref, low = (hub3d.extract_features(model, video, spec=spec, precision=p)[0].features for p in ("fp32", "bf16"))
    assert low.shape == ref.shape and np.isfinite(low).all()
    assert np.abs(low - ref).max() <= 0.1 * np.abs(ref).max() + 1e-3
