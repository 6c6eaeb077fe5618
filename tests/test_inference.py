"""hub3d.inference: classify / extract_features on real (tiny) videos with a tiny model.

Expected values are recomputed independently: frames decoded with hub3d.video.read_frames, preprocessed with
transforms.Preprocess, windows cut and loop-padded by hand, and the model called one clip at a time.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import random_frames

import hub3d
from hub3d import inference
from hub3d.transforms import Preprocess
from hub3d.video import VideoError, read_frames

CLIP_LEN = 8
FPS = 10.0


@pytest.fixture(scope="module")
def model():
    cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len=CLIP_LEN, num_classes=5)
    torch.manual_seed(0)
    net = hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.25)
    # Non-trivial BN statistics, so that eval mode matters and outputs differ between clips.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture
def video(make_video):
    def make(num_frames, seed=0, **kw):
        return make_video(frames=random_frames(num_frames, 48, 64, seed=seed), fps=FPS, **kw)

    return make


def manual_clips(path, cfg, clip_len, tail="loop"):
    """Independent reference: decode all frames, preprocess, cut [s, e) windows, loop-pad the last one."""
    x = Preprocess(cfg)(read_frames(path))  # (3, T, H, W)
    n = x.shape[1]
    clips, windows = [], []
    for s in range(0, n, clip_len):
        e = min(s + clip_len, n)
        if e - s < clip_len and tail == "drop":
            break
        idx = [s + i % (e - s) for i in range(clip_len)]
        clips.append(x[:, idx])
        windows.append((s, e))
    return clips, windows, n


def softmax_by_hand(model, clip):
    with torch.no_grad():
        return torch.softmax(model(clip[None]), dim=-1)[0].numpy()


def test_classify_is_mean_of_clip_softmax(model, video):
    path = video(20)
    model.train()  # classify must switch to eval and restore the mode afterwards
    r = hub3d.classify(model, path, topk=3, batch_size=2)[0]
    assert model.training
    model.eval()
    clips, windows, n = manual_clips(path, model.pretrained_cfg, CLIP_LEN)
    assert n == 20
    assert r.clip_frames.tolist() == [list(w) for w in windows] == [[0, 8], [8, 16], [16, 20]]
    np.testing.assert_allclose(r.clip_seconds, [[0, 0.8], [0.8, 1.6], [1.6, 2.0]], atol=1e-6)
    expected = np.stack([softmax_by_hand(model, c) for c in clips])
    np.testing.assert_allclose(r.clip_probs, expected, atol=1e-5)
    np.testing.assert_allclose(r.probs, expected.mean(0), atol=1e-5)
    np.testing.assert_allclose(r.probs.sum(), 1.0, atol=1e-5)
    # top-k: best first, consistent with probs and labels
    order = np.argsort(-r.probs)[:3]
    assert [i for _, i, _ in r.topk] == order.tolist()
    assert [l for l, _, _ in r.topk] == [model.labels[i] for i in order]
    assert r.label == model.labels[order[0]]
    assert r.video == str(path) and r.labels == model.labels


def test_tail_drop_and_2017(model, video):
    path = video(20)
    loop = hub3d.classify(model, path)[0]
    drop = hub3d.classify(model, path, tail="drop")[0]
    assert drop.clip_frames.tolist() == [[0, 8], [8, 16]]
    np.testing.assert_allclose(drop.clip_probs, loop.clip_probs[:2], atol=1e-6)
    np.testing.assert_allclose(drop.probs, loop.clip_probs[:2].mean(0), atol=1e-6)
    exact16 = hub3d.classify(model, video(16, seed=1), tail="2017")[0]  # the 2017 tool drops a window ending the video
    assert exact16.clip_frames.tolist() == [[0, 8]]


def test_short_video_is_loop_padded(model, video):
    path = video(5)
    r = hub3d.classify(model, path)[0]
    clips, windows, _ = manual_clips(path, model.pretrained_cfg, CLIP_LEN)
    assert r.clip_frames.tolist() == [[0, 5]]
    np.testing.assert_allclose(r.clip_probs[0], softmax_by_hand(model.eval(), clips[0]), atol=1e-5)
    # With tail="drop" a short video has no clip: a clear error naming the file.
    with pytest.raises(VideoError, match=r"no clips.*tail='loop'") as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hub3d.classify(model, path, tail="drop")
    assert str(path) in str(e.value)


def test_batched_streamed_and_single_clip_paths_agree(model, video):
    paths = [video(19, seed=0), video(8, seed=1), video(27, seed=2)]
    clips = [c for p in paths for c in manual_clips(p, model.pretrained_cfg, CLIP_LEN)[0]]
    single = np.stack([softmax_by_hand(model.eval(), c) for c in clips])
    batched = inference.ClipRunner(model, "probs")(torch.stack(clips))
    np.testing.assert_allclose(batched, single, atol=1e-5)
    for batch_size, workers in [(1, 1), (3, 2), (16, 1)]:
        results = hub3d.classify(model, paths, batch_size=batch_size, num_workers=workers)
        streamed = np.concatenate([r.clip_probs for r in results])
        np.testing.assert_allclose(streamed, single, atol=1e-5, err_msg=f"batch_size={batch_size} workers={workers}")


def test_a_lone_clip_gives_the_same_bytes_as_in_a_batch(model):
    # oneDNN's conv3d and BLAS take other kernels for batch 1 than for 2+ (~1e-6 apart): ClipRunner pads a lone
    # clip on cpu, so features do not depend on how batches were cut (shards, Ray, resumes; tests/test_distributed).
    torch.manual_seed(1)
    x = torch.randn(4, 3, CLIP_LEN, 32, 32)
    for head in ("features", "probs"):
        runner = inference.ClipRunner(model, head, "cpu")
        full = runner(x)
        for i in range(4):
            assert np.array_equal(runner(x[i:i + 1]), full[i:i + 1]), (head, i)
    run1 = hub3d.specs.resolve_run_spec(model, device="cpu", batch_size=1)
    assert not inference.ClipRunner.for_run(model, "features", run1).pad_single  # every batch is one clip
    assert inference.ClipRunner.for_run(model, "features", hub3d.specs.resolve_run_spec(model)).pad_single


def test_a_lone_multi_pathway_clip_is_padded_per_pathway():
    seen = []

    class TwoPathways(torch.nn.Module):
        def forward_features(self, x):
            seen.append([tuple(p.shape) for p in x])
            return torch.cat([p.mean(dim=(1, 2, 3, 4))[:, None] for p in x], dim=1)

        def forward_head(self, x, pre_logits=False):
            return x

    slow, fast = torch.randn(1, 3, 2, 8, 8), torch.randn(1, 3, 8, 8, 8)
    out = inference.ClipRunner(TwoPathways(), "features", "cpu", channels_last=False)([slow, fast])
    assert seen == [[(2, 3, 2, 8, 8), (2, 3, 8, 8, 8)]]  # each pathway padded with a copy ...
    np.testing.assert_array_equal(out, [[slow.mean().item(), fast.mean().item()]])  # ... whose row is dropped


def test_list_keeps_input_order_across_mixed_batches(model, video):
    # Short and long videos with batch_size 4: batches hold clips of several videos.
    paths = [video(n, seed=i) for i, n in enumerate([30, 3, 9, 17, 1])]
    results = hub3d.classify(model, paths, batch_size=4, num_workers=2)
    assert [r.video for r in results] == [str(p) for p in paths]
    assert [r.n_clips for r in results] == [4, 1, 2, 3, 1]
    for p, r in zip(paths, results):
        alone = hub3d.classify(model, p, batch_size=1)[0]
        np.testing.assert_allclose(r.clip_probs, alone.clip_probs, atol=1e-5)
        assert r.clip_frames.tolist() == alone.clip_frames.tolist()


def test_extract_features(model, video):
    path = video(20)
    f = hub3d.extract_features(model, path, per_video_mean=True, batch_size=2)[0]
    clips, windows, _ = manual_clips(path, model.pretrained_cfg, CLIP_LEN)
    assert f.features.shape == (3, model.num_features) == (3, 128)
    with torch.no_grad():
        expected = torch.cat([model.forward_head(model.forward_features(c[None]), pre_logits=True) for c in clips])
    np.testing.assert_allclose(f.features, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(f.mean_features, expected.numpy().mean(0), atol=1e-5)
    assert f.clip_frames.tolist() == [list(w) for w in windows]
    assert hub3d.extract_features(model, path)[0].mean_features is None
    both = hub3d.extract_features(model, [path, path])
    assert len(both) == 2 and np.allclose(both[0].features, both[1].features, atol=1e-5)


def test_clip_len_and_stride_overrides(model, video):
    path = video(20)
    r = hub3d.classify(model, path, clip_len=4, stride=6)[0]
    assert r.clip_frames.tolist() == [[0, 4], [6, 10], [12, 16], [18, 20]]
    x = Preprocess(model.pretrained_cfg)(read_frames(path))
    np.testing.assert_allclose(r.clip_probs[1], softmax_by_hand(model.eval(), x[:, 6:10]), atol=1e-5)
    np.testing.assert_allclose(r.clip_probs[3], softmax_by_hand(model, x[:, [18, 19, 18, 19]]), atol=1e-5)
    # cfg overrides the model's preprocessing (here the crop size reaches the model)
    big = hub3d.classify(model, path, spec=model.pretrained_cfg.replace(crop_size=40, resize=40))[0]
    x40 = Preprocess(model.pretrained_cfg.replace(crop_size=40, resize=40))(read_frames(path))
    np.testing.assert_allclose(big.clip_probs[0], softmax_by_hand(model, x40[:, :8]), atol=1e-5)


@pytest.fixture
def bad_files(tmp_path):
    import av

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    audio = tmp_path / "sound.wav"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return {"missing": tmp_path / "missing.mp4", "empty": empty, "text": text, "audio": audio}


def test_bad_videos_raise_or_skip(model, video, bad_files):
    good = [video(9, seed=0), video(12, seed=1)]
    for kind, bad in bad_files.items():
        with pytest.raises(VideoError) as e:
            hub3d.classify(model, [good[0], bad])
        assert str(bad) in str(e.value), kind
    reasons = {"missing": "no such file", "empty": "empty", "text": "not a readable video", "audio": "no video stream"}
    mixed = [good[0], *bad_files.values(), good[1]]
    streamed = list(inference.iter_classify(model, mixed, on_error="skip", batch_size=4))
    assert [r.video for r in streamed] == [str(p) for p in mixed]
    for kind, r in zip(bad_files, streamed[1:-1]):
        assert isinstance(r, inference.FailedVideo)
        assert str(bad_files[kind]) in r.error and reasons[kind] in r.error, r.error
    with pytest.warns(UserWarning, match="skipped"):
        kept = hub3d.classify(model, mixed, on_error="skip")
    assert [r.video for r in kept] == [str(good[0]), str(good[1])]
    np.testing.assert_allclose(kept[1].probs, hub3d.classify(model, good[1])[0].probs, atol=1e-5)
    with pytest.warns(UserWarning):
        assert hub3d.classify(model, bad_files["text"], on_error="skip") == []


def test_stopping_early_stops_the_decoders(model, video):
    paths = [video(24, seed=i) for i in range(4)]
    gen = inference.iter_classify(model, paths, batch_size=1, num_workers=2)
    first = next(gen)
    gen.close()
    assert first.video == str(paths[0])
    assert not [t for t in threading.enumerate() if t.name.startswith("hub3d-decode")]


def test_precision_and_device_arguments(model, video):
    path = video(16)
    fp32 = hub3d.classify(model, path)[0]
    bf16 = hub3d.classify(model, path, precision="bf16")[0]
    assert bf16.clip_probs.dtype == np.float32
    np.testing.assert_allclose(bf16.clip_probs, fp32.clip_probs, atol=0.05)
    np.testing.assert_allclose(bf16.probs.sum(), 1.0, atol=1e-5)
    plain = hub3d.classify(model, path, channels_last=False)[0]  # default: channels_last_3d
    np.testing.assert_allclose(plain.clip_probs, fp32.clip_probs, atol=1e-5)
    with pytest.raises(ValueError, match="fp16"):
        hub3d.classify(model, path, precision="fp16", device="cpu")
    with pytest.raises(ValueError, match="precision"):
        hub3d.classify(model, path, precision="int8")
    with pytest.raises(ValueError, match="tail"):
        hub3d.classify(model, path, tail="pad")


def test_results_to_dict_and_save(model, video, tmp_path):
    path = video(20)
    r = hub3d.classify(model, path, topk=2)[0]
    d = json.loads(json.dumps(r.to_dict(probs=True)))
    assert d["video"] == str(path) and d["n_clips"] == 3 and len(d["topk"]) == 2
    assert [c["frames"] for c in d["clips"]] == r.clip_frames.tolist()
    assert d["clips"][2]["seconds"] == pytest.approx([1.6, 2.0])
    assert d["clips"][0]["topk"][0]["prob"] == pytest.approx(r.clip_probs[0].max())
    assert np.allclose(d["probs"], r.probs)
    f = hub3d.extract_features(model, path)[0]
    f.save(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz") as z:
        np.testing.assert_array_equal(z["features"], f.features)
        np.testing.assert_array_equal(z["clip_frames"], f.clip_frames)
        np.testing.assert_array_equal(z["clip_seconds"], f.clip_seconds)
    f.save(tmp_path / "m.npy", mean=True)
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), f.features.mean(0))
    assert json.loads(json.dumps(f.to_dict()))["clips"][1]["frames"] == [8, 16]


def test_lazy_exports():
    from hub3d import clips

    assert hub3d.iter_clips is clips.iter_clips
    assert hub3d.classify is inference.classify and hub3d.extract_features is inference.extract_features


def test_producer_runs_at_most_a_queue_ahead(model, monkeypatch):
    """Memory is bounded by the batch and the queue, not by video length: decoding never runs far ahead."""
    produced = [0]
    ahead = []
    cfg = model.pretrained_cfg

    def fake_spec_clips(video, spec, coverage=None, flow_progress=None):  # a long "video" of clips, no decoding
        for i in range(60):
            produced[0] += 1
            yield inference.Clip(video, torch.zeros(3, CLIP_LEN, cfg.crop_size, cfg.crop_size), (i, i + 1),
                                 (i / 10, (i + 1) / 10), i)

    real_call = inference.ClipRunner.__call__

    def counting_call(self, x):
        ahead.append(produced[0] - consumed[0])
        consumed[0] += len(x)
        return real_call(self, x)

    consumed = [0]
    monkeypatch.setattr(inference, "spec_clips", fake_spec_clips)
    monkeypatch.setattr(inference.ClipRunner, "__call__", counting_call)
    r = hub3d.classify(model, ["long1.mp4", "long2.mp4"], batch_size=4, num_workers=2)
    assert [x.n_clips for x in r] == [60, 60] and consumed[0] == 120
    # in flight: the batch (4) + the queue (2 * 4) + one clip held by each of the 2 workers
    assert max(ahead) <= 4 + 8 + 2, ahead


def test_model_threads_during_the_run_are_restored(model, video, monkeypatch):
    seen = []
    real_call = inference.ClipRunner.__call__
    monkeypatch.setattr(inference.ClipRunner, "__call__", lambda self, x: seen.append(torch.get_num_threads())
                        or real_call(self, x))
    before = torch.get_num_threads()
    path = video(9)
    hub3d.classify(model, path, threads=3)
    assert seen == [3] and torch.get_num_threads() == before
    seen.clear()
    hub3d.classify(model, path, num_workers=1)  # default on cpu: see cpu_model_threads
    assert seen == [inference.cpu_model_threads(before, 1)] and torch.get_num_threads() == before


def test_a_fresh_process_runs_the_model_on_its_threads_and_the_decoders_on_one(video):
    """torch sizes a thread's OpenMP team at its first parallel op, from the count any thread set last. In a
    fresh process (every `hub3d classify`), the decoders' 1 used to become the model's count."""
    path = video(9)
    code = f"""
