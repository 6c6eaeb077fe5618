"""The registry, the pretrained configs and the package's light import."""
import subprocess
import sys

import pytest
import torch

import hub3d
from hub3d.pretrained import PretrainedCfg, read_label_file


def test_import_is_light():
    code = (
        "import sys, hub3d; hub3d.list_models(); hub3d.get_pretrained_cfg('resnet3d_34', 'kinetics');"
        "heavy = [m for m in ('av', 'click', 'huggingface_hub', 'torchvision', 'safetensors') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_kinetics_alias_prefers_kinetics400():
    assert hub3d.get_pretrained_cfg("resnet3d_34", "kinetics").tag == "kinetics400"
    assert hub3d.get_pretrained_cfg("resnet3d_34", True).tag == "kinetics400"
    # A model with only Kinetics-700 weights: the alias falls back to them.
    only_700 = [n for n in hub3d.list_models(pretrained=True) if hub3d.list_tags(n)[0] == "kinetics700"]
    assert only_700, "expected the R(2+1)D models to have Kinetics-700 weights only"
    assert hub3d.get_pretrained_cfg(only_700[0], "kinetics").tag == "kinetics700"


def test_2018_and_2020_tags_differ_as_released():
    k400 = hub3d.get_pretrained_cfg("resnet3d_34", "kinetics400")
    k700 = hub3d.get_pretrained_cfg("resnet3d_34", "kinetics700")
    assert k400.arch_kwargs["shortcut_type"] == "A" and k700.arch_kwargs["shortcut_type"] == "B"
    assert (k400.value_scale, k400.std) == (255.0, (1.0, 1.0, 1.0))
    assert k700.value_scale == 1.0 and k700.mean == (0.4345, 0.4051, 0.3775)
    assert k400.file == "resnet-34-kinetics.pth" and k700.file == "r3d34_K_200ep.pth"
    assert k400.num_classes == 400 and k700.num_classes == 700
    assert not k700.labels_verified
    r50 = {tag: hub3d.get_pretrained_cfg("resnet3d_50", tag).num_classes for tag in hub3d.list_tags("resnet3d_50")}
    assert r50["kinetics700_moments"] == 1039 and r50["moments"] == 339 and r50["kinetics700_moments_stair"] == 1139


def test_every_tag_is_consistent():
    for name in hub3d.list_models(pretrained=True):
        for tag in hub3d.list_tags(name):
            cfg = hub3d.get_pretrained_cfg(name, tag)
            assert cfg.tag == tag
            names = cfg.class_names()  # label file length must match num_classes
            assert len(names) == cfg.num_classes
            assert cfg.file or cfg.url, f"{name}.{tag} has no source"
            channels = cfg.arch_kwargs.get("n_input_channels", 3)  # 2 for optical-flow weights
            assert len(cfg.mean) == channels and len(cfg.std) == channels


def test_list_models_and_pretrained():
    everything = hub3d.list_models()
    assert "resnet3d_34" in everything and everything == sorted(everything)
    assert hub3d.list_models("resnet3d_1*") == ["resnet3d_10", "resnet3d_101", "resnet3d_152", "resnet3d_18"]
    assert "resnet3d_10" not in hub3d.list_models(pretrained=True)
    assert "resnet3d_34.kinetics400" in hub3d.list_pretrained()
    assert all("." in p for p in hub3d.list_pretrained())


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown model"):
        hub3d.get_pretrained_cfg("resnet3d_35")
    with pytest.raises(ValueError, match="has no pretrained weights"):
        hub3d.get_pretrained_cfg("resnet3d_10", True)


def test_model_info_counts_and_flops():
    info = hub3d.model_info("resnet3d_34", num_classes=700, tag="kinetics700")
    assert info.params == 63_872_636 and info.num_features == 512
    assert abs(info.gflops - 25.4) < 0.1
    assert info.input_size == (3, 16, 112, 112)


def test_pretrained_cfg_round_trip():
    cfg = hub3d.get_pretrained_cfg("resnet3d_18", "kinetics400")
    assert PretrainedCfg.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown PretrainedCfg fields"):
        PretrainedCfg.from_dict({**cfg.to_dict(), "colour": "red"})


def test_label_files_shipped():
    assert len(read_label_file("kinetics400.txt")) == 400
    assert read_label_file("kinetics400.txt")[:2] == ("abseiling", "air drumming")
    assert len(read_label_file("ucf101.txt")) == 101 and len(read_label_file("hmdb51.txt")) == 51


def test_class_order_from_csv(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nslicing onion,a,0,10,train\n"
                   "jetskiing,b,0,10,train\nslicing onion,c,0,10,train\nbee keeping,d,0,10,train\n")
    assert hub3d.class_order_from_csv(csv) == ["slicing onion", "jetskiing", "bee keeping"]
    with pytest.raises(ValueError, match="no 'name' column"):
        hub3d.class_order_from_csv(csv, column="name")


def test_create_model_remembers_how_to_rebuild():
    model = hub3d.create_model("resnet3d_10", num_classes=5, widen_factor=0.25)
    assert model.arch_name == "resnet3d_10"
    assert model.arch_kwargs["widen_factor"] == 0.25 and model.arch_kwargs["num_classes"] == 5
    assert model.labels == [f"class_{i}" for i in range(5)]
    assert model.pretrained_cfg.num_classes == 5


def test_reset_classifier_and_freeze_until(tiny_model):
    model = tiny_model("resnet3d_10", num_classes=5)
    model.reset_classifier(3, labels=["a", "b", "c"])
    assert model.num_classes == 3 and model.labels == ["a", "b", "c"] and model.arch_kwargs["num_classes"] == 3
    assert model.pretrained_cfg.num_classes == 3 and model.pretrained_cfg.labels_verified
    model.freeze_until("layer4")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}
    model.train()
    assert not model.layer3[0].bn1.training and model.layer4[0].bn1.training
    x = torch.randn(2, 3, 8, 32, 32)
    model(x).sum().backward()
    assert model.conv1.weight.grad is None and model.layer4[0].conv1.weight.grad is not None
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


