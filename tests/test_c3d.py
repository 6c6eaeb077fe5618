"""C3D: DavideA's and MMAction2's files load strictly and give a functional reference's outputs; parameter count."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hub3d
from hub3d.checkpoint import CheckpointError

# DavideA/c3d-pytorch C3D_model.py, in forward order: (name, in, out); pools after conv1, conv2, conv3b, conv4b, conv5b.
CONVS = [("conv1", 3, 64), ("conv2", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256), ("conv4a", 256, 512),
         ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512)]
FCS = [("fc6", 8192, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 487)]


def ref_trunk(sd, x):
    for name, _, _ in CONVS:
        x = F.relu(F.conv3d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1))
        if name == "conv1":
            x = F.max_pool3d(x, (1, 2, 2), (1, 2, 2))
        elif name in ("conv2", "conv3b", "conv4b"):
            x = F.max_pool3d(x, 2, 2)
        elif name == "conv5b":
            x = F.max_pool3d(x, 2, 2, padding=(0, 1, 1))
    return x


def ref_head(sd, x, upto="fc8"):
    h = x.reshape(-1, 8192)  # the original's view(-1, 8192)
    h = F.relu(F.linear(h, sd["fc6.weight"], sd["fc6.bias"]))
    h = F.relu(F.linear(h, sd["fc7.weight"], sd["fc7.bias"]))
    return h if upto == "fc7" else F.linear(h, sd["fc8.weight"], sd["fc8.bias"])


def mmaction2_key(key: str, recognizer: bool) -> str:
    """DavideA's name -> MMAction2's (ConvModule 'conv', conv1a / conv2a; 'backbone.' and cls_head in recognizers)."""
    name, _, leaf = key.partition(".")
    if name == "fc8":
        return f"cls_head.fc_cls.{leaf}"
    if name.startswith("conv"):
        name = {"conv1": "conv1a", "conv2": "conv2a"}.get(name, name) + ".conv"
    return f"{'backbone.' if recognizer else ''}{name}.{leaf}"


def test_param_count_of_the_original():
    count = sum(cin * cout * 27 + cout for _, cin, cout in CONVS) + sum(i * o + o for _, i, o in FCS)
    assert count == 79_991_015  # with the 487-class Sports-1M fc8
    assert count - (4096 * 487 + 487) + (4096 * 101 + 101) == 78_409_573  # the "78 M" usually quoted: 101 classes
    with torch.device("meta"):
        model = hub3d.create_model("c3d")
    assert sum(p.numel() for p in model.parameters()) == count


def test_davidea_pickle_loads_and_matches_reference(tmp_path):
    torch.manual_seed(0)
    source = hub3d.create_model("c3d").eval()  # random (default init) weights
    path = tmp_path / "c3d.pickle"
    torch.save(source.state_dict(), path, _use_new_zipfile_serialization=False)
    model = hub3d.load("c3d", pretrained=str(path)).eval()
    assert model.pretrained_cfg.tag == "sports1m" and model.num_classes == 487
    sd = {k: v for k, v in torch.load(path, weights_only=True).items()}
    assert sorted(sd) == sorted(f"{n}.{leaf}" for n, _, _ in CONVS + FCS for leaf in ("weight", "bias"))
    x = torch.rand(1, 3, 16, 112, 112)
    with torch.no_grad():
        fc7 = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model.forward_head(model.forward_features(x))
        ref_pool5 = ref_trunk(sd, x)
    torch.testing.assert_close(fc7, ref_head(sd, ref_pool5, upto="fc7"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, ref_head(sd, ref_pool5), rtol=1e-4, atol=1e-5)
    assert fc7.shape == (1, 4096) and fc7.min() >= 0  # fc7 after ReLU


def tiny_state_dict(model) -> dict:
    """Each tensor one distinct constant, expanded (a one-element storage: tiny files). A renaming that swaps two
    same-shaped tensors still changes the outputs."""
    return {k: torch.tensor(0.001 * (i + 1)).expand(v.shape) for i, (k, v) in enumerate(model.state_dict().items())}


@pytest.fixture(scope="module")
def c3d_101():
    return hub3d.create_model("c3d", num_classes=101).eval()


@pytest.mark.parametrize("recognizer", [False, True])
def test_mmaction2_files_load(tmp_path, c3d_101, recognizer):
    source = tiny_state_dict(c3d_101)
    if not recognizer:  # the backbone pretrain file stops at fc7
        source = {k: v for k, v in source.items() if not k.startswith("fc8.")}
    sd = {mmaction2_key(k, recognizer): v for k, v in source.items()}
    assert ("backbone.conv1a.conv.weight" if recognizer else "conv1a.conv.weight") in sd
    path = tmp_path / ("ucf101.pth" if recognizer else "c3d_sports1m_pretrain_20201016-dcc47ddc.pth")
    torch.save({"meta": {"epoch": 45}, "state_dict": sd}, path)
    model = hub3d.load("c3d", pretrained=str(path)).eval()
    assert model.num_classes == (101 if recognizer else 0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.items())
    if not recognizer:
        cfg = model.pretrained_cfg
        assert cfg.tag == "sports1m_mmaction2" and cfg.mean == (104.0, 117.0, 128.0) and cfg.std == (1.0,) * 3
        with torch.no_grad():  # no fc8: the model gives the 4096-d fc7 features
            assert model.forward_head(torch.rand(1, 4096, 1, 1, 1)).shape == (1, 4096)


def test_other_input_sizes_fail_clearly():
    with torch.device("meta"):
        model = hub3d.create_model("c3d").eval()
        with pytest.raises(ValueError, match="16x112x112"):
            model(torch.empty(1, 3, 16, 64, 64))


def test_missing_tensor_names_the_key(tmp_path, c3d_101):
    sd = tiny_state_dict(c3d_101)
    del sd["conv4b.bias"]
    path = tmp_path / "c3d.pickle"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"missing keys: conv4b\.bias"):
        hub3d.load("c3d", pretrained=str(path))


def test_sports1m_preprocessing():
    cfg = hub3d.get_pretrained_cfg("c3d", "sports1m")
    assert (cfg.resize, cfg.crop_size, cfg.clip_len) == ((128, 171), 112, 16)
    assert (cfg.value_scale, cfg.std) == (255.0, (1.0,) * 3)
    assert cfg.mean == (90.25, 97.66, 101.41)  # BGR order, per-channel average of the Sports-1M mean cube
    assert cfg.channel_order == "BGR"


class Recorder:
    """A runner that keeps the batches the engine feeds it."""
    device = torch.device("cpu")

    def __init__(self, num_classes):
        self.batches, self.num_classes = [], num_classes

    def __call__(self, x):
        self.batches.append(x.clone())
        return np.full((len(x), self.num_classes), 1.0 / self.num_classes, dtype=np.float32)


def test_engine_feeds_bgr_with_the_bgr_mean():
    model = hub3d.create_model("c3d.sports1m")
    red = np.zeros((16, 128, 171, 3), np.uint8)
    red[..., 0] = 255
    rec = Recorder(487)
    hub3d.classify(model, red, runner=rec)
    x = rec.batches[0]
    assert x.shape == (1, 3, 16, 112, 112)
    # channel 0 is blue (0 - 90.25), channel 2 red (255 - 101.41): the Caffe model's order and mean
    torch.testing.assert_close(x[0, :, 0, 0, 0], torch.tensor([-90.25, -97.66, 255 - 101.41]))
    rec = Recorder(487)
    hub3d.classify(hub3d.create_model("c3d.sports1m_mmaction2"), red, runner=rec)
    torch.testing.assert_close(rec.batches[0][0, :, 0, 0, 0], torch.tensor([255 - 104.0, -117.0, -128.0]))

