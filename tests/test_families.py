"""The family layer: original arch names, 2020-code checkpoints of every architecture, stage names,
gradients through every model, and the bundled motion_demo's golden outputs."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_kwargs
from original_layouts import densenet_2020_keys, save_hara2020

import hub3d
from hub3d.registry import get_family, model_for_arch


def logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


# 3D-ResNets-PyTorch 2020: main.py saves arch = f"{opt.model}-{opt.model_depth}", opt.model one of model.py's
# generate_model choices. Each case: (arch, hub3d model, our arguments that give the 2020 code's layout).
HARA_2020 = [
    ("resnet-18", "resnet3d_18", {"widen_factor": 0.25}),
    ("resnet2p1d-18", "resnet2p1d_18", {"widen_factor": 0.25}),
    ("preresnet-18", "preact_resnet3d_18", {"widen_factor": 0.25}),
    # wide_resnet.py (2020) widens conv1 too: 64k channels, not the 2018 code's 64.
    ("wideresnet-50", "wide_resnet3d_50", {"stem_planes": 128}),
    # resnext.py (2020): conv1 has block_inplanes[0] = 128 channels (widen 1, the layout the code intends).
    ("resnext-50", "resnext3d_50", {"stem_planes": 128}),
    # densenet.py (2020): the stem is features.conv1 / norm1 (2018: conv0 / norm0).
    ("densenet-121", "densenet3d_121", {}),
]


@pytest.mark.parametrize("arch,name,kwargs", HARA_2020, ids=[c[0] for c in HARA_2020])
def test_hara2020_checkpoints_of_every_architecture_load(tmp_path, arch, name, kwargs):
    assert model_for_arch(arch) == name
    torch.manual_seed(0)
    source = hub3d.create_model(name, num_classes=5, **kwargs).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a wrong mapping shows in the outputs
        for module in source.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{arch}.pth"
    save_hara2020(source, path, arch, rename=densenet_2020_keys if name.startswith("densenet") else None)
    sd = torch.load(path, weights_only=True)["state_dict"]
    if name.startswith("densenet"):
        assert "features.conv1.weight" in sd and "features.conv0.weight" not in sd
    if "stem_planes" in kwargs:
        assert sd["conv1.weight"].shape[0] == kwargs["stem_planes"]
    loaded = hub3d.load(str(path))  # the arch string names the model; the rest is told from the tensors
    assert loaded.arch_name == name and loaded.num_classes == 5
    for key, value in kwargs.items():
        assert loaded.arch_kwargs[key] == value
    x = torch.randn(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(logits(loaded, x), logits(source, x))


def test_each_family_detects_its_own_state_dicts():
    names = ["resnet3d_18", "resnet3d_50", "preact_resnet3d_50", "resnet2p1d_18", "wide_resnet3d_50",
             "resnext3d_50", "densenet3d_121", "r3d_18", "r2plus1d_18"]
    with torch.device("meta"):
        sds = {n: hub3d.create_model(n).state_dict() for n in names}
    for name in names:
        family = get_family(name)
        assert family.detect(sds[name]), name
        others = [n for n in names if get_family(n) is not family]
        assert not any(family.detect(sds[n]) for n in others), (name, [n for n in others if family.detect(sds[n])])
    assert get_family("densenet3d_121").detect(densenet_2020_keys(sds["densenet3d_121"]))


# ------------------------------------------------------------------------------------------------ stages
@pytest.mark.parametrize("stage,trainable", [("conv1", None), ("fc", ("fc",)), ("conv5_x", ("layer4", "fc")),
                                             ("layer3", ("layer3", "layer4", "fc"))])
def test_finetune_from_original_stage_names(tiny_model, stage, trainable):
    model = tiny_model("resnet3d_10")
    model.freeze_until(stage)
    for pname, p in model.named_parameters():
        expected = trainable is None or pname.split(".")[0] in trainable
        assert p.requires_grad == expected, pname


def test_densenet_stage_names_of_the_original_code(tiny_model):
    model = tiny_model("densenet3d_121")
    model.freeze_until("classifier")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    model.freeze_until("denseblock4")  # model.py's get_module_name drops 'features.'
    assert all(p.requires_grad == n.startswith(("features.denseblock4", "features.norm5", "classifier"))
               for n, p in model.named_parameters())
    with pytest.raises(ValueError, match="unknown stage 'layer9'.*conv5_x"):
        tiny_model("resnet3d_10").freeze_until("layer9")


@pytest.mark.parametrize("stage", ["conv1", "fc"])
def test_train_build_model_accepts_conv1_and_fc(tmp_path, stage):
    """What `hub3d train --finetune-from conv1 / fc` runs (it failed with 'unknown stage')."""
    from hub3d.train import TrainConfig
    from hub3d.train.engine import build_model

    cfg = TrainConfig(model="resnet3d_10", model_kwargs={"widen_factor": 0.125}, finetune_from=stage,
                      out=str(tmp_path))
    model = build_model(cfg, ["a", "b", "c"])
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == [] if stage == "conv1" else all(not n.startswith("fc.") for n in frozen) and len(frozen) > 10


# ------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", hub3d.list_models())
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = hub3d.create_model(name, num_classes=3, **tiny_kwargs(name)).train()
    channels = model.arch_kwargs.get("n_input_channels", 3)
    size = 112 if name == "c3d" else 32  # C3D's fc6 fixes its input; DenseNet's 3 transitions need 16 frames
    x = model.example_input(2, 16, size, channels)  # SlowFast: a [slow, fast] list
    x = [torch.randn_like(t) for t in x] if isinstance(x, list) else torch.randn_like(x)
    model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


# ------------------------------------------------------------------------------------------ golden outputs
# hub3d.load("motion_demo", pretrained=True) on randn(2, 3, 16, 64, 64) seeded 0, computed once (at commit
# 81f2c86, before the family refactor): a change in any number of the model or its loading fails this test.
MOTION_DEMO_LOGITS = [
    [3.833066, 3.716635, 1.717033, 2.729629, -8.935849, -7.821504, -3.852592, -1.878643],
    [3.024493, 3.644963, 3.149209, 1.272109, -8.7673, -7.882359, -4.599607, -0.585057],
]
MOTION_DEMO_SUMS = (-21.235775351524353, 67.41004836559296, -295.3758866786957)  # sum, |sum|, index-weighted sum


def test_motion_demo_golden_outputs():
    torch.set_num_threads(1)
    model = hub3d.load("motion_demo", pretrained=True)
    x = torch.randn(2, 3, 16, 64, 64, generator=torch.Generator().manual_seed(0))
    y = logits(model, x).double()
    # 1e-5: the stored 6 decimals plus fp32 kernels that differ between CPUs (1.7e-6 seen on an AMD EPYC).
    assert torch.allclose(y, torch.tensor(MOTION_DEMO_LOGITS, dtype=torch.float64), rtol=0, atol=1e-5)
    weights = torch.arange(1, 17, dtype=torch.float64).view(2, 8)
    sums = (float(y.sum()), float(y.abs().sum()), float((y * weights).sum()))
    assert sums == pytest.approx(MOTION_DEMO_SUMS, rel=0, abs=1e-4)
