"""P3D: qijiezhao's checkpoint layout loads strictly; outputs match a functional reference of the original."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hub3d
from hub3d.checkpoint import CheckpointError

DEPTHS = {"p3d_63": [3, 4, 6, 3], "p3d_131": [3, 4, 23, 3], "p3d_199": [3, 8, 36, 3]}


def bn(sd, name, x):
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                        sd[f"{name}.bias"], False, 0.0, 1e-5)


def ref_p3d(sd, x, layers, st="ABC"):
    """qijiezhao/pseudo-3d-pytorch P3D.forward, written with torch.nn.functional (16-frame clips: T = 1 at res5)."""
    x = F.relu(bn(sd, "bn1", F.conv3d(x, sd["conv1_custom.weight"], stride=(1, 2, 2), padding=(0, 3, 3))))
    x = F.max_pool3d(x, (2, 3, 3), 2, padding=(0, 1, 1))
    n, depth_3d = 0, sum(layers[:3])
    for li, blocks in enumerate(layers):
        for b in range(blocks):
            p = f"layer{li + 1}.{b}"
            two_d = n >= depth_3d
            conv = F.conv2d if two_d else F.conv3d
            stride = (2 if n == depth_3d else 1) if two_d else ((1, 2, 2) if b == 0 and n > 0 else 1)
            out = F.relu(bn(sd, f"{p}.bn1", conv(x, sd[f"{p}.conv1.weight"], stride=stride)))
            if two_d:
                out = F.relu(bn(sd, f"{p}.bn_normal", F.conv2d(out, sd[f"{p}.conv_normal.weight"], padding=1)))
            else:
                def s(y, p=p):  # S: 1x3x3
                    return F.relu(bn(sd, f"{p}.bn2", F.conv3d(y, sd[f"{p}.conv2.weight"], padding=(0, 1, 1))))

                def t(y, p=p):  # T: 3x1x1
                    return F.relu(bn(sd, f"{p}.bn3", F.conv3d(y, sd[f"{p}.conv3.weight"], padding=(1, 0, 0))))

                kind = st[n % len(st)]
                out = t(s(out)) if kind == "A" else s(out) + t(out) if kind == "B" else s(out) + t(s(out))
            out = bn(sd, f"{p}.bn4", conv(out, sd[f"{p}.conv4.weight"]))
            residual = x
            if b == 0:
                residual = bn(sd, f"{p}.downsample.1", conv(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            x = F.relu(out + residual)
            n += 1
        if li < 3:
            x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))
        if li == 2:
            x = x.view(-1, x.shape[1], x.shape[3], x.shape[4])  # the original's reshape into res5's 2D batch
    x = F.avg_pool2d(x, x.shape[-1], stride=1).view(-1, sd["fc.weight"].shape[1])
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.25)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def count_by_hand(layers, num_classes=400, in_channels=3):
    """Parameters of the original, from its layer list: conv weights (no bias) + BN (gamma, beta) + fc."""
    total = in_channels * 64 * 49 + 2 * 64
    in_planes, n, depth_3d = 64, 0, sum(layers[:3])
    for planes, blocks in zip((64, 128, 256, 512), layers):
        for b in range(blocks):
            mid = in_planes * planes + 2 * planes
            spatial = planes * planes * 9 + 2 * planes  # 3x3 (res5) or S = 1x3x3
            mid += spatial if n >= depth_3d else spatial + planes * planes * 3 + 2 * planes  # + T = 3x1x1
            mid += planes * planes * 4 + 2 * planes * 4
            if b == 0:
                mid += in_planes * planes * 4 + 2 * planes * 4
            total += mid
            in_planes, n = planes * 4, n + 1
    return total + 2048 * num_classes + num_classes


@pytest.mark.parametrize("name", sorted(DEPTHS))
def test_param_counts(name):
    with torch.device("meta"):
        model = hub3d.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count_by_hand(DEPTHS[name])


def test_param_count_numbers():
    # P3D-63 = a ResNet-50 whose 3x3x3 convs in res2-4 are 1x3x3 + 3x1x1 (+ BN): fewer parameters than R3D-50.
    assert [count_by_hand(DEPTHS[n]) for n in ("p3d_63", "p3d_131", "p3d_199")] == [25_745_232, 48_088_400, 66_492_240]


@pytest.mark.parametrize("st", ["ABC", "A", "AB"])
def test_p3d_63_matches_reference(st):
    torch.manual_seed(0)
    model = randomize_bn(hub3d.create_model("p3d_63", st_struc=st)).eval()
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        ref = ref_p3d(model.state_dict(), x, DEPTHS["p3d_63"], st)
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


def test_original_checkpoint_loads(tmp_path):
    torch.manual_seed(1)
    source = randomize_bn(hub3d.create_model("p3d_63", num_classes=101, n_input_channels=2)).eval()
    sd = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "p3d_flow_63.checkpoint.pth.tar"
    torch.save({"epoch": 30, "arch": "P3D63", "state_dict": sd, "best_prec1": 50.0}, path,
               _use_new_zipfile_serialization=False)
    model = hub3d.load("p3d_63", pretrained=str(path)).eval()
    assert model.num_classes == 101 and model.arch_kwargs["n_input_channels"] == 2
    x = torch.randn(2, 2, 16, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
        torch.testing.assert_close(model(x), ref_p3d(sd, x, DEPTHS["p3d_63"]), rtol=1e-4, atol=1e-4)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 2048)
    del sd["layer4.0.conv_normal.weight"]
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=r"layer4\.0\.conv_normal\.weight"):
        hub3d.load("p3d_63", pretrained=str(path))


def test_longer_clips_give_per_time_res5_maps():
    model = hub3d.create_model("p3d_63").eval()
    with torch.no_grad():
        fmap = model.forward_features(torch.randn(1, 3, 32, 64, 64))
    assert fmap.shape == (1, 2048, 2, 2, 2)


def test_p3d_199_weights_are_drive_only():
    cfg = hub3d.get_pretrained_cfg("p3d_199", "kinetics400")
    assert cfg.file == "p3d_rgb_199.checkpoint.pth.tar" and cfg.drive_folder and cfg.url is None
    assert (cfg.crop_size, cfg.clip_len) == (160, 16)
    flow = hub3d.get_pretrained_cfg("p3d_199", "kinetics400_flow")
    assert flow.file == "p3d_flow_199.checkpoint.pth.tar" and flow.arch_kwargs == {"n_input_channels": 2}


def test_classify_a_real_video_through_the_engine(make_video):
    """ClipRunner's channels_last_3d must leave P3D's 2D res5 (4D weights) alone."""
    torch.manual_seed(0)
    model = hub3d.create_model("p3d_63", num_classes=7).eval()
    video = make_video(num_frames=20, height=48, width=64)
    res = hub3d.classify(model, str(video), threads=1)[0]
    assert res.clip_frames.tolist() == [[0, 16], [16, 20]]  # the second clip loop-padded
    assert res.clip_probs.shape == (2, 7) and np.allclose(res.clip_probs.sum(1), 1, atol=1e-5)
    clip = next(iter(hub3d.iter_clips(str(video), model)))
    with torch.no_grad():
        expected = model(clip.clip[None]).softmax(-1)[0].numpy()
    np.testing.assert_allclose(res.clip_probs[0], expected, rtol=1e-4, atol=1e-5)
