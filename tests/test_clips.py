"""hub3d.clips: window arithmetic (pure) and iter_clips on real videos (lossless, so frames are identifiable)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import level_of

from hub3d import transforms
from hub3d.clips import Clip, clip_windows, count_clips, iter_clips, loop_indices
from hub3d.pretrained import PretrainedCfg
from hub3d.transforms import preprocess_clip
from hub3d.video import VideoError, read_frames

# value_scale 255, mean 0, std 1: clip values are the pixel values, so each clip frame's gray level says
# which video frame it is. resize 24 -> crop 16 keeps the flat centre of pattern_frames away from the marker.
CFG = PretrainedCfg(value_scale=255, mean=(0, 0, 0), std=(1, 1, 1), resize=24, crop_size=16, clip_len=16)


@pytest.mark.parametrize("n,expected", [
    (1, [(0, 1)]),
    (15, [(0, 15)]),
    (16, [(0, 16)]),
    (17, [(0, 16), (16, 17)]),
    (31, [(0, 16), (16, 31)]),
    (32, [(0, 16), (16, 32)]),
    (33, [(0, 16), (16, 32), (32, 33)]),
])
def test_windows_loop(n, expected):
    assert clip_windows(n, 16) == expected
    assert count_clips(n, 16) == len(expected)


@pytest.mark.parametrize("n,drop,hara2017", [
    (1, [], []),
    (15, [], []),
    (16, [(0, 16)], []),  # the 2017 tool: range(1, n - 16 + 1, 16) is empty for n = 16
    (17, [(0, 16)], [(0, 16)]),
    (31, [(0, 16)], [(0, 16)]),
    (32, [(0, 16), (16, 32)], [(0, 16)]),
    (33, [(0, 16), (16, 32)], [(0, 16), (16, 32)]),
])
def test_windows_drop_and_2017(n, drop, hara2017):
    assert clip_windows(n, 16, tail="drop") == drop
    assert clip_windows(n, 16, tail="2017") == hara2017
    # the 2017 rule written out: 1-based starts range(1, n - L + 1, L)
    assert hara2017 == [(i - 1, i - 1 + 16) for i in range(1, n - 16 + 1, 16)]


def test_windows_overlap_and_gaps():
    assert clip_windows(32, 16, 8) == [(0, 16), (8, 24), (16, 32)]  # stops at the window reaching the end
    assert clip_windows(33, 16, 8) == [(0, 16), (8, 24), (16, 32), (24, 33)]
    assert clip_windows(20, 16, 8) == [(0, 16), (8, 20)]
    assert clip_windows(20, 16, 8, tail="drop") == [(0, 16)]
    assert clip_windows(40, 8, 12) == [(0, 8), (12, 20), (24, 32), (36, 40)]  # gaps between windows
    assert clip_windows(44, 8, 12) == [(0, 8), (12, 20), (24, 32), (36, 44)]
    assert clip_windows(38, 8, 12, tail="drop") == [(0, 8), (12, 20), (24, 32)]
    assert clip_windows(0, 16) == []
    for n in range(1, 70):  # every frame belongs to a clip with loop padding, whatever the stride <= clip_len
        for stride in (1, 5, 16):
            windows = clip_windows(n, 16, stride)
            covered = set().union(*(range(s, e) for s, e in windows))
            assert covered == set(range(n)) and windows[-1][1] == n
            assert all(e - s == 16 for s, e in windows[:-1])


def test_window_arguments_checked():
    with pytest.raises(ValueError, match="tail"):
        clip_windows(10, 16, tail="pad")
    with pytest.raises(ValueError, match="clip_len"):
        clip_windows(10, 0)
    with pytest.raises(ValueError, match="stride"):
        clip_windows(10, 16, -1)


def test_loop_indices():
    for s, e in [(0, 1), (3, 10), (16, 31), (0, 16)]:
        assert loop_indices(s, e, 16) == hara_loop_padding(list(range(s, e)), 16)
    assert loop_indices(16, 17, 4) == [16, 16, 16, 16]
    assert loop_indices(10, 15, 16) == [10, 11, 12, 13, 14, 10, 11, 12, 13, 14, 10, 11, 12, 13, 14, 10]
    assert loop_indices(0, 16, 16) == list(range(16))


def hara_loop_padding(indices: list[int], size: int) -> list[int]:
    """Independent reference: the 2020 code's LoopPadding (appends while iterating the growing list)."""
    out = list(indices)
    for index in out:
        if len(out) >= size:
            break
        out.append(index)
    return out


