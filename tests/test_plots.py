"""hub3d.plots and the CLI's --plot: the pictures are read back (size, a non-blank plot area, valid SVG)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

import hub3d
from hub3d.inference import FeatureResult, VideoResult, _topk
from hub3d.plots import cosine_similarity, pca_2d, plot_path, plot_similarity, plot_timeline

pytest.importorskip("matplotlib", reason="the hub3d[plot] extra")


def fake_result(n_clips=6, labels=("jump", "run", "sit", "wave")):
    """A VideoResult whose top class changes half way: clips 0-2 'run', 3-5 'wave'."""
    probs = np.full((n_clips, len(labels)), 0.05, np.float32)
    probs[: n_clips // 2, 1], probs[n_clips // 2:, 3] = 0.85, 0.85
    seconds = np.array([[i * 0.64, (i + 1) * 0.64] for i in range(n_clips)])
    frames = np.array([[i * 16, (i + 1) * 16] for i in range(n_clips)], np.int64)
    mean = probs.mean(0)
    return VideoResult("walk/video.mp4", mean, _topk(mean, list(labels), 3), probs, frames, seconds, list(labels))


def plot_area_pixels(png):
    """RGB pixels of the middle of the picture (inside the axes of a one-axes figure)."""
    im = np.asarray(Image.open(png).convert("RGB"))
    h, w = im.shape[:2]
    return im[h // 4: 3 * h // 4, w // 6: w // 2]


def test_timeline_png(tmp_path):
    out = plot_timeline(fake_result(), tmp_path / "sub" / "t.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (800, 360)
    area = plot_area_pixels(out)
    assert (area < 250).any(axis=-1).mean() > 0.003  # lines drawn inside the axes, not a blank frame
    assert len(np.unique(area.reshape(-1, 3), axis=0)) > 4  # several line colours


def test_timeline_svg_parses_and_names_the_classes(tmp_path):
    out = plot_timeline(fake_result(), tmp_path / "t.svg")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    text = out.read_text()
    assert "run" in text and "wave" in text and "seconds" in text  # legend and axis (matplotlib keeps text as text)


def test_bad_plot_extension(tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        plot_timeline(fake_result(), tmp_path / "t.jpg")
    assert not list(tmp_path.iterdir())


def test_similarity_shows_the_scene_change(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    feats = np.stack([a + 0.05 * rng.normal(size=16) for _ in range(4)] + [b + 0.05 * rng.normal(size=16) for _ in range(4)])
    sim = cosine_similarity(feats)
    assert np.allclose(np.diag(sim), 1) and sim[:4, :4].min() > 0.95 and abs(sim[0, 7]) < sim[0, 1]
    xy = pca_2d(feats)
    assert xy.shape == (8, 2) and np.sign(xy[:4, 0]).tolist().count(np.sign(xy[0, 0])) == 4
    assert np.sign(xy[4, 0]) != np.sign(xy[0, 0])  # the two scenes fall on either side of PC 1
    seconds = np.array([[i, i + 1.0] for i in range(8)])
    r = FeatureResult("v.mp4", feats.astype(np.float32), np.zeros((8, 2), np.int64), seconds)
    out = plot_similarity(r, tmp_path / "s.png")
    with Image.open(out) as im:
        assert im.size == (900, 400)
    assert (plot_area_pixels(out) < 250).any(axis=-1).mean() > 0.2  # the matrix fills its axes
    assert plot_similarity(r.__class__("v.mp4", feats[:1], np.zeros((1, 2), np.int64), seconds[:1]),
                           tmp_path / "one.png").exists()  # a one-clip video still plots


def test_plot_path_per_video(tmp_path):
    assert plot_path("t.png", "a/x.mp4", ["a/x.mp4"]) == plot_path("t.png", "a/x.mp4", [])
    names = [plot_path(tmp_path / "t.png", v, ["a/x.mp4", "a/b/x.mp4"]).name for v in ("a/x.mp4", "a/b/x.mp4")]
    # the feature outputs' naming rule: the file name, a same-named pair told apart by a hash of the path
    assert len(set(names)) == 2 and all(n.startswith("t-x-") and n.endswith(".png") for n in names)
    assert plot_path(tmp_path / "t.png", "a/y.mp4", ["a/y.mp4", "b/z.mp4"]).name == "t-y.png"


def test_cli_plot_flags(make_video, tmp_path):
    from click.testing import CliRunner
    from conftest import random_frames

    from hub3d.cli import main

    cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len=8, num_classes=4)
    torch.manual_seed(0)
    hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.125).save_pretrained(tmp_path / "m")
    video = make_video(frames=random_frames(40, 48, 64, seed=2), fps=10, name="v.mp4")
    r = CliRunner().invoke(main, ["classify", str(video), "-m", str(tmp_path / "m"), "--plot", str(tmp_path / "t.png"), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["features", str(video), "-m", str(tmp_path / "m"), "--out", str(tmp_path / "f.npy"),
                                  "--plot", str(tmp_path / "s.svg"), "-q"])
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "t.png") as im:
        assert im.size == (800, 360)
    ET.parse(tmp_path / "s.svg")