def test_shortcut_a_matches_the_original_and_runs_in_bf16(tiny_model):
    from hub3d.models.layers import shortcut_a

    x = torch.randn(2, 8, 5, 7, 9)
    # The original: avg_pool3d(kernel_size=1, stride) then zero channels up to planes.
    reference = torch.nn.functional.avg_pool3d(x, kernel_size=1, stride=2)
    reference = torch.cat([reference, torch.zeros(2, 8, *reference.shape[2:])], dim=1)
    assert torch.equal(shortcut_a(x, planes=16, stride=2), reference)
    model = tiny_model("resnet3d_10", shortcut_type="A", num_classes=3)
    with torch.inference_mode():
        out = model.to(torch.bfloat16)(torch.randn(1, 3, 8, 32, 32, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 3)


def test_model_meta_keeps_the_classes_in_one_place(tiny_model):
    from hub3d.pretrained import ModelMeta

    model = tiny_model("resnet3d_10", num_classes=4)
    meta = model.meta
    assert (meta.arch, meta.num_classes, meta.arch_kwargs["widen_factor"]) == ("resnet3d_10", 4, 0.125)
    assert ModelMeta.from_dict(meta.to_dict()) == meta
    with pytest.raises(ValueError, match="3 labels given for a model of 4 classes"):
        model.labels = ["a", "b", "c"]
    with pytest.raises(ValueError, match="4 labels but the config says 400 classes"):
        ModelMeta("resnet3d_10", {}, hub3d.get_pretrained_cfg("resnet3d_10"), ["a", "b", "c", "d"])
    model.labels = ["a", "b", "c", "d"]  # names only
    model.pretrained_cfg = model.pretrained_cfg.replace(clip_len=8)  # preprocessing only
    assert model.meta.labels == ("a", "b", "c", "d") and model.meta.pretrained_cfg.clip_len == 8
    model.reset_classifier(2)  # the one way to change the classes: all views follow
    assert (model.num_classes, model.arch_kwargs["num_classes"], model.pretrained_cfg.num_classes) == (2, 2, 2)
    assert model.labels == ["class_0", "class_1"] and not model.pretrained_cfg.labels_verified
