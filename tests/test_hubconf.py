"""hubconf.py through torch.hub itself (source="local"): every entry point, with and without weights."""
from __future__ import annotations

from pathlib import Path

import torch
from hf_server import TINY, patch_tag, tiny_tag_model
from test_hub import X, hub3d_files, same_weights, url_tag

import hub3d

REPO = str(Path(__file__).resolve().parents[1])


def test_list_and_help_cover_every_registered_model(tmp_path, monkeypatch):
    # torch 2.13's hub.list/help take only a GitHub spec: give them this checkout as the cached download of
    # "hub3d/hub3d:main" (an existing cache dir is used as is, nothing is fetched).
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "hub3d_hub3d_main").symlink_to(REPO, target_is_directory=True)
    entries = torch.hub.list("hub3d/hub3d:main", trust_repo=True, verbose=False)
    docs = {name: torch.hub.help("hub3d/hub3d:main", name, trust_repo=True) for name in entries}
    assert sorted(entries) == sorted(hub3d.list_models() + hub3d.list_pretrained())
    for name, doc in docs.items():
        assert doc and "\n" not in doc.strip(), name
        if "." in name:  # a 'model.tag' entry: the names list_pretrained() prints
            assert doc.endswith(f"weights {name.split('.', 1)[1]}."), name
            continue
        tags = hub3d.list_tags(name)
        assert all(t in doc for t in tags) if tags else "no released weights" in doc


def test_every_entry_point_builds_its_model_without_weights():
    # On the meta device: the real constructors run, no memory is allocated (the big ones are slow on CPU).
    with torch.device("meta"):
        for name in hub3d.list_models():
            model = torch.hub.load(REPO, name, source="local", verbose=False)
            assert isinstance(model, hub3d.models.base.VideoModel) and model.arch_name == name
            assert model.num_classes == hub3d.get_pretrained_cfg(name).num_classes
            assert next(model.parameters()).is_meta


def test_entry_point_passes_arguments_through():
    model = torch.hub.load(REPO, "resnet3d_10", source="local", num_classes=5, widen_factor=0.25,
                           shortcut_type="A").eval()
    assert model.arch_kwargs["widen_factor"] == 0.25 and model.arch_kwargs["shortcut_type"] == "A"
    with torch.no_grad():
        assert model(X).shape == (1, 5)


def test_pretrained_from_url_and_from_the_hub(fake_hub, monkeypatch, tmp_path):
    _, source, _ = url_tag(monkeypatch, fake_hub, tmp_path)
    model = torch.hub.load(REPO, "resnet3d_18", source="local", pretrained="kinetics400").eval()
    assert same_weights(model, source)

    patch_tag(monkeypatch, "resnet3d_34", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    r34 = tiny_tag_model("resnet3d_34", "kinetics400", seed=4)
    fake_hub.add_repo("hub3d/resnet3d_34.kinetics400", hub3d_files(r34, tmp_path))
    loaded = torch.hub.load(REPO, "resnet3d_34", source="local", pretrained="kinetics").eval()
    assert same_weights(loaded, r34) and loaded.labels == r34.labels
    with torch.no_grad():
        assert torch.equal(loaded(X), r34(X))
    by_tag = torch.hub.load(REPO, "resnet3d_34.kinetics400", source="local").eval()  # a list_pretrained() name
    assert same_weights(by_tag, r34) and by_tag.pretrained_cfg.tag == "kinetics400"