def clip_frame_ids(clip: Clip) -> list[int]:
    """Which video frame each clip frame is (from the gray level of pattern_frames)."""
    levels = clip.clip[0].mean(dim=(1, 2)).round().long().tolist()
    by_level = {level_of(i): i for i in range(33)}
    return [by_level[v] for v in levels]


@pytest.fixture
def lossless(make_video):
    def make(n, fps=25.0, **kw):
        return make_video(n, 32, 40, fps=fps, codec="ffv1", pix_fmt="bgr0", suffix=".mkv", **kw)
    return make


@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 32, 33])
def test_iter_clips_loop_padding(lossless, n):
    path = lossless(n)
    clips = list(iter_clips(path, CFG))
    windows = clip_windows(n, 16)
    assert len(clips) == len(windows)
    for k, (clip, (s, e)) in enumerate(zip(clips, windows)):
        assert clip.video == str(path) and clip.index == k and clip.frames == (s, e)
        assert clip.clip.shape == (3, 16, 16, 16) and clip.clip.dtype == torch.float32
        assert clip_frame_ids(clip) == hara_loop_padding(list(range(s, e)), 16)
        assert clip.padded == (e - s < 16)
        assert clip.seconds == pytest.approx((s / 25, (e - 1) / 25 + 1 / 25), abs=1e-6)


def test_iter_clips_equal_batch_preprocessing(lossless):
    path = lossless(20)
    video = read_frames(path)
    for clip in iter_clips(path, CFG, stride=8):
        s, e = clip.frames
        expected = preprocess_clip(video[hara_loop_padding(list(range(s, e)), 16)], CFG)
        torch.testing.assert_close(clip.clip, expected, rtol=0, atol=0)


@pytest.fixture
def count_preprocessing(monkeypatch):
    """Counts the frames resized/cropped (Preprocess.spatial) and normalised (clips.normalize)."""
    import hub3d.clips as clips

    counts = {"spatial": 0, "normalized": 0}
    spatial, normalize = transforms.Preprocess.spatial, clips.normalize

    def count_spatial(self, frames):
        out = spatial(self, frames)
        counts["spatial"] += out.shape[0]
        return out

    def count_normalize(frames, cfg):
        counts["normalized"] += frames.shape[0]
        return normalize(frames, cfg)

    monkeypatch.setattr(transforms.Preprocess, "spatial", count_spatial)
    monkeypatch.setattr(clips, "normalize", count_normalize)
    return counts


def test_iter_clips_overlap_preprocesses_each_frame_once(lossless, count_preprocessing):
    path = lossless(33)
    clips = list(iter_clips(path, CFG, stride=4))
    assert [c.frames for c in clips] == clip_windows(33, 16, 4)
    assert [clip_frame_ids(c) for c in clips] == [hara_loop_padding(list(range(s, e)), 16)
                                                  for s, e in clip_windows(33, 16, 4)]
    assert count_preprocessing == {"spatial": 33, "normalized": 33}


def test_iter_clips_gaps_skip_unused_frames(lossless, count_preprocessing):
    path = lossless(30)
    clips = list(iter_clips(path, CFG, clip_len=4, stride=10))
    assert [c.frames for c in clips] == [(0, 4), (10, 14), (20, 24)]
    assert [clip_frame_ids(c) for c in clips] == [[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]]
    assert count_preprocessing == {"spatial": 12, "normalized": 12}  # gap frames: decoded, not preprocessed


def test_iter_clips_tail_drop_and_2017(lossless):
    path = lossless(32)
    assert [c.frames for c in iter_clips(path, CFG, tail="drop")] == [(0, 16), (16, 32)]
    assert [c.frames for c in iter_clips(path, CFG, tail="2017")] == [(0, 16)]
    short = lossless(10)
    with pytest.warns(UserWarning, match="no clip"):
        assert list(iter_clips(short, CFG, tail="drop")) == []