import json, torch, hub3d
from hub3d import inference
cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len={CLIP_LEN}, num_classes=5)
model = hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.25)
torch.set_num_threads(4)  # written for threads still to start: the main thread has run no parallel op yet
seen = {{"model": [], "decoder": []}}
real_call, real_clips = inference.ClipRunner.__call__, inference.video_clips
def call(self, x):
    seen["model"].append(torch.get_num_threads())
    return real_call(self, x)
def clips(*args, **kwargs):
    for clip in real_clips(*args, **kwargs):
        seen["decoder"].append(torch.get_num_threads())
        yield clip
inference.ClipRunner.__call__, inference.video_clips = call, clips
hub3d.classify(model, [{str(path)!r}] * 2, num_workers=2, batch_size=2)
seen["after"] = torch.get_num_threads()
print(json.dumps(seen))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(seen["model"]) == {inference.cpu_model_threads(4, 2)} == {2}
    assert set(seen["decoder"]) == {1} and len(seen["decoder"]) == 4
    assert seen["after"] == 4


def test_cpu_model_threads_leave_decoders_a_core_only_on_bigger_machines():
    assert inference.cpu_model_threads(2, 1) == 2
    assert inference.cpu_model_threads(16, 1) == 15 and inference.cpu_model_threads(16, 4) == 12
    assert inference.cpu_model_threads(1, 1) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
