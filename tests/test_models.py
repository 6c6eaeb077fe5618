"""Every architecture family: parameter counts against the original code, original parameter names, the
VideoModel contract (forward / forward_features / forward_head / reset_classifier / freeze_until), model_info.

Counts and full-size shapes are computed on the meta device (no memory, no compute); real forwards use small
clips so the file stays cheap on a shared CPU.
"""
import re

import pytest
import torch

import hub3d
from hub3d.models.densenet3d import remap_state_dict

ALL_MODELS = hub3d.list_models()


def n_params(name, **kwargs):
    with torch.device("meta"):
        model = hub3d.create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return hub3d.create_model(name, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Parameter counts of the original code (DESIGN.md section 3, 700 classes).

HARA_COUNTS_700 = [
    ("resnet3d_10", "A", 14_584_700),
    ("resnet3d_10", "B", 14_758_524),
    ("resnet3d_18", "A", 33_389_180),
    ("resnet3d_18", "B", 33_563_004),
    ("resnet3d_34", "A", 63_698_812),
    ("resnet3d_34", "B", 63_872_636),
    ("resnet3d_50", "B", 47_633_276),
    ("resnet3d_101", "B", 86_679_420),
    ("resnet3d_152", "B", 118_838_140),
    ("resnet3d_200", "B", 128_037_756),
    ("resnet2p1d_18", "B", 33_575_064),
    ("resnet2p1d_34", "B", 63_901_400),
    ("resnet2p1d_50", "B", 47_650_082),
]


@pytest.mark.parametrize("name,shortcut,expected", HARA_COUNTS_700)
def test_hara_parameter_counts(name, shortcut, expected):
    assert n_params(name, num_classes=700, shortcut_type=shortcut) == expected


# torchvision's documented num_params (R3D_18_Weights.KINETICS400_V1.meta etc.), 400 classes.
@pytest.mark.parametrize("name,expected", [("r3d_18", 33_371_472), ("mc3_18", 11_695_440), ("r2plus1d_18", 31_505_325)])
def test_torchvision_parameter_counts(name, expected):
    assert n_params(name) == expected


# An independent count of the Hara ResNet-style families, written from the original files' layer lists.
DEPTHS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
    200: ("bottleneck", [3, 24, 36, 3]),
}


def resnet_formula(
    depth, classes, shortcut="B", planes=(64, 128, 256, 512), expansion=None, preact=False, cardinality=None
):
    def conv(i, o, k=1, groups=1):
        return i * o * k // groups

    def bn(c):
        return 2 * c

    kind, layers = DEPTHS[depth]
    expansion = expansion or (1 if kind == "basic" else 4)
    total = conv(3, 64, 7 * 7 * 7) + bn(64)
    in_planes = 64
    for stage, (p, blocks) in enumerate(zip(planes, layers)):
        out = p * expansion
        for b in range(blocks):
            if kind == "basic":
                total += conv(in_planes, p, 27) + conv(p, p, 27) + (bn(in_planes) + bn(p) if preact else 2 * bn(p))
            else:
                mid = cardinality * int(p / 32) if cardinality else p
                total += conv(in_planes, mid) + conv(mid, mid, 27, cardinality or 1) + conv(mid, out)
                total += bn(in_planes) + 2 * bn(mid) if preact else 2 * bn(mid) + bn(out)
            if b == 0 and (stage > 0 or in_planes != out) and shortcut == "B":
                total += conv(in_planes, out) + bn(out)
            in_planes = out
    return total + in_planes * classes + classes


@pytest.mark.parametrize(
    "name,shortcut,expected", [c for c in HARA_COUNTS_700 if c[0].startswith("resnet3d_") and c[0] != "resnet3d_10"]
)
def test_formula_reproduces_original_counts(name, shortcut, expected):
    """The formula below is trusted for other families because it gives the original's ResNet counts."""
    assert resnet_formula(int(name.split("_")[1]), 700, shortcut) == expected


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152, 200])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_preact_parameter_counts(depth, shortcut):
    expected = resnet_formula(depth, 700, shortcut, preact=True)
    assert n_params(f"preact_resnet3d_{depth}", num_classes=700, shortcut_type=shortcut) == expected


