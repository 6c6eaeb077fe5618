"""Every original checkpoint layout loads strictly, converts, and reloads to identical outputs."""
import json
import os

import pytest
import torch
from click.testing import CliRunner
from original_layouts import save_bare, save_hara2018, save_hara2020

import hub3d
from hub3d.checkpoint import CheckpointError, UnsafeCheckpointError, read_checkpoint
from hub3d.cli import main
from hub3d.loader import stated_model

CLIP = (1, 3, 8, 64, 64)


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def clip():
    return torch.randn(*CLIP, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def resnet18_a():
    torch.manual_seed(1)
    model = hub3d.create_model("resnet3d_18", shortcut_type="A", num_classes=400)
    # Non-trivial BN statistics, so that a buffer lost in loading would show in the outputs.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_hara2018_legacy_cuda_layout(tmp_path, resnet18_a, clip):
    path = tmp_path / "resnet-18-kinetics.pth"
    save_hara2018(resnet18_a, path, arch="resnet-18")
    assert not (path.read_bytes()[:2] == b"PK"), "the legacy writer must not produce a zip file"
    ckpt = read_checkpoint(path)
    assert ckpt.layout == "hara2018" and stated_model(ckpt) == "resnet3d_18"
    assert not any(k.startswith("module.") for k in ckpt.state_dict)

    model = hub3d.load("resnet3d_18", pretrained=str(path))
    assert model.arch_kwargs["shortcut_type"] == "A"  # read from the file: no downsample weights
    assert model.pretrained_cfg.tag == "kinetics400"  # matched by the release file name
    assert model.pretrained_cfg.value_scale == 255.0 and model.pretrained_cfg.std == (1.0, 1.0, 1.0)
    assert model.labels[0] == "abseiling" and len(model.labels) == 400
    assert torch.equal(outputs(model, clip), outputs(resnet18_a, clip))
    # The file's own 'arch' is enough to load it without naming the model.
    assert torch.equal(outputs(hub3d.load(str(path)), clip), outputs(resnet18_a, clip))


def test_hara2020_layout_reads_classes_and_shortcut(tmp_path, clip):
    torch.manual_seed(2)
    source = hub3d.create_model("resnet3d_10", num_classes=700, conv1_t_size=7).eval()
    path = tmp_path / "my_r3d10.pth"
    save_hara2020(source, path, arch="resnet-10")
    ckpt = read_checkpoint(path)
    assert ckpt.layout == "hara2020"
    model = hub3d.load(str(path))
    assert model.num_classes == 700 and model.arch_kwargs["shortcut_type"] == "B"
    assert model.pretrained_cfg.value_scale == 1.0  # 2020 preprocessing: frames / 255, mean/std
    assert torch.equal(outputs(model, clip), outputs(source, clip))


def test_layouts_agree_and_convert_round_trip(tmp_path, resnet18_a, clip):
    expected = outputs(resnet18_a, clip)
    files = {
        "hara2018": tmp_path / "a.pth",
        "hara2020": tmp_path / "b.pth",
        "bare": tmp_path / "c.pth",
    }
    save_hara2018(resnet18_a, files["hara2018"], arch="resnet-18")
    save_hara2020(resnet18_a, files["hara2020"], arch="resnet-18")
    save_bare(resnet18_a, files["bare"])
    for layout, path in files.items():
        model = hub3d.load("resnet3d_18", pretrained=str(path))
        assert torch.equal(outputs(model, clip), expected), layout
        out_dir = hub3d.convert(path, tmp_path / f"converted_{layout}", model_name="resnet3d_18")
        assert sorted(os.listdir(out_dir)) == ["config.json", "model.safetensors"]
        reloaded = hub3d.load(str(out_dir))
        assert torch.equal(outputs(reloaded, clip), expected), layout
        assert reloaded.arch_kwargs == model.arch_kwargs
        assert reloaded.labels == model.labels
        assert reloaded.pretrained_cfg == model.pretrained_cfg


def test_config_json_describes_the_model(tmp_path, resnet18_a):
    path = tmp_path / "resnet-18-kinetics.pth"
    save_hara2018(resnet18_a, path, arch="resnet-18")
    out = hub3d.convert(path, tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet3d_18"
    assert config["arch_kwargs"]["shortcut_type"] == "A"
    assert config["num_features"] == 512 and len(config["labels"]) == 400
    assert config["pretrained_cfg"]["mean"] == [114.7748, 107.7354, 99.475]
    assert config["converted_from"] == "resnet-18-kinetics.pth"


def test_new_num_classes_keeps_all_but_classifier(tmp_path, resnet18_a, clip):
    path = tmp_path / "w.pth"
    save_hara2020(resnet18_a, path, arch="resnet-18")
    model = hub3d.load("resnet3d_18", pretrained=str(path), num_classes=7)
    assert model.num_classes == 7 and len(model.labels) == 7
    with torch.no_grad():
        got = model.eval().forward_head(model.forward_features(clip), pre_logits=True)
        want = resnet18_a.forward_head(resnet18_a.forward_features(clip), pre_logits=True)
    assert torch.equal(got, want)
    assert model(clip).shape == (1, 7)


def test_mismatch_names_model_and_keys(tmp_path, resnet18_a):
    path = tmp_path / "w.pth"
    save_hara2018(resnet18_a, path, arch="resnet-18")
    with pytest.raises(CheckpointError) as err:
        hub3d.load("resnet3d_34", pretrained=str(path))
    message = str(err.value)
    assert "resnet3d_34" in message and str(path) in message and "missing keys: layer1.2.conv1.weight" in message
    with pytest.raises(CheckpointError, match="shortcut A/B"):
        hub3d.load("resnet3d_18", pretrained=str(path), shortcut_type="B")


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        hub3d.load("resnet3d_10", pretrained=str(path))
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_unreadable_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        hub3d.load("resnet3d_10", pretrained=str(path))
    assert str(path) in str(err.value)


def test_truncated_original_checkpoint(tmp_path, resnet18_a):
    path = tmp_path / "resnet-18-kinetics.pth"
    save_hara2018(resnet18_a, path, arch="resnet-18")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="broken|not a readable"):
        hub3d.load(str(path))


def test_hub3d_dir_missing_file_is_clear(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        hub3d.load(str(tmp_path))


def test_unknown_model_and_tag_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet3d_99'"):
        hub3d.load("resnet3d_99")
    with pytest.raises(ValueError, match="no tag 'imagenet'"):
        hub3d.load("resnet3d_18", pretrained="imagenet")


def test_cli_convert(tmp_path, resnet18_a, clip):
    path = tmp_path / "resnet-18-kinetics.pth"
    save_hara2018(resnet18_a, path, arch="resnet-18")
    result = CliRunner().invoke(main, ["convert", str(path), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert torch.equal(outputs(hub3d.load(str(tmp_path / "out")), clip), outputs(resnet18_a, clip))
    # Without OUT_DIR: into the cache, where load(model, tag) finds it.
    result = CliRunner().invoke(main, ["convert", str(path)], env={"HUB3D_HOME": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "resnet3d_18.kinetics400" / "model.safetensors").exists()


def test_reduced_width_is_read_from_the_file(tmp_path, clip):
    source = hub3d.create_model("resnet3d_10", widen_factor=0.25, num_classes=8).eval()
    path = tmp_path / "small.pth"
    save_hara2020(source, path, arch="resnet-10")
    model = hub3d.load(str(path))
    assert model.arch_kwargs["widen_factor"] == 0.25 and model.num_features == 128
    assert torch.equal(outputs(model, clip), outputs(source, clip))
