"""Features from named layers: forward_intermediates for every registered model (meta), real forwards checked
against each family's own code path, extract_features(layer=, pool=), `hub3d features --layer`, `hub3d info`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import hub3d
from hub3d import registry
from hub3d.cli import main


@pytest.mark.parametrize("name", registry.list_models())
def test_every_model_names_its_layers_and_their_shapes_on_meta(name):
    layers = registry.traced_layers(name)
    # `hub3d info` prints the generated table (hub3d/zoo_stats.py): it must be what the model gives now.
    assert registry.model_layers(name) == layers, "stale ZOO_LAYERS: run python tools/gen_zoo_stats.py"
    with torch.device("meta"):
        model = registry.create_model(name)
    assert list(layers) == model.feature_layers and len(layers) >= 4
    for layer, shape in layers.items():
        assert model.resolve_layer(layer.upper()) == layer  # case-insensitive
        flat = [s for part in shape for s in part] if isinstance(shape, list) else list(shape)
        assert all(isinstance(s, int) and s > 0 for s in flat), (layer, shape)
    with pytest.raises(ValueError, match="feature layers: " + list(layers)[0]):
        model.resolve_layer("no_such_layer")


def test_resnet_stages_match_its_forward(tiny_model):
    model = tiny_model("resnet3d_10")
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        out = model.forward_intermediates(x, ["STEM", "layer4", "conv1"])
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert list(out) == ["stem", "layer4", "conv1"]
    torch.testing.assert_close(out["stem"], stem)
    torch.testing.assert_close(out["conv1"], model.conv1(x))  # any submodule's dotted path works too
    torch.testing.assert_close(out["layer4"].mean(dim=(2, 3, 4)), pre)
    torch.testing.assert_close(out["layer4"], model.forward_features(x))


def test_c3d_fc6_and_fc7_are_after_relu():
    torch.manual_seed(0)
    model = hub3d.create_model("c3d", num_classes=5).eval()
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        out = model.forward_intermediates(x, ["fc6", "fc7", "conv5b"])
        pool5 = model.pool5(out["conv5b"])
        fc6 = F.relu(F.linear(pool5.flatten(1), model.fc6.weight, model.fc6.bias))
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert (out["conv5b"] >= 0).all()
    torch.testing.assert_close(out["fc6"], fc6)
    torch.testing.assert_close(out["fc7"], pre)


def test_p3d_res5_gets_its_time_axis_back():
    torch.manual_seed(0)
    model = hub3d.create_model("p3d_63", num_classes=5).eval()
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        out = model.forward_intermediates(x, ["layer4"])["layer4"]
        torch.testing.assert_close(out, model.forward_features(x))


def test_slowfast_pathways_pool_into_one_vector():
    from hub3d.inference import pool_layer

    slow, fast = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 2, 8, 3, 3)
    torch.testing.assert_close(pool_layer([slow, fast], "max"),
                               torch.cat([slow.amax(dim=(2, 3, 4)), fast.amax(dim=(2, 3, 4))], 1))
    with pytest.raises(ValueError, match="pathway"):
        pool_layer([slow, fast], None)
    with pytest.raises(ValueError, match="pool must be"):
        pool_layer(slow, "median")


def test_extract_features_from_a_layer_on_a_video(tiny_model, make_video):
    model = tiny_model("resnet3d_10")
    video = str(make_video(num_frames=24))
    kw = dict(clip_len=8, threads=1, spec=model.pretrained_cfg)
    full = hub3d.extract_features(model, video, layer="Layer3", pool=None, **kw)[0]
    assert full.features.shape[0] == 3 and full.features.ndim == 5  # (clips, C, T, H, W)
    avg = hub3d.extract_features(model, video, layer="layer3", **kw)[0]
    mx = hub3d.extract_features(model, video, layer="layer3", pool="max", **kw)[0]
    np.testing.assert_allclose(avg.features, full.features.mean(axis=(2, 3, 4)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mx.features, full.features.max(axis=(2, 3, 4)), rtol=1e-5, atol=1e-6)
    assert avg.clip_frames.tolist() == [[0, 8], [8, 16], [16, 24]]
    with pytest.raises(ValueError, match="no layer 'mixed_5c'"):
        hub3d.extract_features(model, video, layer="mixed_5c", **kw)


def test_cli_features_layer_and_info(tmp_path, make_video):
    video = str(make_video(num_frames=16))
    out = tmp_path / "f.npy"
    args = ["features", video, "--model", "resnet3d_10", "--pretrained", "none", "--clip-len", "8",
            "--threads", "1", "-q", "--out", str(out)]
    result = CliRunner().invoke(main, args + ["--layer", "LAYER2", "--pool", "none"])
    assert result.exit_code == 0, result.output
    feats = np.load(out)
    assert feats.shape[:2] == (2, 128) and feats.ndim == 5
    result = CliRunner().invoke(main, args + ["--layer", "nope"])
    assert result.exit_code == 2 and "layer1" in result.output
    result = CliRunner().invoke(main, ["info", "c3d"])
    assert result.exit_code == 0 and "fc6: 4096" in result.output and "conv5b: 512x2x7x7" in result.output
