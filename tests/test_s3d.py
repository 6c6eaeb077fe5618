"""torchvision's S3D: its key names and shapes (expanded from tests/data/pytorchvideo_structure.json, written from
torchvision/models/video/s3d.py), its published parameter count, strict loading of a bare torchvision state
dict, the (2, 7, 7) head, the tag, a save_pretrained round trip."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import hub3d
from hub3d.checkpoint import read_checkpoint
from hub3d.models import s3d as s3d_module

DATA = json.loads((Path(__file__).parent / "data" / "pytorchvideo_structure.json").read_text())


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cna(prefix, c_out, c_in, kernel):
    """Conv3dNormActivation: conv ``.0`` (no bias), BN ``.1``."""
    return {f"{prefix}.0.weight": (c_out, c_in, *kernel), f"{prefix}.1.weight": (c_out,), f"{prefix}.1.bias": (c_out,),
            f"{prefix}.1.running_mean": (c_out,), f"{prefix}.1.running_var": (c_out,),
            f"{prefix}.1.num_batches_tracked": ()}


def sep(prefix, c_out, c_in, k):
    return {**cna(f"{prefix}.0", c_out, c_in, (1, k, k)), **cna(f"{prefix}.1", c_out, c_out, (k, 1, 1))}


def s3d_structure():
    keys = {**sep("features.0", 64, 3, 7), **cna("features.2", 64, 64, (1, 1, 1)), **sep("features.3", 192, 64, 3)}
    for index, (c_in, b0, b1m, b1, b2m, b2, b3) in DATA["s3d"]["inception"].items():
        p = f"features.{index}"
        keys.update(cna(f"{p}.branch0", b0, c_in, (1, 1, 1)))
        keys.update({**cna(f"{p}.branch1.0", b1m, c_in, (1, 1, 1)), **sep(f"{p}.branch1.1", b1, b1m, 3)})
        keys.update({**cna(f"{p}.branch2.0", b2m, c_in, (1, 1, 1)), **sep(f"{p}.branch2.1", b2, b2m, 3)})
        keys.update(cna(f"{p}.branch3.1", b3, c_in, (1, 1, 1)))
    keys.update({"classifier.1.weight": (400, 1024, 1, 1, 1), "classifier.1.bias": (400,)})
    return keys


def random_state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(3) if k.endswith("num_batches_tracked") else
                torch.rand(s, generator=g) + 0.5 if k.endswith("running_var") else torch.randn(s, generator=g) * 0.1)
            for k, s in s3d_structure().items()}


def test_keys_shapes_and_count_are_torchvisions():
    with torch.device("meta"):
        model = hub3d.create_model("s3d")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == s3d_structure()
    assert sum(p.numel() for p in model.parameters()) == DATA["published_params_exact"]["s3d"]


def test_bn_is_torchvisions():
    bn = hub3d.create_model("s3d").features[0][0][1]
    assert bn.eps == 1e-3 and bn.momentum == 1e-3


def test_torchvision_file_loads_strictly_and_runs(tmp_path):
    sd = random_state_dict()
    path = tmp_path / "s3d-d76dad2f.pth"
    torch.save(sd, path)
    assert read_checkpoint(path).layout == "state_dict"
    model = hub3d.load("s3d", pretrained=str(path)).eval()
    assert model.pretrained_cfg.tag == "kinetics400" and model.labels[0] == "abseiling"
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(x)
    assert out.shape == (1, 400) and tuple(feats.shape) == (1, 1024, 2, 2, 2)
    # At 64 x 64 the map (2, 2, 2) is under the (2, 7, 7) kernel: one global average, then the 1x1x1 conv.
    conv = model.classifier[1]
    ref = conv(feats.mean(dim=(2, 3, 4), keepdim=True)).flatten(1)
    torch.testing.assert_close(out, ref)

    model.save_pretrained(tmp_path / "converted")
    again = hub3d.load(str(tmp_path / "converted")).eval()
    with torch.no_grad():
        assert torch.equal(again(x), out)


def test_head_equals_torchvisions_at_full_size():
    # torchvision: AvgPool3d((2, 7, 7), stride=1), Dropout, Conv3d 1x1x1, mean over (T, H, W).
    torch.manual_seed(0)
    model = hub3d.create_model("s3d", num_classes=5).eval()
    for shape in [(2, 7, 7), (3, 9, 8)]:
        x = torch.randn(1, 1024, *shape)
        ref = model.classifier(nn.AvgPool3d((2, 7, 7), stride=1)(x)).mean(dim=(2, 3, 4))
        assert torch.equal(model.forward_head(x), ref)


def test_reset_classifier_keeps_a_conv():
    model = hub3d.create_model("s3d").eval()
    model.reset_classifier(7)
    assert isinstance(model.classifier[1], nn.Conv3d) and model.num_classes == 7
    model.reset_classifier(0)
    x = torch.randn(1, 1024, 2, 7, 7)
    torch.testing.assert_close(model.forward_head(x), model.forward_head(x, pre_logits=True))


def test_tag():
    cfg = hub3d.get_pretrained_cfg("s3d", "kinetics400")
    assert cfg.url == "https://download.pytorch.org/models/s3d-d76dad2f.pth" and cfg.sha256 == "d76dad2f"
    assert cfg.metrics == {"kinetics400_val_video_acc@1": 68.368, "kinetics400_val_video_acc@5": 88.050}
    assert cfg.resize == (256, 256) and cfg.crop_size == 224 and cfg.clip_len >= 14
    assert cfg.license == "BSD-3-Clause"
    assert s3d_module.detect(random_state_dict()) and s3d_module.infer_arch_kwargs(random_state_dict()) == {
        "num_classes": 400}