def test_wide_resnet_parameter_count():
    # 2018 wide_resnet.py: stages 64k..512k planes, expansion 2, conv1 64 channels, k = 2.
    expected = resnet_formula(50, 400, planes=(128, 256, 512, 1024), expansion=2)
    assert n_params("wide_resnet3d_50") == expected
    assert n_params("wide_resnet3d_50", k=1) == resnet_formula(50, 400, expansion=2)


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_resnext_parameter_counts(depth):
    expected = resnet_formula(depth, 400, planes=(128, 256, 512, 1024), expansion=2, cardinality=32)
    assert n_params(f"resnext3d_{depth}") == expected


def test_resnext_too_narrow_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 32 planes"):
        meta_model("resnext3d_50", widen_factor=0.125)


def densenet_formula(block_config, classes, growth=32, bn_size=4, init=64):
    total = 64 * 3 * 343 + 2 * init
    n = init
    for i, layers in enumerate(block_config):
        for j in range(layers):
            c = n + j * growth
            total += 2 * c + c * bn_size * growth + 2 * bn_size * growth + bn_size * growth * growth * 27
        n += layers * growth
        if i < len(block_config) - 1:
            total += 2 * n + n * (n // 2)
            n //= 2
    return total + 2 * n + n * classes + classes, n


@pytest.mark.parametrize(
    "depth,config", [(121, (6, 12, 24, 16)), (169, (6, 12, 32, 32)), (201, (6, 12, 48, 32)), (264, (6, 12, 64, 48))]
)
def test_densenet_structure(depth, config):
    expected, features = densenet_formula(config, 400)
    model = meta_model(f"densenet3d_{depth}")
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.num_features == features
    keys = model.state_dict().keys()
    # 'depth' counts conv layers: 2 per dense layer, 1 per transition, conv0 and the classifier.
    assert sum(k.endswith("conv2.weight") for k in keys) == sum(config)
    assert sum(k.endswith(".conv.weight") and "transition" in k for k in keys) == 3
    # (The DenseNet paper's "264" configuration has in fact 265 such layers; the original code keeps it.)
    assert 2 * sum(config) + 3 + 2 == depth + (depth == 264)


# ---------------------------------------------------------------------------------------------------------
# Original parameter names and shapes (spot checks per family).

KEY_SHAPES = {
    "preact_resnet3d_200": {
        "conv1.weight": (64, 3, 7, 7, 7),
        "layer1.0.bn1.weight": (64,),  # pre-activation: bn1 sees the block input
        "layer1.1.bn1.weight": (256,),
        "layer2.0.downsample.0.weight": (512, 256, 1, 1, 1),
        "layer4.2.conv3.weight": (2048, 512, 1, 1, 1),
        "fc.weight": (400, 2048),
    },
    "wide_resnet3d_50": {
        "conv1.weight": (64, 3, 7, 7, 7),
        "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
        "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
        "layer4.0.conv2.weight": (1024, 1024, 3, 3, 3),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1, 1),
        "fc.weight": (400, 2048),
    },
    "resnext3d_101": {
        "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3, 3),  # 32 groups
        "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
        "layer3.22.conv2.weight": (512, 16, 3, 3, 3),
        "layer4.0.conv2.weight": (1024, 32, 3, 3, 3),
        "fc.weight": (400, 2048),
    },
    "densenet3d_121": {
        "features.conv0.weight": (64, 3, 7, 7, 7),
        "features.norm0.running_var": (64,),
        "features.denseblock1.denselayer1.norm1.weight": (64,),
        "features.denseblock1.denselayer1.conv1.weight": (128, 64, 1, 1, 1),
        "features.denseblock1.denselayer1.conv2.weight": (32, 128, 3, 3, 3),
        "features.transition1.conv.weight": (128, 256, 1, 1, 1),
        "features.denseblock4.denselayer16.norm2.weight": (128,),
        "features.norm5.weight": (1024,),
        "classifier.weight": (400, 1024),
    },
    "resnet2p1d_18": {
        "conv1_s.weight": (110, 3, 1, 7, 7),  # 3*64*7*49 // (3*49 + 7*64)
        "bn1_s.weight": (110,),
        "conv1_t.weight": (64, 110, 7, 1, 1),
        "bn1_t.weight": (64,),
        "layer1.0.conv1_s.weight": (144, 64, 1, 3, 3),
        "layer1.0.conv1_t.weight": (64, 144, 3, 1, 1),
        "layer2.0.conv1_s.weight": (230, 64, 1, 3, 3),
        "layer2.0.conv2_s.weight": (288, 128, 1, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
        "fc.weight": (700, 512),
    },
    "resnet2p1d_50": {
        "layer1.0.conv1.weight": (64, 64, 1, 1, 1),
        "layer1.0.conv2_s.weight": (144, 64, 1, 3, 3),
        "layer1.0.bn2_t.weight": (64,),
        "layer1.0.conv3.weight": (256, 64, 1, 1, 1),
        "fc.weight": (700, 2048),
    },
    "r3d_18": {
        "stem.0.weight": (64, 3, 3, 7, 7),
        "stem.1.running_mean": (64,),
        "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
        "layer1.0.conv2.1.weight": (64,),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
        "fc.weight": (400, 512),
    },
    "mc3_18": {
        "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
        "layer2.0.conv1.0.weight": (128, 64, 1, 3, 3),
        "layer4.1.conv2.0.weight": (512, 512, 1, 3, 3),
    },
    "r2plus1d_18": {
        "stem.0.weight": (45, 3, 1, 7, 7),
        "stem.3.weight": (64, 45, 3, 1, 1),
        "stem.4.weight": (64,),
        "layer1.0.conv1.0.0.weight": (144, 64, 1, 3, 3),
        "layer1.0.conv1.0.1.weight": (144,),
        "layer1.0.conv1.0.3.weight": (64, 144, 3, 1, 1),
        "layer2.0.conv1.0.0.weight": (230, 64, 1, 3, 3),
        "layer2.0.conv2.0.0.weight": (230, 128, 1, 3, 3),  # torchvision reuses conv1's width
        "layer2.0.downsample.1.weight": (128,),
    },
}


@pytest.mark.parametrize("name", sorted(KEY_SHAPES))
def test_original_key_names(name):
    sd = meta_model(name).state_dict()
    for key, shape in KEY_SHAPES[name].items():
        assert key in sd, f"{name}: missing {key}"
        assert tuple(sd[key].shape) == shape, key


def test_torchvision_downsample_strides():
    mc3 = meta_model("mc3_18")
    assert mc3.layer2[0].downsample[0].stride == (1, 2, 2)  # Conv3DNoTemporal stages keep time
    assert mc3.layer2[0].conv1[0].stride == (1, 2, 2)
    r2 = meta_model("r2plus1d_18")
    assert r2.layer2[0].downsample[0].stride == (2, 2, 2)
    assert r2.layer2[0].conv1[0][3].stride == (2, 1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool3d) for m in r2.modules())


