"""2D -> 3D inflation: the boring-video fixed point against 2D networks written here with torch.nn.functional.

The 2D weights are made here (random, in torchvision's key layouts): no download, no torchvision.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_i3d import MIXED

import hub3d
from hub3d.inflate import inflate, inflate_kernel

RESNETS = {"resnet3d_18": ([2, 2, 2, 2], False), "resnet3d_50": ([3, 4, 6, 3], True)}


def bn2d(sd, p, x):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        False, 0.0, sd.get("_eps", 1e-5))


def random_bn(sd, p, c, g):
    sd[f"{p}.weight"] = torch.rand(c, generator=g) + 0.5
    sd[f"{p}.bias"] = torch.randn(c, generator=g) * 0.1
    sd[f"{p}.running_mean"] = torch.randn(c, generator=g) * 0.1
    sd[f"{p}.running_var"] = torch.rand(c, generator=g) + 0.5
    sd[f"{p}.num_batches_tracked"] = torch.tensor(100)


def conv_w(o, i, k, g):
    return torch.randn(o, i, k, k, generator=g) * math.sqrt(2.0 / (i * k * k))


# --------------------------------------------------------------------------------------------------------- ResNet


def resnet2d_state_dict(layers, bottleneck, num_classes=1000, seed=0):
    """torchvision's resnet18 / resnet50 keys and shapes (stride on the 3x3 conv: torchvision's v1.5)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": conv_w(64, 3, 7, g)}
    random_bn(sd, "bn1", 64, g)
    in_planes = 64
    for li, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        out = planes * (4 if bottleneck else 1)
        for b in range(blocks):
            p = f"layer{li + 1}.{b}"
            shapes = [(planes, in_planes, 1), (planes, planes, 3), (out, planes, 1)] if bottleneck else [
                (planes, in_planes, 3), (planes, planes, 3)]
            for j, (o, i, k) in enumerate(shapes, 1):
                sd[f"{p}.conv{j}.weight"] = conv_w(o, i, k, g)
                random_bn(sd, f"{p}.bn{j}", o, g)
            if b == 0 and (li > 0 or in_planes != out):
                sd[f"{p}.downsample.0.weight"] = conv_w(out, in_planes, 1, g)
                random_bn(sd, f"{p}.downsample.1", out, g)
            in_planes = out
    sd["fc.weight"] = torch.randn(num_classes, in_planes, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros(num_classes)
    return sd


def resnet2d_features(sd, img, layers, bottleneck):
    x = F.relu(bn2d(sd, "bn1", F.conv2d(img, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    for li, blocks in enumerate(layers):
        for b in range(blocks):
            p, stride = f"layer{li + 1}.{b}", 2 if b == 0 and li > 0 else 1
            if bottleneck:
                out = F.relu(bn2d(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"])))
                out = F.relu(bn2d(sd, f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1)))
                out = bn2d(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]))
            else:
                out = F.relu(bn2d(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1)))
                out = bn2d(sd, f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1))
            if f"{p}.downsample.0.weight" in sd:
                x = bn2d(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            x = F.relu(out + x)
    return x.mean(dim=(2, 3))


def assert_same_features(ours, ref):
    """Equal to 1e-5 of the features' scale (fp32; random deep nets reach activations in the thousands)."""
    scale = ref.abs().max()
    torch.testing.assert_close(ours / scale, ref / scale, rtol=0, atol=1e-5)


def boring(img, frames):
    return img.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_resnet_center_inflation_fixed_point(name):
    layers, bottleneck = RESNETS[name]
    sd2d = resnet2d_state_dict(layers, bottleneck)
    model = inflate(sd2d, hub3d.create_model(name, num_classes=1000, shortcut_type="B"), mode="center").eval()
    img = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        ours = model.forward_head(model.forward_features(boring(img, 8)), pre_logits=True)
        logits = model(boring(img, 8))
    ref = resnet2d_features(sd2d, img, layers, bottleneck)
    assert_same_features(ours, ref)
    assert_same_features(logits, F.linear(ref, sd2d["fc.weight"], sd2d["fc.bias"]))


def test_resnet_repeat_inflation_fixed_point_away_from_the_clip_ends():
    """Repeat mode: time steps whose receptive field stays inside the clip see the 2D network's activations."""
    layers, bottleneck = RESNETS["resnet3d_18"]
    sd2d = resnet2d_state_dict(layers, bottleneck)
    model = inflate(sd2d, hub3d.create_model("resnet3d_18", num_classes=1000, shortcut_type="B")).eval()
    img = torch.rand(1, 3, 32, 32)
    ref = resnet2d_features(sd2d, img, layers, bottleneck)
    with torch.no_grad():
        fmap = model.forward_features(boring(img, 288))  # (1, 512, 18, 1, 1): time stride 16
    per_time = fmap.mean(dim=(3, 4))[0].T  # (18, 512)
    # Temporal receptive-field radius, sum of (k // 2) x the input's time stride over the temporal convs and pools:
    # conv1 3x1 + max pool 1x1 + layer1 4 convs x 2 + layer2 (1x2 + 3x4) + layer3 (1x4 + 3x8) + layer4 (1x8 + 3x16)
    # = 3 + 1 + 8 + 14 + 28 + 56 = 110 frames. Step j is centred on frame 16 j: border-free for j in 7..11.
    for j in range(7, 12):
        assert_same_features(per_time[j], ref[0])
    for j in (0, 17):  # the clip's ends: zero padding in time breaks the fixed point
        assert (per_time[j] - ref[0]).abs().max() > 0.1 * ref.abs().max()


# --------------------------------------------------------------------------------------------------------- GoogLeNet

GOOGLENET_NAMES = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
                   "inception4e", "inception5a", "inception5b"]


def googlenet_state_dict(seed=0):
    """torchvision GoogLeNet keys (BasicConv2d: .conv / .bn, BN eps 1e-3), with aux classifiers."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def basic(p, o, i, k):
        sd[f"{p}.conv.weight"] = conv_w(o, i, k, g)
        random_bn(sd, f"{p}.bn", o, g)

    basic("conv1", 64, 3, 7)
    basic("conv2", 64, 64, 1)
    basic("conv3", 192, 64, 3)
    for tv_name, (_, cin, (w0, w1a, w1b, w2a, w2b, w3)) in zip(GOOGLENET_NAMES, MIXED):
        basic(f"{tv_name}.branch1", w0, cin, 1)
        basic(f"{tv_name}.branch2.0", w1a, cin, 1)
        basic(f"{tv_name}.branch2.1", w1b, w1a, 3)
        basic(f"{tv_name}.branch3.0", w2a, cin, 1)
        basic(f"{tv_name}.branch3.1", w2b, w2a, 3)  # torchvision's 3x3 (TF-Slim's Inception-v1 too)
        basic(f"{tv_name}.branch4.1", w3, cin, 1)
    basic("aux1.conv", 128, 512, 1)
    sd["aux1.fc1.weight"] = torch.randn(1024, 2048, generator=g)
    sd["fc.weight"] = torch.randn(1000, 1024, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros(1000)
    return sd


def same2d(x, k, s):
    pads = []
    for n in x.shape[2:]:
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return F.pad(x, [p for pair in reversed(pads) for p in pair])


def inception_v1_features(sd, img):
    """TF-Slim Inception-v1 (TF "SAME" padding), the 2D network I3D inflates; pooled 1024-d features."""
    sd = {**sd, "_eps": 1e-3}

    def unit(p, x, k=1, s=1):
        return F.relu(bn2d(sd, f"{p}.bn", F.conv2d(same2d(x, k, s), sd[f"{p}.conv.weight"], stride=s)))

    def pool(x, k, s):
        return F.max_pool2d(same2d(x, k, s), k, s)

    x = pool(unit("conv1", img, 7, 2), 3, 2)
    x = pool(unit("conv3", unit("conv2", x), 3), 3, 2)
    for name in GOOGLENET_NAMES:
        if name == "inception4a":
            x = pool(x, 3, 2)
        elif name == "inception5a":
            x = pool(x, 2, 2)
        x = torch.cat([unit(f"{name}.branch1", x), unit(f"{name}.branch2.1", unit(f"{name}.branch2.0", x), 3),
                       unit(f"{name}.branch3.1", unit(f"{name}.branch3.0", x), 3),
                       unit(f"{name}.branch4.1", pool(x, 3, 1))], 1)
    return x.mean(dim=(2, 3))


def test_googlenet_center_inflation_into_i3d_fixed_point():
    sd2d = googlenet_state_dict()
    model = inflate(sd2d, hub3d.create_model("i3d", num_classes=1000), mode="center").eval()
    img = torch.rand(1, 3, 96, 80)  # Mixed_5c map 3x3: under the 7x7 head window, so the head averages it all
    ref = inception_v1_features(sd2d, img)
    with torch.no_grad():
        ours = model.forward_head(model.forward_features(boring(img, 8)), pre_logits=True)
    assert_same_features(ours, ref)
    assert torch.equal(model.logits.conv3d.weight.flatten(1), sd2d["fc.weight"])


def test_inflate_kernel_modes():
    w = torch.randn(4, 3, 5, 5)
    rep = inflate_kernel(w, 3, "repeat")
    assert rep.shape == (4, 3, 3, 5, 5) and torch.allclose(rep.sum(2), w)
    cen = inflate_kernel(w, 3, "center")
    assert torch.equal(cen[:, :, 1], w) and not cen[:, :, [0, 2]].any()


def test_inflate_refuses_what_does_not_fit():
    sd2d = resnet2d_state_dict(*RESNETS["resnet3d_18"])
    del sd2d["layer3.1.conv2.weight"]
    with pytest.raises(ValueError, match=r"layer3\.1\.conv2\.weight: not in the 2D state dict"):
        inflate(sd2d, hub3d.create_model("resnet3d_18", shortcut_type="B"))
    with pytest.raises(ValueError, match="layer1.0.conv1.weight: 2D shape"):
        inflate(resnet2d_state_dict(*RESNETS["resnet3d_50"]), hub3d.create_model("resnet3d_18", shortcut_type="B"))
    with pytest.raises(ValueError, match="mode"):
        inflate({}, hub3d.create_model("resnet3d_10"), mode="spread")
    model = inflate(sd2d | {"layer3.1.conv2.weight": torch.zeros(256, 256, 3, 3)},
                    hub3d.create_model("resnet3d_18", num_classes=10, shortcut_type="B"))
    assert model.fc.weight.shape == (10, 512)  # a classifier of another size is left as initialised
