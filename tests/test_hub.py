"""Weights sources, verified downloads, the Hugging Face Hub and publishing, against a local fake Hub."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hf_server import TINY, patch_tag, set_offline, tiny_tag_model
from original_layouts import save_bare, save_hara2018, save_hara2020

import hub3d
from hub3d import errors, loader, publish, sources
from hub3d.cli import main
from hub3d.pretrained import DRIVE_2018
from hub3d.publish import save_pretrained

REPO_ROOT = Path(__file__).resolve().parents[1]
X = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def hub3d_files(model, tmp_path) -> dict:
    out = save_pretrained(model, tmp_path / "repo_src")
    return {name: (out / name).read_bytes() for name in ("config.json", "model.safetensors")}


def url_tag(monkeypatch, server, tmp_path, name="r3d_tiny-{}.pth", seed=0):
    """resnet3d_18.kinetics400 turned into a torchvision-style URL tag on the fake server (bare state dict,
    the sha256 prefix in the file name); returns (cfg, the model whose weights the file holds, file bytes)."""
    patch_tag(monkeypatch, "resnet3d_18", "kinetics400", arch_kwargs={"shortcut_type": "B", **TINY})
    model = tiny_tag_model(seed=seed)
    path = tmp_path / "upload.pth"
    save_bare(model, path)
    data = path.read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    filename = name.format(prefix)
    url = server.add_file(filename, data)
    cfg = patch_tag(monkeypatch, "resnet3d_18", "kinetics400", url=url, sha256=prefix, file=filename,
                    drive_folder=None, arch_kwargs={"shortcut_type": "B", **TINY})
    return cfg, model, data


# ---------------------------------------------------------------------------------------------------------
# Places and names.


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HUB3D_HOME", str(tmp_path / "h"))
    assert sources.cache_dir() == tmp_path / "h"
    monkeypatch.delenv("HUB3D_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_dir() == tmp_path / "xdg" / "hub3d"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sources.cache_dir() == tmp_path / "home" / ".cache" / "hub3d"


def test_parse_hf_id_and_default_repo():
    assert sources.parse_hf_id("hf-hub:org/name") == ("org/name", None)
    assert sources.parse_hf_id("hf-hub:org/name@v1.0") == ("org/name", "v1.0")
    for bad in ("hf-hub:name", "hf-hub:a/b/c", "hf-hub:/x"):
        with pytest.raises(ValueError, match="not a Hugging Face Hub repo id"):
            sources.parse_hf_id(bad)
    cfg = hub3d.get_pretrained_cfg("resnet3d_34", "kinetics400")
    assert sources.hf_repo_id("resnet3d_34", cfg) == "hub3d/resnet3d_34.kinetics400"
    assert sources.hf_repo_id("resnet3d_34", cfg.replace(hf_hub_id="me/r34")) == "me/r34"


# ---------------------------------------------------------------------------------------------------------
# Hugging Face Hub source.


def test_hf_first_load_downloads_second_makes_no_request(fake_hub, monkeypatch, tmp_path):
    patch_tag(monkeypatch, "resnet3d_18", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    source = tiny_tag_model(seed=3)
    fake_hub.add_repo("hub3d/resnet3d_18.kinetics400", hub3d_files(source, tmp_path))

    model = hub3d.load("resnet3d_18", pretrained="kinetics400").eval()
    assert same_weights(model, source)
    assert model.labels == source.labels and len(model.labels) == 400
    assert fake_hub.count("HEAD", "/hub3d/resnet3d_18.kinetics400/resolve/main/config.json") == 1
    assert fake_hub.count("GET", "/cdn/") == 1  # the LFS weights, through the CDN redirect
    fake_hub.reset_counts()

    again = hub3d.load("resnet3d_18", pretrained="kinetics").eval()  # alias of the same tag
    assert fake_hub.requests == []
    with torch.no_grad():
        assert torch.equal(again(X), source(X))


def test_hf_hub_prefix_and_pinned_revision(fake_hub, tmp_path):
    first = hub3d.create_model("resnet3d_10", num_classes=3, widen_factor=0.25).eval()
    torch.manual_seed(7)
    second = hub3d.create_model("resnet3d_10", num_classes=3, widen_factor=0.25).eval()
    c1 = fake_hub.add_repo("me/finetuned", hub3d_files(first, tmp_path / "a"))
    c2 = fake_hub.add_repo("me/finetuned", hub3d_files(second, tmp_path / "b"))
    fake_hub.repos["me/finetuned"].refs["v1"] = c1

    assert same_weights(hub3d.load(f"hf-hub:me/finetuned@{c1}"), first)
    assert same_weights(hub3d.load("hf-hub:me/finetuned@v1"), first)
    latest = hub3d.load("hf-hub:me/finetuned")
    assert same_weights(latest, second) and latest.arch_kwargs["widen_factor"] == 0.25
    assert sources.download_hf("me/finetuned").name == c2

    fake_hub.reset_counts()
    hub3d.load(f"hf-hub:me/finetuned@{c1}")  # a commit hash already cached: nothing to ask
    assert fake_hub.requests == []

    with pytest.raises(errors.WeightsNotFoundError, match="me/finetuned@nope.*revision not found"):
        sources.download_hf("me/finetuned", revision="nope")
    with pytest.raises(errors.WeightsNotFoundError, match="me/missing.*repository not found"):
        hub3d.load("hf-hub:me/missing")
    with pytest.raises(ValueError, match="not a Hugging Face Hub repo id"):
        hub3d.load("hf-hub:no-org")
    fake_hub.add_repo("me/not-hub3d", {"README.md": b"hi"})
    with pytest.raises(errors.WeightsNotFoundError, match="not a hub3d repo"):
        sources.download_hf("me/not-hub3d")


def test_offline_mode_uses_caches_and_makes_no_request(fake_hub, monkeypatch, tmp_path):
    model = hub3d.create_model("resnet3d_10", num_classes=2, widen_factor=0.25)
    fake_hub.add_repo("me/tiny", hub3d_files(model, tmp_path))
    hub3d.load("hf-hub:me/tiny")
    cfg, url_model, _ = url_tag(monkeypatch, fake_hub, tmp_path)
    hub3d.load("resnet3d_18", pretrained="kinetics400")
    fake_hub.reset_counts()

    set_offline(monkeypatch)
    assert same_weights(hub3d.load("hf-hub:me/tiny"), model)
    assert same_weights(hub3d.load("resnet3d_18", pretrained="kinetics400"), url_model)
    with pytest.raises(errors.WeightsNotFoundError) as err:
        hub3d.load("resnet3d_34", pretrained="kinetics400")
    assert "could not be reached" in str(err.value) and "resnet-34-kinetics.pth" in str(err.value)
    (Path(sources.cache_dir()) / "resnet3d_18.kinetics400" / "config.json").unlink()
    (Path(sources.cache_dir()) / cfg.file).unlink()
    with pytest.raises(errors.WeightsNotFoundError, match="not tried \\(offline mode\\)"):
        hub3d.load("resnet3d_18", pretrained="kinetics400")
    assert fake_hub.requests == []


def test_missing_everywhere_names_file_folder_and_command(fake_hub):
    with pytest.raises(errors.WeightsNotFoundError) as err:
        hub3d.load("resnet3d_34", pretrained="kinetics")
    message = str(err.value)
    cache = sources.cache_dir()
    assert "'resnet-34-kinetics.pth'" in message and DRIVE_2018 in message
    assert "hub3d/resnet3d_34.kinetics400 on the Hugging Face Hub: repository not found" in message
    command = f"hub3d convert resnet-34-kinetics.pth {cache / 'resnet3d_34.kinetics400'} --model resnet3d_34 --tag kinetics400"
    assert command in message
    assert str(cache / "resnet-34-kinetics.pth") in message
    assert fake_hub.count("HEAD", "/hub3d/resnet3d_34.kinetics400/resolve/main/config.json") == 1
    assert isinstance(err.value, FileNotFoundError)


def test_every_tag_without_weights_says_where_they_are(fake_hub, monkeypatch):
    set_offline(monkeypatch)
    for key in hub3d.list_pretrained():
        name, tag = key.split(".", 1)
        cfg = hub3d.get_pretrained_cfg(name, tag)
        if cfg.release == "bundled":
            continue
        with pytest.raises(errors.WeightsNotFoundError) as err:
            loader.fetch_weights(name, cfg)
        message = str(err.value)
        assert f"'{sources.original_file_name(cfg)}'" in message and (cfg.drive_folder or cfg.url) in message, key
        assert f"--model {name} --tag {tag}" in message and sources.hf_repo_id(name, cfg) in message, key
    assert fake_hub.requests == []


def test_hf_corrupted_byte_is_caught_and_not_kept(fake_hub, monkeypatch, tmp_path):
    model = hub3d.create_model("resnet3d_10", num_classes=2, widen_factor=0.25)
    files = hub3d_files(model, tmp_path)
    fake_hub.add_repo("me/tiny", files)
    digest = hashlib.sha256(files["model.safetensors"]).hexdigest()
    bad = bytearray(files["model.safetensors"])
    bad[-5] ^= 0xFF  # same size: huggingface_hub's own size check passes
    fake_hub.tamper[f"/cdn/{digest}"] = bytes(bad)

    with pytest.raises(errors.ChecksumError, match="does not match the Hub's hash"):
        hub3d.load("hf-hub:me/tiny")
    from huggingface_hub import constants

    blobs = list(Path(constants.HF_HUB_CACHE).glob("models--me--tiny/blobs/*"))
    assert digest not in [b.name for b in blobs]
    del fake_hub.tamper[f"/cdn/{digest}"]
    assert same_weights(hub3d.load("hf-hub:me/tiny"), model)


def test_hf_interrupted_download_restarts_cleanly(fake_hub, tmp_path):
    model = hub3d.create_model("resnet3d_10", num_classes=2, widen_factor=0.25)
    files = hub3d_files(model, tmp_path)
    fake_hub.add_repo("me/tiny", files)
    cdn = f"/cdn/{hashlib.sha256(files['model.safetensors']).hexdigest()}"
    fake_hub.cut_after[cdn] = [4096, 1]
    assert same_weights(hub3d.load("hf-hub:me/tiny"), model)
    # huggingface_hub retried the transfer itself (2.4 restarts it from zero) and kept no partial file.
    assert fake_hub.count("GET", cdn) == 2
    from huggingface_hub import constants

    assert not list(Path(constants.HF_HUB_CACHE).rglob("*.incomplete"))


# ---------------------------------------------------------------------------------------------------------
# Original files: dropped into the cache, or downloaded from their URL.


@pytest.mark.parametrize("tag, save, filename, shortcut", [
    ("kinetics400", save_hara2018, "resnet-18-kinetics.pth", "A"),  # CVPR 2018 layout (legacy, CUDA, 'module.')
    ("kinetics700", save_hara2020, "r3d18_K_200ep.pth", "B"),  # 2020 layout
])
def test_original_dropped_in_cache_is_converted_once(fake_hub, monkeypatch, tag, save, filename, shortcut):
    arch_kwargs = {**hub3d.get_pretrained_cfg("resnet3d_18", tag).arch_kwargs, "shortcut_type": shortcut, **TINY}
    patch_tag(monkeypatch, "resnet3d_18", tag, arch_kwargs=arch_kwargs)
    source = tiny_tag_model(tag=tag, seed=5)
    cache = sources.cache_dir()
    cache.mkdir(parents=True)
    save(source, cache / filename, arch="resnet-18")

    model = hub3d.load("resnet3d_18", pretrained=tag)
    assert same_weights(model, source) and model.pretrained_cfg.tag == tag
    converted = cache / f"resnet3d_18.{tag}"
    config = json.loads((converted / "config.json").read_text())
    assert config["converted_from"] == filename
    assert config["arch_kwargs"]["widen_factor"] == TINY["widen_factor"]
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # no temp dir left
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    (cache / filename).unlink()
    assert same_weights(hub3d.load("resnet3d_18", pretrained=tag), source)
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    assert fake_hub.requests == []  # found locally: the Hub was never asked


def test_dropped_original_with_wrong_hash_is_refused(fake_hub, monkeypatch, tmp_path):
    cfg, model, data = url_tag(monkeypatch, fake_hub, tmp_path)
    cache = sources.cache_dir()
    cache.mkdir(parents=True)
    (cache / cfg.file).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(errors.ChecksumError, match=cfg.file):
        hub3d.load("resnet3d_18", pretrained="kinetics400")
    assert not (cache / "resnet3d_18.kinetics400").exists()


def test_url_download_verified_cached_and_converted(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = url_tag(monkeypatch, fake_hub, tmp_path)
    model = hub3d.load("resnet3d_18", pretrained="kinetics400").eval()
    assert same_weights(model, source)
    assert fake_hub.count("GET", f"/files/{cfg.file}") == 1
    assert fake_hub.count("HEAD", "/hub3d/resnet3d_18.kinetics400/resolve/main/config.json") == 1  # tried first
    cache = sources.cache_dir()
    assert (cache / cfg.file).read_bytes() == data
    assert sources.is_hub3d_dir(cache / "resnet3d_18.kinetics400")
    fake_hub.reset_counts()
    again = hub3d.load("resnet3d_18", pretrained="kinetics400").eval()
    assert fake_hub.requests == []
    with torch.no_grad():
        assert torch.equal(again(X), source(X))


def test_url_corrupted_byte_is_caught_and_not_left_in_cache(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = url_tag(monkeypatch, fake_hub, tmp_path)
    path = f"/files/{cfg.file}"
    fake_hub.tamper[path] = data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
    with pytest.raises(errors.ChecksumError, match="sha256 mismatch"):
        hub3d.load("resnet3d_18", pretrained="kinetics400")
    cache = sources.cache_dir()
    assert sorted(p.name for p in cache.iterdir()) == [".locks"]  # neither the file, nor .part, nor a conversion
    del fake_hub.tamper[path]
    assert same_weights(hub3d.load("resnet3d_18", pretrained="kinetics400"), source)


def test_url_interrupted_download_resumes_with_range(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = url_tag(monkeypatch, fake_hub, tmp_path)
    path = f"/files/{cfg.file}"
    fake_hub.cut_after[path] = [1000, 1]  # the first answer stops after 1000 bytes
    assert same_weights(hub3d.load("resnet3d_18", pretrained="kinetics400"), source)
    gets = [h for m, p, h in fake_hub.requests if m == "GET" and p == path]
    assert len(gets) == 2 and "Range" not in gets[0] and gets[1]["Range"] == "bytes=1000-"


def test_url_interrupted_every_time_keeps_part_then_resumes(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = url_tag(monkeypatch, fake_hub, tmp_path)
    path = f"/files/{cfg.file}"
    fake_hub.cut_after[path] = [700, 3]
    with pytest.raises(errors.WeightsNotFoundError, match="kept to resume from"):
        hub3d.load("resnet3d_18", pretrained="kinetics400")
    cache = sources.cache_dir()
    part = cache / (cfg.file + ".part")
    assert part.stat().st_size == 2100 and not (cache / cfg.file).exists()
    fake_hub.reset_counts()
    assert same_weights(hub3d.load("resnet3d_18", pretrained="kinetics400"), source)
    assert [h.get("Range") for m, p, h in fake_hub.requests if p == path] == ["bytes=2100-"]
    assert not part.exists()


def test_url_restarts_cleanly_when_server_ignores_range(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = url_tag(monkeypatch, fake_hub, tmp_path)
    fake_hub.cut_after[f"/files/{cfg.file}"] = [500, 1]
    fake_hub.ignore_range = True
    assert same_weights(hub3d.load("resnet3d_18", pretrained="kinetics400"), source)
    assert (sources.cache_dir() / cfg.file).read_bytes() == data


def test_url_http_error_is_reported(fake_hub, monkeypatch, tmp_path):
    cfg, _, _ = url_tag(monkeypatch, fake_hub, tmp_path)
    del fake_hub.files[cfg.file]
    with pytest.raises(errors.WeightsNotFoundError, match="HTTP 404"):
        hub3d.load("resnet3d_18", pretrained="kinetics400")


def test_concurrent_loads_download_and_convert_once(fake_hub, monkeypatch, tmp_path):
    import threading

    cfg, source, _ = url_tag(monkeypatch, fake_hub, tmp_path)
    results, errors = [], []

    def fetch():
        try:
            results.append(loader.fetch_weights("resnet3d_18", cfg, progress=False))
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert fake_hub.count("GET", f"/files/{cfg.file}") == 1
    assert same_weights(hub3d.load(str(results[0])), source)


def test_missing_bundle_says_so(fake_hub, monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "bundled_dir", lambda name, tag: tmp_path / "nothing")
    with pytest.raises(errors.WeightsNotFoundError, match="package data is missing") as err:
        hub3d.load("motion_demo", pretrained=True)
    assert "hub3d convert" not in str(err.value)


def test_bundled_weights_come_first(fake_hub, monkeypatch, tmp_path):
    patch_tag(monkeypatch, "resnet3d_18", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    source = tiny_tag_model(seed=9)
    bundle = save_pretrained(source, tmp_path / "bundle")
    monkeypatch.setattr(sources, "bundled_dir", lambda name, tag: bundle if (name, tag) == ("resnet3d_18", "kinetics400") else tmp_path / "none")
    assert same_weights(hub3d.load("resnet3d_18", pretrained="kinetics400"), source)
    assert fake_hub.requests == []


# ---------------------------------------------------------------------------------------------------------
# Publishing.


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    model = hub3d.create_model("resnet3d_10", num_classes=4, widen_factor=0.25, shortcut_type="A").eval()
    model.save_pretrained(tmp_path / "m")
    back = type(model).from_pretrained(tmp_path / "m").eval()
    assert back.arch_kwargs == model.arch_kwargs and back.labels == model.labels
    with torch.no_grad():
        assert torch.equal(back(X), model(X))


def test_push_to_hub_writes_a_real_repo(fake_hub, monkeypatch):
    patch_tag(monkeypatch, "resnet3d_18", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    model = tiny_tag_model(seed=11)
    url = model.push_to_hub("me/r18-k400")
    files = fake_hub.repo_files("me/r18-k400")
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert url.endswith(fake_hub.repos["me/r18-k400"].refs["main"])
    card = files["README.md"].decode()
    front = card.split("---")[1]
    for line in ("library_name: hub3d", "pipeline_tag: video-classification", "license: mit", "- kinetics400",
                 "- accuracy"):
        assert line in front, line
    assert "hara3dcnns" in card and "66.1" in card and 'hub3d.load("hf-hub:me/r18-k400")' in card
    back = hub3d.load("hf-hub:me/r18-k400").eval()
    assert same_weights(back, model) and back.labels == model.labels
    with torch.no_grad():
        assert torch.equal(back(X), model(X))

    # A second push to a branch: a new commit there, main untouched.
    main_before = fake_hub.repos["me/r18-k400"].refs["main"]
    publish.push_to_hub(hub3d.create_model("resnet3d_10", num_classes=2, widen_factor=0.25), "me/r18-k400",
                    revision="dev")
    assert fake_hub.repos["me/r18-k400"].refs["main"] == main_before
    assert json.loads(fake_hub.repo_files("me/r18-k400", "dev")["config.json"])["architecture"] == "resnet3d_10"


def test_card_of_a_fine_tuned_model_drops_the_tag_results(monkeypatch):
    patch_tag(monkeypatch, "resnet3d_18", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    model = tiny_tag_model()
    assert "66.1" in publish.model_card(model) and "order verified" in publish.model_card(model)
    model.reset_classifier(3, labels=["a", "b", "c"])
    card = publish.model_card(model, "me/ft")
    front = card.split("---")[1]
    assert "datasets" not in front and "metrics" not in front and "library_name: hub3d" in front
    assert "derived from hub3d's `resnet3d_18.kinetics400`" in card and "66.1" not in card
    assert "labels: the names in config.json" in card


def test_cli_push_converts_original_and_download_prints_path(fake_hub, monkeypatch, tmp_path):
    patch_tag(monkeypatch, "resnet3d_18", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    source = tiny_tag_model(seed=13)
    original = tmp_path / "resnet-18-kinetics.pth"
    save_hara2018(source, original, arch="resnet-18")
    runner = CliRunner()
    result = runner.invoke(main, ["push", str(original), "hub3d/resnet3d_18.kinetics400", "--tag", "kinetics400"])
    assert result.exit_code == 0, result.output
    files = fake_hub.repo_files("hub3d/resnet3d_18.kinetics400")
    assert json.loads(files["config.json"])["converted_from"] == "resnet-18-kinetics.pth"

    result = runner.invoke(main, ["download", "resnet3d_18", "--pretrained", "kinetics400"])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1])
    assert sources.is_hub3d_dir(path)
    assert same_weights(hub3d.load(str(path)), source)

    result = runner.invoke(main, ["download", "resnet3d_34", "--pretrained", "kinetics400"])
    assert result.exit_code != 0 and "hub3d convert resnet-34-kinetics.pth" in result.output


# ---------------------------------------------------------------------------------------------------------
# 'model.tag' names (what list_pretrained() prints) and class-bound from_pretrained.


def test_load_accepts_the_names_list_pretrained_prints(fake_hub, monkeypatch, tmp_path):
    assert "resnet3d_34.kinetics400" in hub3d.list_pretrained()
    patch_tag(monkeypatch, "resnet3d_34", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    r34 = tiny_tag_model("resnet3d_34", "kinetics400", seed=21)
    fake_hub.add_repo("hub3d/resnet3d_34.kinetics400", hub3d_files(r34, tmp_path))
    model = hub3d.load("resnet3d_34.kinetics400").eval()
    assert model.arch_name == "resnet3d_34" and model.pretrained_cfg.tag == "kinetics400"
    assert same_weights(model, r34) and model.labels == r34.labels
    # A generic request (the CLI's default 'kinetics', True) defers to the tag in the name; another tag is an error.
    assert same_weights(hub3d.load("resnet3d_34.kinetics400", pretrained="kinetics"), r34)
    three = hub3d.load("resnet3d_34.kinetics400", pretrained=True, num_classes=3)
    assert three.num_classes == 3 and torch.equal(three.conv1.weight, r34.conv1.weight)
    with pytest.raises(errors.ConfigError, match="names tag 'kinetics400' but pretrained='kinetics700'"):
        hub3d.load("resnet3d_34.kinetics400", pretrained="kinetics700")
    with pytest.raises(errors.ConfigError, match="pretrained=False"):
        hub3d.load("resnet3d_34.kinetics400", pretrained=False)
    with pytest.raises(ValueError, match="model 'resnet3d_34' has no tag 'nope'"):
        hub3d.load("resnet3d_34.nope")
    with pytest.raises(ValueError, match="unknown model 'resnet3d_99.kinetics400'"):
        hub3d.load("resnet3d_99.kinetics400")


def test_model_tag_names_in_create_model_and_with_a_file(tmp_path):
    model = hub3d.create_model("motion_demo.synthetic")  # the tag's config, random weights
    assert model.pretrained_cfg == hub3d.get_pretrained_cfg("motion_demo", "synthetic")
    bundled = hub3d.load("motion_demo", pretrained="synthetic")
    assert same_weights(hub3d.load("motion_demo.synthetic"), bundled)
    # With a file: the tag in the name picks the file's preprocessing and labels, as tag= does.
    original = tmp_path / "demo.pth"
    save_hara2020(bundled, original, arch="motion-demo")
    from_file = hub3d.load("motion_demo.synthetic", pretrained=original)
    assert same_weights(from_file, bundled) and from_file.pretrained_cfg.tag == "synthetic"
    assert from_file.labels == bundled.labels


def test_an_existing_path_named_like_a_model_tag_wins(tmp_path, monkeypatch):
    other = hub3d.create_model("resnet3d_10", num_classes=3, widen_factor=0.25)
    save_pretrained(other, tmp_path / "motion_demo.synthetic")
    monkeypatch.chdir(tmp_path)
    loaded = hub3d.load("motion_demo.synthetic")
    assert loaded.arch_name == "resnet3d_10" and same_weights(loaded, other)


def test_cli_takes_model_tag_names(fake_hub, monkeypatch, tmp_path):
    from hub3d.cli.predict import load_model

    runner = CliRunner()
    result = runner.invoke(main, ["download", "motion_demo.synthetic"])
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip().splitlines()[-1]) == sources.bundled_dir("motion_demo", "synthetic")
    result = runner.invoke(main, ["download", "motion_demo.synthetic", "--pretrained", "other"])
    assert result.exit_code != 0 and "names tag 'synthetic'" in result.output
    # hub3d predict/features --model: the command's default --pretrained (kinetics) does not override the name.
    assert load_model("motion_demo.synthetic", "kinetics").pretrained_cfg.tag == "synthetic"

    patch_tag(monkeypatch, "resnet3d_18", "kinetics400", arch_kwargs={"shortcut_type": "A", **TINY})
    source = tiny_tag_model(seed=22)
    bare = tmp_path / "r18.pth"  # a bare state dict does not say which model it is: --model does
    save_bare(source, bare)
    result = runner.invoke(main, ["convert", str(bare), "--model", "resnet3d_18.kinetics400"])
    assert result.exit_code == 0, result.output
    converted = sources.converted_dir("resnet3d_18", "kinetics400")
    assert result.output.strip() == f"wrote {converted}"
    back = hub3d.load("resnet3d_18", pretrained="kinetics400")  # found in the cache: no request
    assert same_weights(back, source) and back.labels == source.labels and fake_hub.requests == []


def test_from_pretrained_takes_a_bare_hub_repo_id(fake_hub, tmp_path):
    from hub3d.models.base import VideoModel
    from hub3d.models.resnet3d import ResNet3d

    model = hub3d.create_model("resnet3d_10", num_classes=3, widen_factor=0.25).eval()
    commit = fake_hub.add_repo("me/tiny-r10", hub3d_files(model, tmp_path))
    assert same_weights(VideoModel.from_pretrained("me/tiny-r10"), model)
    assert same_weights(ResNet3d.from_pretrained(f"me/tiny-r10@{commit}"), model)
    with pytest.raises(errors.WeightsNotFoundError, match="me/absent.*repository not found"):
        VideoModel.from_pretrained("me/absent")


def test_from_pretrained_on_a_class_builds_that_class_or_raises(tmp_path):
    from hub3d.models.base import VideoModel
    from hub3d.models.densenet3d import DenseNet3d
    from hub3d.models.resnet3d import ResNet3d

    dense = hub3d.create_model("densenet3d_121", num_classes=2, growth_rate=4,
                               num_init_features=8)
    dense.save_pretrained(tmp_path / "dense")
    with pytest.raises(errors.CheckpointError, match=r"dense: holds a densenet3d_121 model \(DenseNet3d\), not a ResNet3d"):
        ResNet3d.from_pretrained(tmp_path / "dense")
    assert isinstance(DenseNet3d.from_pretrained(tmp_path / "dense"), DenseNet3d)
    assert same_weights(VideoModel.from_pretrained(tmp_path / "dense"), dense)


# ---------------------------------------------------------------------------------------------------------
# weights/ agrees with the registry.


def test_weights_folder_matches_registry():
    spec = importlib.util.spec_from_file_location("weights_generate", REPO_ROOT / "weights" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    expected = generate.render()
    assert set(expected) >= {"index.json"} | {f"cards/{k}.md" for k in hub3d.list_pretrained()}
    on_disk = {str(p.relative_to(REPO_ROOT / "weights")) for p in (REPO_ROOT / "weights" / "cards").glob("*.md")}
    assert on_disk | {"index.json"} == set(expected), "stale or missing cards: run python weights/generate.py"
    for rel, text in expected.items():
        assert (REPO_ROOT / "weights" / rel).read_text(encoding="utf-8") == text, (
            f"weights/{rel} is out of date: run python weights/generate.py")
