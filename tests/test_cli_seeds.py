"""`hub3d classify` / `hub3d features` on a real h264 video with the seed systems (random weights, the smallest
clips each model takes: I3D 8 frames (any T surviving its strides), C3D its fixed 16x112x112, P3D 16 frames)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hub3d.cli import main

CASES = {"i3d": ("8", 1024), "c3d": ("16", 4096), "p3d_63": ("16", 2048)}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(CASES))
def test_classify_and_features_on_a_real_video(model, make_video, tmp_path):
    clip_len, dim = CASES[model]
    video = str(make_video(num_frames=int(clip_len) + 4, height=48, width=64))
    common = ["--model", model, "--pretrained", "none", "--clip-len", clip_len, "--threads", "1", "-q"]
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["classify", video, *common, "--json", str(out)])
    assert result.exit_code == 0, result.output
    clips = json.loads(out.read_text())["videos"][0]["clips"]
    n = int(clip_len)
    assert [c["frames"] for c in clips] == [[0, n], [n, n + 4]]
    assert clips[0]["seconds"] == pytest.approx([0, n / 25])
    feats = tmp_path / "f.npy"
    result = CliRunner().invoke(main, ["features", video, *common, "--out", str(feats)])
    assert result.exit_code == 0, result.output
    assert np.load(feats).shape == (2, dim)