def test_cuda_fp16_and_bf16_match_cpu(model, video):
    path = video(20)
    cpu = hub3d.classify(copy.deepcopy(model), path, device="cpu")[0]
    for precision in ("fp32", "fp16", "bf16"):
        gpu = hub3d.classify(copy.deepcopy(model), path, device="cuda", precision=precision)[0]
        np.testing.assert_allclose(gpu.clip_probs, cpu.clip_probs, atol=1e-4 if precision == "fp32" else 0.05)
        np.testing.assert_array_equal(gpu.clip_frames, cpu.clip_frames)
    feats = hub3d.extract_features(copy.deepcopy(model), path, device="cuda")[0]
    assert feats.features.shape == (cpu.n_clips, model.num_features)


# A model of each family with BatchNorm (and the nested-block variants): folding must find the conv -> BatchNorm
# pairs and keep the outputs. Spatial size 32 keeps the forwards small. (c3d has no BatchNorm; wide_resnet3d is
# resnet3d's blocks, wider.)
FOLD_MODELS = ["resnet3d_10", "motion_demo", "preact_resnet3d_18", "resnext3d_50", "densenet3d_121", "resnet2p1d_10",
               "r2plus1d_18", "mc3_18", "r2plus1d_r50", "slowfast_r50", "csn_r101", "x3d_xs", "efficient_x3d_xs",
               "s3d", "i3d", "i3d_flow", "p3d_63"]


