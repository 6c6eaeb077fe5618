"""The engine on accelerators: pinned host batches, non-blocking copies, decode workers, autocast fp16/bf16,
channels_last_3d and torch.compile. The CUDA tests skip (with the reason) where there is no GPU; the wiring
tests that need none run everywhere."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import random_frames

import hub3d
from hub3d import inference
from hub3d.specs import resolve_run_spec

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")


@pytest.fixture(scope="module")
def model():
    cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len=8, num_classes=5)
    torch.manual_seed(0)
    net = hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.25)
    for m in net.modules():  # non-trivial BN statistics: eval mode and buffers matter
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture
def videos(make_video):
    return [make_video(frames=random_frames(n, 48, 64, seed=n), fps=10.0, name=f"v{n}.mp4") for n in (20, 9, 33)]


def test_compile_is_off_by_default_and_compiles_features_and_head(model, monkeypatch):
    assert resolve_run_spec(model).compile is False and resolve_run_spec(model, compile=True).compile is True
    compiled = []

    def fake_compile(fn, **kwargs):  # torch.compile's contract: a callable that computes what fn computes
        compiled.append(fn)
        return lambda *a, **k: fn(*a, **k)

    monkeypatch.setattr(torch, "compile", fake_compile)
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    eager = inference.ClipRunner(copy.deepcopy(model), head="features")
    assert compiled == []
    runner = inference.ClipRunner.for_run(copy.deepcopy(model), "features", resolve_run_spec(model, compile=True))
    assert len(compiled) == 1
    np.testing.assert_array_equal(runner(x), eager(x))  # features: forward_features + head(pre_logits) both ran
    assert runner(x).shape == (2, model.num_features)


def test_batches_are_pinned_only_for_cuda(model, videos):
    clips = list(inference.video_clips(videos[0], hub3d.resolve_clip_spec(model), str(videos[0])))
    assert not inference.collate(clips).is_pinned()
    if not CUDA:
        pytest.skip("pinning host memory needs a CUDA device (the CPU half of this test ran)")
    assert inference.collate(clips, pin=True).is_pinned()


@needs_cuda
def test_run_spec_defaults_on_cuda(model):
    run = resolve_run_spec(model, device="cuda")
    assert run.device.type == "cuda" and run.device.index == 0
    assert run.num_workers >= 1 and run.num_workers == min(4, __import__("os").cpu_count() or 1)
    assert run.precision == "fp32" and run.channels_last


@needs_cuda
@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("fp16", 2e-2), ("bf16", 5e-2)])
def test_cuda_matches_cpu(model, videos, precision, atol):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cpu = hub3d.classify(copy.deepcopy(model), videos, device="cpu")
    gpu = hub3d.classify(copy.deepcopy(model), videos, device="cuda", precision=precision, batch_size=4)
    for a, b in zip(cpu, gpu):
        assert b.clip_probs.dtype == np.float32
        np.testing.assert_allclose(b.clip_probs, a.clip_probs, atol=atol)
        assert a.clip_frames.tolist() == b.clip_frames.tolist()


@needs_cuda
def test_cuda_runner_autocast_and_channels_last(model):
    x = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2)).pin_memory()
    runner = inference.ClipRunner(copy.deepcopy(model), head="logits", device="cuda", precision="fp16")
    ref = inference.ClipRunner(copy.deepcopy(model), head="logits", device="cpu")(x.clone())
    np.testing.assert_allclose(runner(x), ref, atol=2e-2)
    # autocast on accelerators, not a half copy of the weights: the folded copy stays fp32, channels_last_3d
    assert runner.folded > 0 and next(runner.net.parameters()).dtype == torch.float32
    assert runner.net.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)


@needs_cuda
def test_cuda_compile_matches_eager(model):
    x = torch.randn(4, 3, 8, 32, 32, generator=torch.Generator().manual_seed(3))
    eager = inference.ClipRunner(copy.deepcopy(model), head="probs", device="cuda")(x)
    compiled = inference.ClipRunner(copy.deepcopy(model), head="probs", device="cuda", compile=True)
    np.testing.assert_allclose(compiled(x), eager, atol=1e-4)
    np.testing.assert_allclose(compiled(x[:3]), eager[:3], atol=1e-4)  # a smaller last batch recompiles