def legacy_densenet_keys(state_dict):
    """The 2018 code's dense-layer module names: denselayerN.norm.1, conv.1, norm.2, conv.2."""
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in state_dict.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    return legacy


def test_densenet_remap_legacy_keys():
    model = hub3d.create_model("densenet3d_121", num_classes=5, growth_rate=8)
    sd = model.state_dict()
    legacy = legacy_densenet_keys(sd)
    remapped = remap_state_dict(legacy)
    assert hub3d.registry.get_family("densenet3d_121").remap_state_dict is remap_state_dict  # what checkpoint uses
    assert list(remapped) == list(sd)  # transition 'norm.weight' etc. untouched, order kept
    model.load_state_dict(remapped)  # strict
    # A 'module.'-prefixed key is renamed the same way (prefix stripping is the loader's job).
    assert list(remap_state_dict({"module.features.denseblock2.denselayer3.conv.2.weight": 0})) == [
        "module.features.denseblock2.denselayer3.conv2.weight"
    ]


# ---------------------------------------------------------------------------------------------------------
# The VideoModel contract, for every registered model.

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Two OpenMP threads on a CPU shared with other jobs run these small convolutions ~8x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TORCHVISION = ("r3d_18", "mc3_18", "r2plus1d_18")
DENSENET_FEATURES = {"densenet3d_121": 1024, "densenet3d_169": 1664, "densenet3d_201": 1920, "densenet3d_264": 2688}
HARA_PREFIXES = ("resnet3d_", "preact_resnet3d_", "wide_resnet3d_", "resnext3d_", "resnet2p1d_")


def expected_num_features(name):
    """Feature width by family; None for families this file does not know (checked for consistency only)."""
    if name in DENSENET_FEATURES:
        return DENSENET_FEATURES[name]
    if name in TORCHVISION:
        return 512
    if name.startswith(HARA_PREFIXES):
        return 512 if int(name.rsplit("_", 1)[1]) <= 34 else 2048
    return None