def _random_statistics(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            if m.running_mean is not None:
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _norms(net) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


@pytest.mark.parametrize("name", FOLD_MODELS)
def test_batchnorm_folding_keeps_every_familys_outputs(name):
    cfg = hub3d.get_pretrained_cfg(name).replace(resize=32, crop_size=32)
    torch.manual_seed(0)
    net = hub3d.create_model(name, pretrained_cfg=cfg).eval()
    _random_statistics(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    channels = 2 if cfg.modality == "flow" else 3
    clips = [torch.randn(channels, cfg.clip_len, cfg.crop_size, cfg.crop_size) for _ in range(3)]
    packed = [hub3d.clips.pack_pathways(c, cfg.pathway_alpha) for c in clips]
    x = [torch.stack(p) for p in zip(*packed)] if cfg.pathway_alpha else torch.stack(clips)
    plain = inference.ClipRunner(net, "logits", "cpu", fold_bn=False)
    folded = inference.ClipRunner(net, "logits", "cpu")
    want, got = plain(x), folded(x)
    assert plain.folded == 0 and plain.net is net
    assert folded.folded > 0 and _norms(folded.net) == _norms(net) - folded.folded
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    # The caller's model is untouched: same modules, same tensors.
    assert _norms(net) == sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                              for m in hub3d.create_model(name, pretrained_cfg=cfg).modules())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_only_a_batchnorm_fed_by_a_convolution_is_folded():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = torch.nn.BatchNorm3d(3)  # on the input: nothing to fold into
            self.a = torch.nn.Conv3d(3, 4, 3, padding=1)
            self.a_bn = torch.nn.BatchNorm3d(4)  # folds into a
            self.b = torch.nn.Conv3d(4, 4, 1)
            self.b_bn = torch.nn.BatchNorm3d(4)  # after a ReLU of b: stays
            self.shared = torch.nn.Conv3d(4, 4, 1)  # called twice: stays
            self.shared_bn = torch.nn.BatchNorm3d(4)
            self.batch_stats = torch.nn.BatchNorm3d(4, track_running_stats=False)  # batch statistics: stays

        def forward_features(self, x):
            x = self.a_bn(self.a(self.pre(x)))
            x = self.b_bn(torch.relu(self.b(x)))
            x = self.shared_bn(self.shared(self.shared(x)))
            return self.batch_stats(x).mean(dim=(2, 3, 4))

        def forward_head(self, x, pre_logits=False):
            return x

    torch.manual_seed(0)
    net = Net().eval()
    _random_statistics(net)
    x = torch.randn(2, 3, 4, 8, 8)
    pairs = inference.conv_bn_pairs(net, x, lambda m, c: m.forward_head(m.forward_features(c)))
    assert pairs == [("a", "a_bn")]
    runner = inference.ClipRunner(net, "features", "cpu", channels_last=False)
    out = runner(x)
    assert runner.folded == 1 and isinstance(runner.net.a_bn, torch.nn.Identity) and runner.net.a.bias is not None
    assert isinstance(net.a_bn, torch.nn.BatchNorm3d) and net.a.bias is not None  # its own bias, unchanged
    np.testing.assert_allclose(out, inference.ClipRunner(net, "features", "cpu", channels_last=False,
                                                         fold_bn=False)(x), rtol=1e-5, atol=1e-6)
    no_norms = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1))
    no_norms.forward_features, no_norms.forward_head = no_norms.forward, lambda f, pre_logits=False: f
    runner = inference.ClipRunner(no_norms, "logits", "cpu", channels_last=False)
    assert runner.net is no_norms and runner.folded == 0
    np.testing.assert_array_equal(runner(x), no_norms(x).detach().numpy())


