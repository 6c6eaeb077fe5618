"""hub3d.render and `hub3d render`: the labelled video keeps frame count, size and rate; labels change the frames
only where they are drawn."""
from __future__ import annotations

import numpy as np
import torch
from click.testing import CliRunner
from conftest import random_frames

import hub3d
from hub3d.render import draw_label, font_size_for, frame_labels, render_video
from hub3d.video import probe, read_frames


def tiny(tmp_path=None):
    cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len=8, num_classes=4)
    torch.manual_seed(0)
    model = hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.125).eval()
    model.labels = ["jump", "run", "sit", "wave"]
    return model


def test_draw_label_only_touches_the_corner():
    image = np.full((120, 160, 3), 128, np.uint8)
    out = draw_label(image, "run 0.87")
    changed = (out != image).any(-1)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 100 and ys.max() < 120 // 3 and xs.max() < 160 * 3 // 4
    assert out[:ys.max()].min() == 0 and out.max() > 200  # dark box, light (antialiased) text
    assert font_size_for(720, 1280) == 40 and font_size_for(48, 64) == 10


def test_frame_labels_cover_the_clips():
    class R:
        clip_frames = np.array([[0, 8], [8, 16]])

        def clip_topk(self, k):
            return [[("run", 1, 0.9)], [("sit", 2, 0.6)]]

    assert frame_labels(R(), 18) == ["run 0.90"] * 8 + ["sit 0.60"] * 8 + [None, None]


def test_render_video_keeps_size_rate_and_count(make_video, tmp_path):
    frames = random_frames(20, 96, 128, seed=4)
    video = make_video(frames=frames, fps=12, name="in.mp4")
    model = tiny()
    out = render_video(model, video, tmp_path / "out" / "labelled.mp4")
    dst = probe(out)
    assert (dst.width, dst.height) == (128, 96) and abs(dst.fps - 12) < 1e-6
    a, b = read_frames(video).astype(int), read_frames(out).astype(int)
    assert len(b) == len(a) == 20
    result = hub3d.classify(model, video, topk=1)[0]
    assert result.n_clips == 3  # 8 + 8 + a loop-padded 4: every frame is labelled
    corner = (slice(0, 20), slice(0, 50))  # where the 10 px label box is drawn
    for i in range(20):
        assert np.abs(b[i][corner] - a[i][corner]).mean() > 40, i
        assert np.abs(b[i][40:, 70:] - a[i][40:, 70:]).mean() < 8, i  # elsewhere only a second lossy encode
    assert not list((tmp_path / "out").glob(".*"))  # no temp file left


def test_cli_render(make_video, tmp_path):
    from hub3d.cli import main

    tiny().save_pretrained(tmp_path / "m")
    video = make_video(frames=random_frames(10, 48, 64, seed=5), fps=25, name="v.mp4")
    r = CliRunner().invoke(main, ["render", str(video), "--out", str(tmp_path / "o.mp4"), "-m", str(tmp_path / "m"), "-q"])
    assert r.exit_code == 0, r.output
    assert probe(tmp_path / "o.mp4").num_frames == 10
