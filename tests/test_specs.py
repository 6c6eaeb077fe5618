"""hub3d.specs (ClipSpec / RunSpec) and what the clip pipeline does with it: frame steps, BGR, full mean
arrays, two pathways, in-memory videos and pluggable runners."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import level_of, random_frames

import hub3d
from hub3d import inference
from hub3d.clips import clip_windows, iter_clips, loop_indices, pack_pathways, train_indices
from hub3d.pretrained import PretrainedCfg
from hub3d.specs import ClipSpec, RunSpec, resolve_clip_spec, resolve_device, resolve_precision, resolve_run_spec
from hub3d.transforms import Preprocess
from hub3d.video import read_frames

# Clip values are the pixel values (value_scale 255, mean 0, std 1): a clip frame's gray level tells which
# source frame it is.
CFG = PretrainedCfg(value_scale=255, mean=(0, 0, 0), std=(1, 1, 1), resize=24, crop_size=16, clip_len=4)


@pytest.fixture
def lossless(make_video):
    def make(n, fps=25.0):
        return make_video(n, 32, 40, fps=fps, codec="ffv1", pix_fmt="bgr0", suffix=".mkv")
    return make


def frame_ids(clip: torch.Tensor) -> list[int]:
    by_level = {level_of(i): i for i in range(33)}
    return [by_level[v] for v in clip[0].mean(dim=(1, 2)).round().long().tolist()]


@pytest.mark.parametrize("bad,match", [
    (dict(clip_len=0), "clip_len"), (dict(clip_len=10_001), "clip_len"), (dict(stride=0), "stride"),
    (dict(frame_step=0), "frame_step"), (dict(tail="pad"), "tail"), (dict(crop_size=-1), "crop_size"),
    (dict(resize=(0, 5)), "resize"), (dict(mean=(0, 0)), "mean"), (dict(std=(1, 0, 1)), "std"),
    (dict(channel_order="GBR"), "channel_order"), (dict(pathway_alpha=9, clip_len=8), "pathway_alpha"),
])
def test_clip_spec_is_validated_once(bad, match):
    with pytest.raises(ValueError, match=match):
        ClipSpec(**bad)
    with pytest.raises(ValueError, match=match):
        resolve_clip_spec(CFG, **bad)


def test_clip_spec_resolution_and_stride_default():
    spec = resolve_clip_spec(CFG)
    assert (spec.clip_len, spec.frame_step, spec.stride, spec.tail, spec.crop_size) == (4, 1, 4, "loop", 16)
    assert resolve_clip_spec(CFG.replace(clip_stride=2)).stride == 2  # the weights' own stride
    assert resolve_clip_spec(CFG.replace(clip_stride=2), clip_len=6).stride == 6  # other sampling: one span
    assert resolve_clip_spec(CFG, frame_step=5).stride == 20
    assert resolve_clip_spec(CFG.replace(frame_step=6, clip_len=13)).span == 78
    assert resolve_clip_spec(CFG, stride=3, tail="drop").stride == 3
    with pytest.raises(TypeError, match="unknown clip options"):
        resolve_clip_spec(CFG, clip_length=3)
    with pytest.raises(ValueError, match="frame rate"):
        resolve_clip_spec(CFG, fps="model")
    assert resolve_clip_spec(CFG.replace(fps=30.0), fps="model").fps == 30.0
    assert resolve_clip_spec(CFG.replace(fps=30.0)).fps is None  # resampling is opt-in


def test_pretrained_cfg_new_fields_round_trip():
    cfg = CFG.replace(frame_step=6, fps=30.0, channel_order="BGR", mean_array="c3d_mean.npy", pathway_alpha=4)
    assert PretrainedCfg.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in CFG.to_dict().items()
           if k not in ("frame_step", "fps", "channel_order", "mean_array", "pathway_alpha")}
    assert PretrainedCfg.from_dict(old) == CFG  # config.json files written before these fields still load
    assert CFG.frame_step == 1 and CFG.channel_order == "RGB" and CFG.stride == 4


def test_windows_and_indices_under_a_frame_step():
    assert clip_windows(200, 16, frame_step=5) == [(0, 80), (80, 160), (160, 200)]  # a clip spans 80 frames
    assert clip_windows(200, 16, frame_step=5, tail="drop") == [(0, 80), (80, 160)]
    assert clip_windows(161, 16, frame_step=5, tail="2017") == [(0, 80), (80, 160)]
    assert clip_windows(160, 16, frame_step=5, tail="2017") == [(0, 80)]
    assert clip_windows(100, 4, stride=10, frame_step=3) == [(s, s + 12) for s in range(0, 81, 10)] + [(90, 100)]
    assert loop_indices(0, 80, 16, 5) == list(range(0, 80, 5))
    assert loop_indices(160, 170, 4, 5) == [160, 165, 160, 165]  # loop padding of the real sampled frames
    assert loop_indices(3, 9, 8) == [3, 4, 5, 6, 7, 8, 3, 4]  # step 1: as before
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = train_indices(100, 8, rng, frame_step=3)
        assert len(idx) == 8 and np.all(np.diff(idx) == 3) and idx[-1] < 100
    assert train_indices(5, 4, rng, frame_step=2) == [0, 2, 4, 0]


def test_iter_clips_with_a_frame_step(lossless):
    path = lossless(30, fps=10.0)
    clips = list(iter_clips(path, CFG, frame_step=3, stride=5))
    windows = clip_windows(30, 4, stride=5, frame_step=3)
    assert [c.frames for c in clips] == windows == [(0, 12), (5, 17), (10, 22), (15, 27), (20, 30)]
    for c, (s, e) in zip(clips, windows):
        assert frame_ids(c.clip) == loop_indices(s, e, 4, 3)
        assert c.seconds == pytest.approx((s / 10, e / 10), abs=1e-6)
        assert c.padded == (e - s < 12)
    assert [c.padded for c in clips] == [False] * 4 + [True]  # [20, 30) holds 20, 23, 26, 29: no repeat, but short
    short = list(iter_clips(lossless(5), CFG, frame_step=2))
    assert [c.frames for c in short] == [(0, 5)] and frame_ids(short[0].clip) == [0, 2, 4, 0]


def test_bgr_flips_channels_before_normalisation(make_video):
    path = make_video(frames=random_frames(8, 32, 40), codec="ffv1", pix_fmt="bgr0", suffix=".mkv")  # in colour
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    rgb = next(iter_clips(path, CFG, value_scale=1, mean=mean, std=std)).clip
    bgr = next(iter_clips(path, CFG, value_scale=1, mean=mean[::-1], std=std[::-1], channel_order="BGR")).clip
    torch.testing.assert_close(bgr, rgb.flip(0), rtol=0, atol=1e-6)
    assert not torch.allclose(bgr, rgb, atol=0.1)  # coloured frames: the flip is visible


def write_blob_proto(path, cube: np.ndarray):
    """A C3D mean file written by hand (caffe.proto BlobProto: num, channels, length, height, width = fields 1-5
    as varints, data = field 6, packed little-endian floats): no protobuf library in hub3d or its tests."""
    def varint(n):
        out = b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out
    header = b"".join(bytes([f << 3]) + varint(v) for f, v in zip((1, 2, 3, 4, 5), (1, *cube.shape)))
    data = cube.astype("<f4").tobytes()
    path.write_bytes(header + bytes([6 << 3 | 2]) + varint(len(data)) + data)
    return path


def test_caffe_mean_cube_loads_as_a_mean_array(lossless, tmp_path):
    cube = np.random.default_rng(0).uniform(80, 120, (3, 5, 24, 30)).astype(np.float32)
    proto = write_blob_proto(tmp_path / "sport1m_train16_128_mean.binaryproto", cube)
    assert np.array_equal(hub3d.specs.load_mean_array(str(proto)), cube)
    path = lossless(10)
    from_proto = next(iter_clips(path, CFG, resize=(24, 30), mean_array=str(proto))).clip
    from_array = next(iter_clips(path, CFG, resize=(24, 30), mean_array=cube)).clip
    assert torch.equal(from_proto, from_array)
    proto.write_bytes(proto.read_bytes()[:100])  # cut short
    with pytest.raises(ValueError, match=f"{proto}: not a Caffe mean file \\(truncated data\\)"):
        hub3d.specs.load_mean_array(str(proto))


def test_mean_array_is_cropped_with_the_frames_and_subtracted_per_frame(lossless, tmp_path):
    path = lossless(10)
    # resize (24, 30) then center crop 16: offsets (4, 7). Each (t, y, x) of the cube is distinct.
    cube = np.arange(3 * 5 * 24 * 30, dtype=np.float32).reshape(3, 5, 24, 30) / 1000
    np.save(tmp_path / "mean.npy", cube)
    plain = list(iter_clips(path, CFG, resize=(24, 30)))
    with_mean = list(iter_clips(path, CFG, resize=(24, 30), mean_array=str(tmp_path / "mean.npy")))
    expected = torch.from_numpy(cube[:, :4, 4:20, 7:23].copy())
    for p, m in zip(plain, with_mean):
        torch.testing.assert_close(m.clip, p.clip - expected, rtol=0, atol=1e-5)
    std = (2.0, 4.0, 8.0)
    scaled = next(iter_clips(path, CFG, resize=(24, 30), std=std, mean_array=cube)).clip
    torch.testing.assert_close(scaled, (plain[0].clip - expected) / torch.tensor(std).view(3, 1, 1, 1),
                               rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="mean=\\(0, 0, 0\\)"):
        resolve_clip_spec(CFG.replace(mean=(0.4, 0.4, 0.4)), mean_array=cube)
    with pytest.raises(ValueError, match="resized to 24x24"):
        resolve_clip_spec(CFG, resize=(24, 24), mean_array=cube)
    with pytest.raises(ValueError, match="fewer than clip_len"):
        resolve_clip_spec(CFG, clip_len=6, mean_array=cube)
    np.save(tmp_path / "bad.npy", cube[0])
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        resolve_clip_spec(CFG, mean_array=str(tmp_path / "bad.npy"))


def test_pathways_from_one_window(lossless):
    fast = torch.arange(8.0).view(1, 8, 1, 1).expand(3, 8, 2, 2)
    slow, same = pack_pathways(fast, 4)
    assert same is fast and slow[0, :, 0, 0].tolist() == torch.linspace(0, 7, 2).long().float().tolist() == [0, 7]
    clips = list(iter_clips(lossless(12), CFG, clip_len=8, pathway_alpha=4))
    assert [c.frames for c in clips] == [(0, 8), (8, 12)]
    slow, fast = clips[1].clip
    assert frame_ids(fast) == [8, 9, 10, 11, 8, 9, 10, 11] and frame_ids(slow) == [8, 11]
    # the engine stacks each pathway and gives the runner a list
    batch = inference.collate(clips)
    assert [tuple(b.shape) for b in batch] == [(2, 3, 2, 16, 16), (2, 3, 8, 16, 16)]


class ConstantRunner:
    """A non-torch runner: row i of each batch = [sum of pathway 0 of clip i, number of pathways]."""

    device = torch.device("cpu")

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch)
        x = batch if isinstance(batch, list) else [batch]
        return np.stack([x[0].flatten(1).sum(1).numpy(), np.full(len(x[0]), len(x), np.float32)], axis=1)


def test_engine_runs_in_memory_videos_through_a_pluggable_runner(lossless):
    model = hub3d.create_model("resnet3d_10", num_classes=2, widen_factor=0.25, pretrained_cfg=CFG.replace(
        num_classes=2, pathway_alpha=2))
    path = lossless(9)
    frames = read_frames(path)
    runner = ConstantRunner()
    from_file, from_array, lazy = inference.extract_features(model, [path, frames, lambda: frames], runner=runner,
                                                             batch_size=4)
    assert from_array.video == "<frames 1>" and lazy.video == "<frames 2>"
    for r in (from_array, lazy):
        np.testing.assert_array_equal(r.features, from_file.features)
        np.testing.assert_array_equal(r.clip_frames, from_file.clip_frames)
    assert from_file.features[:, 1].tolist() == [2, 2, 2]  # the runner got [slow, fast] batches
    assert all(isinstance(b, list) and len(b) == 2 for b in runner.batches)
    assert from_array.clip_seconds[0].tolist() == pytest.approx([0, 4 / 25])  # in-memory frames: 25 fps


def test_classify_in_memory_frames_equals_the_file(lossless):
    torch.manual_seed(0)
    model = hub3d.create_model("resnet3d_10", num_classes=3, widen_factor=0.25,
                               pretrained_cfg=hub3d.get_pretrained_cfg("resnet3d_10").replace(
                                   num_classes=3, clip_len=4, resize=32, crop_size=32))
    path = lossless(10)
    a, b = hub3d.classify(model, [path, read_frames(path)], batch_size=2)
    np.testing.assert_array_equal(a.clip_probs, b.clip_probs)
    assert isinstance(hub3d.classify(model, path), list)


def test_run_spec_one_device_rule_one_precision_vocabulary():
    model = torch.nn.Linear(2, 2)
    assert resolve_device(None, model) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("none", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs a cuda or mps device"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", torch.device("cpu"))
    run = resolve_run_spec(model, precision="bf16", batch_size=3, num_workers=1)
    assert run == RunSpec(torch.device("cpu"), "bf16", 3, 1, None, True) and run.dtype is torch.bfloat16
    # Decoders by default: one next to an fp32 model on cpu, two next to a bf16 one (decoding is then the
    # bottleneck) when there are 2+ cores.
    assert resolve_run_spec(model).num_workers == 1
    assert resolve_run_spec(model, precision="bf16").num_workers == (2 if (os.cpu_count() or 1) >= 2 else 1)
    with pytest.raises(ValueError, match="batch_size"):
        resolve_run_spec(model, batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("floppy")


def test_preprocess_takes_a_clip_spec_or_a_cfg():
    frames = np.random.default_rng(0).integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)
    torch.testing.assert_close(Preprocess(resolve_clip_spec(CFG))(frames), Preprocess(CFG)(frames), rtol=0, atol=0)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_precision_auto_is_the_devices_native_choice(monkeypatch, native, expected):
    from hub3d import hardware

    seen = []
    monkeypatch.setattr(hardware, "bf16_native", lambda device="cpu": seen.append(torch.device(device)) or native)
    model = torch.nn.Linear(2, 2)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    run = resolve_run_spec(model, precision="auto")
    assert run.precision == expected and run.dtype is (torch.bfloat16 if native else None)
    assert seen and all(d.type == "cpu" for d in seen)
    assert resolve_run_spec(model).precision == "fp32"  # the default stays fp32 on every machine