def test_no_folding_for_intermediate_layers_and_bf16_copies_fold_in_fp32(model):
    x = torch.randn(2, 3, CLIP_LEN, 32, 32)
    layer = inference.ClipRunner(model, "features", "cpu", layer=model.feature_layers[0])
    layer(x)
    assert layer.folded == 0 and layer.net is model
    bf16 = inference.ClipRunner(model, "logits", "cpu", "bf16")
    out = bf16(x)
    assert bf16.folded > 0 and _norms(bf16.net) == _norms(model) - bf16.folded
    assert all(p.dtype is torch.bfloat16 for p in bf16.net.parameters())
    assert all(p.dtype is torch.float32 for p in model.parameters())
    ref = inference.ClipRunner(model, "logits", "cpu", fold_bn=False)(x)
    np.testing.assert_allclose(out, ref, atol=0.1 * float(np.abs(ref).max()) + 0.05)


def test_folded_copy_is_reused_until_the_models_tensors_change(model):
    x = torch.randn(2, 3, CLIP_LEN, 32, 32)
    first = inference.ClipRunner(model, "logits", "cpu")
    out = first(x)
    again = inference.ClipRunner(model, "logits", "cpu")
    assert np.array_equal(again(x), out) and again.net is first.net  # folded once
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    saved = norm.running_var.clone()
    try:
        with torch.no_grad():
            norm.running_var.mul_(4)  # in place, as training or load_state_dict would
        changed = inference.ClipRunner(model, "logits", "cpu")
        new = changed(x)
        assert changed.net is not first.net and not np.allclose(new, out)
        np.testing.assert_allclose(new, inference.ClipRunner(model, "logits", "cpu", fold_bn=False)(x),
                                   rtol=1e-4, atol=1e-5)
    finally:
        with torch.no_grad():
            norm.running_var.copy_(saved)