def feature_map_shape(name):
    """(T', H', W') at 16x112x112, from each family's strides; None for unknown families."""
    if name in DENSENET_FEATURES:
        return (1, 3, 3)  # T 16 -> 8 (pool0) -> 4 -> 2 -> 1; 112 -> 56 -> 28 -> 14 -> 7 -> 3
    if name in ("r3d_18", "r2plus1d_18"):
        return (2, 7, 7)  # no max pool: T 16 -> 8 -> 4 -> 2 (layers 2-4), 112 -> 56 -> 28 -> 14 -> 7
    if name == "mc3_18":
        return (16, 7, 7)  # layers 2-4 are 1x3x3 with spatial stride only: T stays 16
    if name.startswith(HARA_PREFIXES):
        return (1, 4, 4)  # T 16 -> 8 (max pool) -> 4 -> 2 -> 1; 112 -> 56 -> 28 -> 14 -> 7 -> 4
    return None


@pytest.mark.parametrize("name", ALL_MODELS)
def test_full_size_shapes_on_meta(name):
    model = meta_model(name).eval()
    if expected_num_features(name) is not None:
        assert model.num_features == expected_num_features(name)
    with torch.device("meta"):
        x = model.example_input(2, 16, 112, in_channels(model))  # a [slow, fast] list for SlowFast
    with torch.no_grad():
        feats = model.forward_features(x)
        assert tuple(feats.shape[:2]) == (2, model.num_features)
        if feature_map_shape(name) is not None:
            assert tuple(feats.shape[2:]) == feature_map_shape(name)
        assert tuple(model.forward_head(feats, pre_logits=True).shape) == (2, model.num_features)
        assert tuple(model.forward_head(feats).shape) == (2, model.pretrained_cfg.num_classes)


def in_channels(model):
    return model.arch_kwargs.get("n_input_channels", 3)


def small_size(name):
    """C3D's fc6 fixes its input at 112x112; everything else runs on 32x32."""
    return 112 if name == "c3d" else 32


def small_variant(name):
    """Architecture arguments that shrink the biggest models for a real CPU forward (their full-size structure
    is checked on the meta device above): a quarter of the ResNet widths, DenseNet growth 8."""
    if n_params(name) < 40e6:
        return {}
    from hub3d.models.densenet3d import DenseNet3d
    from hub3d.models.resnet3d import ResNet3d

    model = meta_model(name)
    if isinstance(model, ResNet3d):
        return {"widen_factor": 0.25}
    if isinstance(model, DenseNet3d):
        return {"growth_rate": 8}
    return {}


# Families whose heads pool with the original's fixed kernel (stride 1), not a global average: see their modules.
FIXED_KERNEL_HEADS = ("pytorchvideo_resnet", "x3d", "s3d")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_and_reset_classifier(name):
    torch.manual_seed(0)
    model = hub3d.create_model(name, num_classes=3, **small_variant(name)).eval()
    x = model.example_input(1, 16, small_size(name), in_channels(model))
    x = [torch.randn_like(t) for t in x] if isinstance(x, list) else torch.randn_like(x)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
        assert feats.shape[:2] == (1, model.num_features)
        assert pooled.shape == (1, model.num_features)
        assert logits.shape == (1, 3)
        assert torch.isfinite(logits).all()
        if hub3d.registry.model_family(name) not in FIXED_KERNEL_HEADS:
            torch.testing.assert_close(pooled, feats.mean(dim=(2, 3, 4)))
        torch.testing.assert_close(model(x), logits)
        model.reset_classifier(5)
        assert model.num_classes == 5
        assert model.forward_head(feats).shape == (1, 5)
        model.reset_classifier(0)
        torch.testing.assert_close(model.forward_head(feats), pooled)


@pytest.mark.parametrize("name", ["densenet3d_121", "resnet2p1d_10", "r2plus1d_18", "preact_resnet3d_18"])
@pytest.mark.parametrize("index", [1, 2, -1])
def test_freeze_until_uses_family_stage_names(name, index):
    model = meta_model(name)
    assert model.stage_names[0] == "stem"
    stages = model.stage_names[index:]
    model.freeze_until(model.stage_names[index])
    for key, param in model.named_parameters():
        under = any(key.startswith(p + ".") for p in (*stages, model.classifier_name))
        assert param.requires_grad == under, key
    assert sum(not p.requires_grad for p in model.parameters()) > 0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_info(name):
    info = hub3d.model_info(name)
    assert info.name == name
    assert info.params == n_params(name)
    if expected_num_features(name) is not None:
        assert info.num_features == expected_num_features(name)
    assert info.gflops > 0.1
    assert info.tags == hub3d.list_tags(name)
    assert info.as_row()["model"] == name