def test_iter_clips_fps_start_end(lossless):
    path = lossless(33, fps=25)  # 1.32 s; at 12.5 fps: every other frame, 17 frames
    clips = list(iter_clips(path, CFG, clip_len=8, fps=12.5))
    assert [c.frames for c in clips] == [(0, 8), (8, 16), (16, 17)]
    assert clip_frame_ids(clips[0]) == list(range(0, 16, 2))
    assert clips[1].seconds == pytest.approx((8 / 12.5, 16 / 12.5))
    assert clip_frame_ids(clips[2]) == [32] * 8
    clips = list(iter_clips(path, CFG, clip_len=4, start=0.4, end=0.8))  # frames 10..19
    assert [c.frames for c in clips] == [(0, 4), (4, 8), (8, 10)]
    assert clip_frame_ids(clips[0]) == [10, 11, 12, 13]
    assert clips[0].seconds == pytest.approx((0.4, 0.56))
    with pytest.raises(VideoError, match="no frame"):
        list(iter_clips(path, CFG, start=5.0))


def test_iter_clips_model_list_overrides_and_folders(lossless, make_frame_folder):
    class Model(torch.nn.Module):
        pretrained_cfg = CFG

    a, b = lossless(17), lossless(5)
    folder = make_frame_folder(3, 32, 40)
    clips = list(iter_clips([a, b, folder], Model(), clip_len=4, crop_size=8))
    assert [(c.video, c.index, c.frames) for c in clips] == (
        [(str(a), k, (s, e)) for k, (s, e) in enumerate(clip_windows(17, 4))]
        + [(str(b), 0, (0, 4)), (str(b), 1, (4, 5)), (str(folder), 0, (0, 3))])
    assert all(c.clip.shape == (3, 4, 8, 8) for c in clips)
    assert clip_frame_ids(clips[-1]) == [0, 1, 2, 0]
    with pytest.raises(TypeError, match="pretrained_cfg"):
        list(iter_clips(a, object()))


def test_iter_clips_cfg_stride_default(lossless):
    path = lossless(24)
    cfg = CFG.replace(clip_len=8, clip_stride=4)
    assert [c.frames for c in iter_clips(path, cfg)] == clip_windows(24, 8, 4)
    assert [c.frames for c in iter_clips(path, cfg, clip_len=12)] == clip_windows(24, 12, 12)


def test_iter_clips_streams(lossless, monkeypatch):
    # Clips come out while the video is still being decoded, holding at most one window of frames.
    import hub3d.video as video

    path = lossless(33)
    decoded = []
    original = video.timed_frames

    def spy(*args, **kw):
        for item in original(*args, **kw):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(video, "timed_frames", spy)
    it = iter_clips(path, CFG)
    first = next(it)
    assert first.frames == (0, 16) and len(decoded) == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rest = list(it)
    assert [c.frames for c in rest] == [(16, 32), (32, 33)] and len(decoded) == 33
    assert np.isfinite(first.clip.numpy()).all()


def test_clips_feed_a_model(make_video):
    import hub3d

    model = hub3d.create_model("resnet3d_10", num_classes=5, widen_factor=0.25).eval()
    path = make_video(20, 40, 56, codec="libx264")
    clips = list(iter_clips(path, model, clip_len=8, resize=32, crop_size=32))
    assert [c.frames for c in clips] == [(0, 8), (8, 16), (16, 20)]
    with torch.no_grad():
        out = model(torch.stack([c.clip for c in clips]))
    assert out.shape == (3, 5) and torch.isfinite(out).all()


def test_iter_clips_rotated_and_vfr(make_video):
    times = [0.0, 0.1, 0.15, 0.5, 0.52, 1.0]
    path = make_video(frames=np.stack([np.full((48, 64, 3), level_of(i), np.uint8) for i in range(6)]),
                      times=times, rotation=90, codec="libx264")
    clips = list(iter_clips(path, CFG.replace(resize=16), clip_len=4))
    assert [c.frames for c in clips] == [(0, 4), (4, 6)]
    assert clips[0].seconds[0] == pytest.approx(0.0) and clips[1].seconds[0] == pytest.approx(0.52, abs=1e-3)
    assert clips[1].seconds[1] > 1.0  # the last frame's time + its nominal duration
    assert [clip_frame_ids(c) for c in clips] == [[0, 1, 2, 3], [4, 5, 4, 5]]