def test_engine_prepares_the_folded_model_before_the_first_batch(model, video):
    """run_clips hands the runner a zero batch of the spec's clip shape before the first batch (while the
    decoders work), so every batch runs on the folded copy; the outputs are those of a runner folded at its
    first batch."""
    runner = inference.ClipRunner(model, "probs", "cpu")
    events = []

    class Recording:
        device = runner.device

        def prepare(self, example):
            events.append(("prepare", tuple(example.shape), runner.folded))
            runner.prepare(example)

        def __call__(self, batch):
            events.append(("batch", tuple(batch.shape[2:]), runner.folded))
            return runner(batch)

    path = video(3 * CLIP_LEN)
    got = hub3d.classify(model, path, runner=Recording(), batch_size=2)[0]
    want = hub3d.classify(model, path, batch_size=2)[0]
    folded = inference.ClipRunner(model, "probs", "cpu")
    folded(torch.zeros(1, 3, CLIP_LEN, 32, 32))
    assert events[0] == ("prepare", (1, 3, CLIP_LEN, 32, 32), 0)
    assert [e[0] for e in events[1:]] == ["batch", "batch"]
    assert all(e[1:] == ((CLIP_LEN, 32, 32), folded.folded) for e in events[1:]) and folded.folded > 0
    np.testing.assert_allclose(got.clip_probs, want.clip_probs, rtol=1e-6, atol=1e-7)