def test_flops_match_design_for_hara_resnets():
    # DESIGN.md: r18 16.6 G, r50 20.1 G per 16x112x112 clip; the pre-activation ones do the same convolutions.
    assert round(hub3d.model_info("preact_resnet3d_18").gflops, 1) == 16.6
    assert round(hub3d.model_info("preact_resnet3d_50").gflops, 1) == 20.1


# ---------------------------------------------------------------------------------------------------------
# Pretrained configs.

@pytest.mark.parametrize("tag", hub3d.list_pretrained())
def test_every_tag_builds_with_its_labels(tag):
    name, tag = tag.split(".", 1)
    cfg = hub3d.get_pretrained_cfg(name, tag)
    assert len(cfg.class_names()) == cfg.num_classes
    model = meta_model(name, pretrained_cfg=cfg)
    assert model.num_classes == cfg.num_classes


def test_new_family_tags():
    assert hub3d.list_tags("preact_resnet3d_200") == ["kinetics400"]
    assert hub3d.list_tags("preact_resnet3d_50") == []
    assert hub3d.get_pretrained_cfg("wide_resnet3d_50", "kinetics400").file == "wideresnet-50-kinetics.pth"
    rx = {t: hub3d.get_pretrained_cfg("resnext3d_101", t) for t in hub3d.list_tags("resnext3d_101")}
    assert rx["kinetics400"].metrics and rx["kinetics400_64f"].clip_len == 64
    assert (rx["ucf101_split1"].num_classes, rx["hmdb51_split1_64f"].num_classes) == (101, 51)
    assert rx["hmdb51_split1_64f"].clip_len == 64 and not rx["ucf101_split1"].labels_verified
    assert all(c.value_scale == 255 and c.std == (1.0, 1.0, 1.0) for c in rx.values())
    assert hub3d.list_tags("densenet3d_121") == hub3d.list_tags("densenet3d_201") == ["kinetics400"]
    r2 = hub3d.get_pretrained_cfg("resnet2p1d_50", "kinetics700")
    assert (r2.file, r2.num_classes) == ("r2p1d50_K_200ep.pth", 700)
    assert hub3d.get_pretrained_cfg("resnet2p1d_18", "kinetics700_moments").num_classes == 1039
    for name, h in (("r3d_18", "b3b3357e"), ("mc3_18", "a90a0ba3"), ("r2plus1d_18", "91a641e6")):
        cfg = hub3d.get_pretrained_cfg(name, "kinetics")
        assert cfg.url == f"https://download.pytorch.org/models/{name}-{h}.pth" and cfg.sha256 == h
        assert (cfg.resize, cfg.crop_size, cfg.value_scale) == ((128, 171), 112, 1.0)
        assert cfg.labels_verified and cfg.license == "BSD-3-Clause"


# ---------------------------------------------------------------------------------------------------------
# The 2018 release's checkpoints of these families load through hub3d.load (small widths: the layout is the
# same at every width).

@pytest.mark.parametrize(
    "arch,name,kwargs",
    [
        ("densenet-121", "densenet3d_121", {"growth_rate": 8}),  # legacy 'norm.1' names, remapped
        ("resnext-101", "resnext3d_101", {"widen_factor": 0.25}),  # cardinality read off the grouped conv
        ("preresnet-200", "preact_resnet3d_200", {"widen_factor": 0.125}),
    ],
)
def test_hara2018_checkpoints_load(tmp_path, arch, name, kwargs):
    from original_layouts import save_hara2018

    torch.manual_seed(0)
    model = hub3d.create_model(name, **kwargs).eval()
    for m in model.modules():  # non-trivial BN statistics, so a mis-assigned buffer changes the output
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    original = model
    if name.startswith("densenet"):
        legacy = legacy_densenet_keys(model.state_dict())
        original = torch.nn.Module()
        original.state_dict = lambda: legacy
    save_hara2018(original, tmp_path / "w.pth", arch)
    loaded = hub3d.load(str(tmp_path / "w.pth"), **kwargs).eval()
    assert loaded.arch_name == name
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
