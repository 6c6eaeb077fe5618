"""Optical flow for I3D's flow stream: stored x/y folders, TV-L1 from videos, the flow extra, and --two-stream."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import hub3d
from hub3d import flow, video
from hub3d.cli import main
from hub3d.clips import estimate_clips, spec_clips
from hub3d.errors import MissingExtraError, VideoError
from hub3d.inference import VideoResult, fuse_two_stream

pytest.importorskip("cv2", reason="the hub3d[flow] extra (in the test extra: CI runs these)")

SMALL = dict(resize=40, crop_size=32, clip_len=8)  # I3D at its real architecture, on clips a CPU test affords


def shifted_frames(n: int, shift: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth texture moving `shift` pixels right per frame (wrapping): TV-L1 should see x = shift, y = 0."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4, width // 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
    return np.stack([np.roll(base, i * shift, axis=1) for i in range(n)])


def write_flow_folder(folder, flows: np.ndarray, layout: str):
    """Flow frames (T, H, W, 2) uint8 as the originals store them: one of three layouts (PNG: lossless)."""
    folder.mkdir(parents=True)
    for i, f in enumerate(flows, 1):
        for axis, image in (("x", f[..., 0]), ("y", f[..., 1])):
            if layout == "subfolders":
                (folder / axis).mkdir(exist_ok=True)
                path = folder / axis / f"frame{i:06d}.png"
            elif layout == "denseflow":
                path = folder / f"flow_{axis}_{i:05d}.png"
            else:  # piergiaj's Charades flow: VID-000001x.jpg
                path = folder / f"vid-{i:06d}{axis}.png"
            Image.fromarray(image).save(path)
    return folder


def flow_model(name="i3d_flow", seed=0, **cfg):
    torch.manual_seed(seed)
    model = hub3d.create_model(name, num_classes=5).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(**{**SMALL, **cfg})
    return model


# ------------------------------------------------------------------------------------------ encoding
def test_encoding_clips_to_bound_and_round_trips():
    px = np.array([-30.0, -20.0, -5.0, 0.0, 7.5, 20.0, 45.0], dtype=np.float32)
    enc = flow.encode_flow(px)
    assert enc.dtype == np.float32 and enc[0] == 0 and enc[-1] == 255 and enc[3] == pytest.approx(127.5)
    assert np.allclose(flow.decode_flow(enc), np.clip(px, -20, 20), atol=1e-5)
    # The flow weights' normalisation (value / 255, mean 0.5, std 0.5) turns the encoding into flow / 20.
    spec = hub3d.resolve_clip_spec(flow_model())
    x = hub3d.transforms.normalize(torch.from_numpy(np.stack([enc, enc], -1)[None, None]), spec)
    assert torch.allclose(x[0, 0, 0], torch.from_numpy(np.clip(px, -20, 20) / 20), atol=1e-6)


def test_tvl1_measures_a_known_motion():
    frames = shifted_frames(3, shift=2)
    f = flow.tvl1_flow(frames)
    assert f.shape == (2, 48, 64, 2) and f.dtype == np.float32
    inner = f[:, 8:-8, 8:-8]  # away from the wrap-around edge
    assert abs(float(np.median(inner[..., 0])) - 2) < 0.2 and abs(float(np.median(inner[..., 1]))) < 0.2


# ------------------------------------------------------------------------------------- stored folders
@pytest.mark.parametrize("layout", ["subfolders", "denseflow", "charades"])
def test_flow_folders_read_as_stored(tmp_path, layout):
    flows = np.random.default_rng(1).integers(0, 256, (5, 24, 30, 2), dtype=np.uint8)
    folder = write_flow_folder(tmp_path / "v", flows, layout)
    assert len(video.flow_pairs(folder)) == 5
    got = video.read_frames(folder)
    assert got.shape == (5, 24, 30, 2) and np.array_equal(got, flows)
    assert video.declared_frames(folder) == 5 and video.probe(folder).num_frames == 5
    # Through a flow model's clips: exactly p / 127.5 - 1, center-cropped.
    spec = hub3d.resolve_clip_spec(flow_model(), resize=24, crop_size=(24, 24), clip_len=5)
    (clip,) = list(spec_clips(str(folder), spec))
    want = torch.from_numpy(flows[:, :, 3:27].astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2)
    assert torch.allclose(clip.clip, want, atol=1e-6)


def test_rgb_folders_are_not_flow(make_frame_folder):
    assert video.flow_pairs(make_frame_folder(num_frames=3)) is None


def test_unpaired_flow_image_names_the_file(tmp_path):
    folder = write_flow_folder(tmp_path / "v", np.zeros((3, 8, 8, 2), np.uint8), "denseflow")
    (folder / "flow_y_00003.png").unlink()
    with pytest.raises(VideoError, match=r"flow_x_00003\.png has no partner") as e:
        video.flow_pairs(folder)
    assert str(folder) in str(e.value)
    sub = write_flow_folder(tmp_path / "s", np.zeros((3, 8, 8, 2), np.uint8), "subfolders")
    (sub / "y" / "frame000002.png").unlink()
    with pytest.raises(VideoError, match="x/ and y/ differ: frame000002.png"):
        video.flow_pairs(sub)


def test_rgb_model_refuses_a_flow_folder(tmp_path, tiny_model):
    folder = write_flow_folder(tmp_path / "v", np.zeros((4, 16, 16, 2), np.uint8), "denseflow")
    with pytest.raises(VideoError, match="optical-flow frames") as e:
        hub3d.classify(tiny_model(), str(folder))
    assert str(folder) in str(e.value)
    with pytest.raises(ValueError, match="flow frames, but the model takes RGB"):
        hub3d.classify(tiny_model(), np.zeros((4, 16, 16, 2), np.uint8))


# ------------------------------------------------------------------------------------- flow from video
def test_flow_from_a_real_video_is_the_motion_scaled(make_video):
    path = make_video(frames=shifted_frames(11, shift=2), fps=10)
    spec = hub3d.resolve_clip_spec(flow_model(), crop_size=40, resize=48)  # 48 x 64: no scaling of the motion
    clips = list(spec_clips(str(path), spec))
    assert [c.frames for c in clips] == [(0, 8), (8, 10)]  # 11 frames -> 10 flow frames
    assert estimate_clips(str(path), spec) == len(clips)
    x, y = clips[0].clip[0], clips[0].clip[1]
    assert abs(float(x.median()) - 2 / 20) < 0.02 and abs(float(y.median())) < 0.02  # 2 px right, / 20
    # Resize first, then flow (DeepMind's order): at short side 96 the same motion is 4 px.
    clips = list(spec_clips(str(path), spec.replace(resize=96, crop_size=64)))
    assert abs(float(clips[0].clip[0].median()) - 4 / 20) < 0.03


def test_missing_extra_is_named(monkeypatch, make_video):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'hub3d\[flow\]'"):
        flow.tvl1()
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(__version__="4.9.0"))  # opencv-python, no contrib
    with pytest.raises(MissingExtraError, match="without its contrib modules"):
        flow.tvl1()
    # The CLI says it once, before any video is read, and exits 1.
    path = str(make_video(num_frames=4))
    r = CliRunner().invoke(main, ["classify", path, path, "-m", "i3d_flow", "-p", "none", "-q"])
    assert r.exit_code == 1 and r.output.count("hub3d[flow]") == 1 and "contrib" in r.output, r.output


# ------------------------------------------------------------------------------------------ two streams
def result(probs, frames=None):
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    frames = np.asarray(frames if frames is not None else [[8 * i, 8 * i + 8] for i in range(n)])
    labels = [f"c{i}" for i in range(probs.shape[1])]
    return VideoResult("v.mp4", probs.mean(0), [], probs, frames, frames / 25.0, labels)


def test_fuse_averages_each_clip_and_keeps_an_unpaired_tail():
    rgb = result([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5]])
    fl = result([[0.2, 0.8], [0.4, 0.6]])
    fused = fuse_two_stream(rgb, fl, topk=2)
    assert np.allclose(fused.clip_probs, [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    assert np.allclose(fused.probs, fused.clip_probs.mean(0)) and fused.n_clips == 3
    assert np.array_equal(fused.clip_frames, rgb.clip_frames)
    with pytest.raises(ValueError, match="share their classes"):
        fuse_two_stream(rgb, result([[0.1, 0.2, 0.7]]))


@pytest.mark.slow
def test_cli_two_stream_is_the_mean_of_both_streams(make_video, tmp_path):
    from hub3d.publish import save_pretrained

    rgb_dir, flow_dir = tmp_path / "rgb", tmp_path / "flow"
    save_pretrained(flow_model("i3d", seed=1), rgb_dir)
    save_pretrained(flow_model("i3d_flow", seed=2), flow_dir)
    path = str(make_video(frames=shifted_frames(12, shift=1), fps=10))
    common = ["--pretrained", "none", "--threads", "1", "-q"]

    def classify(*args):
        out = tmp_path / f"r{len(list(tmp_path.iterdir()))}.json"
        r = CliRunner().invoke(main, ["classify", path, *common, "--json", str(out), "--probs", *args])
        assert r.exit_code == 0, r.output
        return json.loads(out.read_text())

    both = classify("-m", str(rgb_dir), "--two-stream", "--flow-model", str(flow_dir))
    rgb, fl = classify("-m", str(rgb_dir)), classify("-m", str(flow_dir))
    assert both["flow_model"] == str(flow_dir)
    v, r, f = both["videos"][0], rgb["videos"][0], fl["videos"][0]
    assert [c["frames"] for c in v["clips"]] == [[0, 8], [8, 12]] and v["clips"][1]["seconds"] == pytest.approx(
        [0.8, 1.2])
    assert len(f["clips"]) == 2  # 11 flow frames: the same two windows
    want = [(np.array(a["probs"]) + np.array(b["probs"])) / 2 for a, b in zip(r["clips"], f["clips"])]
    assert np.allclose([c["probs"] for c in v["clips"]], want, atol=1e-6)
    assert np.allclose(v["probs"], np.mean(want, axis=0), atol=1e-6)
    # Flow features of the same video, 1024-d, per clip.
    feats = tmp_path / "f.npy"
    r = CliRunner().invoke(main, ["features", path, "-m", str(flow_dir), *common, "--out", str(feats)])
    assert r.exit_code == 0, r.output
    assert np.load(feats).shape == (2, 1024)


def test_two_stream_refuses_two_rgb_models(make_video):
    path = str(make_video(num_frames=4))
    r = CliRunner().invoke(main, ["classify", path, "-m", "i3d", "-p", "none", "--two-stream", "--flow-model",
                                  "i3d", "-q"])
    assert r.exit_code == 2 and "flow --flow-model" in r.output, r.output


def test_flow_progress_counts_the_frames_to_compute(make_video, tmp_path):
    from hub3d.inference import _flow_bar

    spec = hub3d.resolve_clip_spec(flow_model())
    path = str(make_video(num_frames=12))
    stored = str(write_flow_folder(tmp_path / "v", np.zeros((3, 8, 8, 2), np.uint8), "denseflow"))
    bar = _flow_bar(True, [path, stored], spec)
    assert bar.total == 11 and bar.unit == "frame"  # 12 frames -> 11 flow frames; the stored folder: none
    bar.close()
    assert _flow_bar(True, [stored], spec) is None  # nothing to compute
    assert _flow_bar(False, [path], spec) is None
    assert _flow_bar(True, [path], hub3d.resolve_clip_spec(hub3d.create_model("i3d"))) is None  # RGB
    bar = _flow_bar(True, [np.zeros((4, 8, 8, 3), np.uint8)], spec)  # in-memory frames: total unknown
    assert bar.total is None
    bar.close()


def test_two_stream_api_fails_a_video_either_stream_fails(make_video):
    rgb, fl = flow_model("i3d", seed=1), flow_model("i3d_flow", seed=2)
    one_frame = str(make_video(num_frames=1))  # RGB loop-pads it; flow has no pair of frames
    good = str(make_video(frames=shifted_frames(9, shift=1), fps=10))
    with pytest.warns(UserWarning, match=f"skipped {one_frame}"):
        results = hub3d.classify_two_stream(rgb, fl, [one_frame, good], on_error="skip", threads=1)
    assert [r.video for r in results] == [good] and results[0].n_clips == 2
    with pytest.raises(VideoError, match=one_frame):
        hub3d.classify_two_stream(rgb, fl, [one_frame], threads=1)


def test_cli_takes_a_tree_of_flow_folders(tmp_path, make_frame_folder):
    from hub3d.io import expand_video_paths, frame_folders
    from hub3d.publish import save_pretrained

    root = tmp_path / "flow"
    flows = np.random.default_rng(2).integers(0, 256, (6, 40, 48, 2), dtype=np.uint8)
    a = write_flow_folder(root / "a", flows, "denseflow")
    b = write_flow_folder(root / "b", flows[:4], "subfolders")  # its x/ and y/ are its flow, not two videos
    assert frame_folders(root) == [str(a), str(b)] and expand_video_paths([root]) == [str(a), str(b)]
    rgb = make_frame_folder(num_frames=3)  # an RGB frame folder is one video too
    assert expand_video_paths([rgb]) == [str(rgb)]
    model_dir = tmp_path / "model"
    save_pretrained(flow_model(), model_dir)
    out = tmp_path / "feats"
    r = CliRunner().invoke(main, ["features", str(root), "-m", str(model_dir), "--out-dir", str(out), "-q",
                                  "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert np.load(out / "a.npy").shape == (1, 1024) and np.load(out / "b.npy").shape == (1, 1024)