def test_prepare_with_an_example_the_model_does_not_fit_waits_for_the_first_batch():
    class FixedSize(torch.nn.Module):  # a classifier sized for 4x8x8 clips: nothing else runs
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv3d(3, 2, 3, padding=1), torch.nn.BatchNorm3d(2)
            self.fc = torch.nn.Linear(2 * 4 * 8 * 8, 3)

        def forward_features(self, x):
            return self.bn(self.conv(x)).flatten(1)

        def forward_head(self, x, pre_logits=False):
            return x if pre_logits else self.fc(x)

    torch.manual_seed(0)
    net = FixedSize().eval()
    _random_statistics(net)
    runner = inference.ClipRunner(net, "logits", "cpu", channels_last=False)
    runner.prepare(torch.zeros(1, 3, 4, 16, 16))
    assert runner.folded == 0 and runner.net is net
    x = torch.randn(2, 3, 4, 8, 8)
    out = runner(x)
    assert runner.folded == 1
    np.testing.assert_allclose(out, net.forward_head(net.forward_features(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_example_clip_has_the_shape_of_the_specs_clips():
    slowfast = hub3d.clips.resolve_clip_spec(hub3d.get_pretrained_cfg("slowfast_r50"))
    slow, fast = hub3d.clips.example_clip(slowfast)
    t, crop, alpha = slowfast.clip_len, slowfast.crop_size, slowfast.pathway_alpha
    assert tuple(fast.shape) == (3, t, crop, crop) and tuple(slow.shape) == (3, t // alpha, crop, crop)
    flow = hub3d.clips.resolve_clip_spec(hub3d.get_pretrained_cfg("i3d_flow"), crop_size=(40, 56))
    clip = hub3d.clips.example_clip(flow)
    assert tuple(clip.shape) == (2, flow.clip_len, 40, 56) and not bool(clip.any())


def test_a_bf16_channels_last_copy_leaves_the_shared_model_alone_and_keeps_ties():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4), torch.nn.Conv3d(4, 4, 1))
    model.tied = torch.nn.Linear(4, 4)
    model.tied_again = torch.nn.Linear(4, 4)
    model.tied_again.weight = model.tied.weight  # one tensor, two modules
    _random_statistics(model)
    shared = inference.fold_batchnorm(model, [("0", "1")])  # shares every tensor but conv 0's
    assert shared[2].weight is model[2].weight and shared.tied.weight is model.tied.weight
    net = inference.fold_batchnorm(model, [("0", "1")], torch.bfloat16, channels_last=True)
    assert all(t.dtype is torch.float32 for t in [*model.parameters(), *model.buffers()] if t.is_floating_point())
    assert all(t.is_contiguous() for t in model.parameters())
    assert all(t.dtype is torch.bfloat16 for t in [*net.parameters(), *net.buffers()] if t.is_floating_point())
    assert all(t.is_contiguous(memory_format=torch.channels_last_3d) for t in net.parameters() if t.dim() == 5)
    assert net.tied.weight is net.tied_again.weight and net.tied.weight is not model.tied.weight
    assert torch.equal(net[2].weight.float(), model[2].weight.detach().bfloat16().float())
    # the folded weight is the fp32 fold rounded once: what folding first and casting after gives
    assert torch.equal(net[0].weight, shared[0].weight.bfloat16()) and torch.equal(net[0].bias, shared[0].bias.bfloat16())


def test_a_folded_runner_leaves_the_model_as_it_was_and_runs_channels_last(model):
    """The copy is written in channels_last_3d at once, so the caller's model keeps its layout (and its
    tensors: nothing is converted in place and then copied again)."""
    model = copy.deepcopy(model)  # the module's model may have run unfolded (converted in place) already
    for t in model.parameters():
        t.data = t.data.contiguous()
    before = dict(model.named_parameters())
    x = torch.randn(2, 3, CLIP_LEN, 32, 32)
    for precision in ("fp32", "bf16"):
        runner = inference.ClipRunner(model, "logits", "cpu", precision)
        runner(x)
        assert runner.folded > 0 and runner.net is not model
        assert all(t.is_contiguous(memory_format=torch.channels_last_3d)
                   for t in runner.net.parameters() if t.dim() == 5)
    assert all(t is before[n] for n, t in model.named_parameters())
    assert all(t.is_contiguous() for t in model.parameters())
    unfolded = inference.ClipRunner(model, "logits", "cpu", fold_bn=False)
    assert unfolded.net is model and model.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
