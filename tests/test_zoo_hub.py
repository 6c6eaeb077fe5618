"""Downloads of the PyTorchVideo zoo and torchvision's S3D from their URLs, against the local fake server.

PyTorchVideo publishes no hash: the first complete download's sha256 is recorded beside the file in the cache
({file}.sha256) and later downloads / dropped copies are checked against it. torchvision's S3D carries a sha256
prefix in its file name (docs/facts.md, "The PyTorchVideo zoo and torchvision S3D").
"""
from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
from hf_server import patch_tag, set_offline, tiny_tag_model

import hub3d
from hub3d import errors, sources

# x3d_xs at a few hundred KB: every layer of the original structure, narrower and shallower.
TINY_X3D = {"width_factor": 0.5, "depth_factor": 0.5, "head_dim": 32}


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def pytorchvideo_tag(monkeypatch, server, tmp_path, seed=0):
    """x3d_xs.kinetics400 as released (X3D_XS.pyth, {"model_state": ...}, no hash) on the fake server, tiny."""
    patch_tag(monkeypatch, "x3d_xs", "kinetics400", arch_kwargs=TINY_X3D)
    model = tiny_tag_model("x3d_xs", seed=seed)
    path = tmp_path / f"upload{seed}.pyth"
    torch.save({"model_state": model.state_dict(), "epoch": 200}, path)
    data = path.read_bytes()
    cfg = hub3d.get_pretrained_cfg("x3d_xs", "kinetics400")
    assert cfg.file == "X3D_XS.pyth" and cfg.sha256 is None and cfg.url.startswith("https://dl.fbaipublicfiles.com/")
    url = server.add_file(cfg.file, data)
    cfg = patch_tag(monkeypatch, "x3d_xs", "kinetics400", url=url, arch_kwargs=TINY_X3D)
    return cfg, model, data


def test_pytorchvideo_download_records_its_hash_and_reloads_offline(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = pytorchvideo_tag(monkeypatch, fake_hub, tmp_path)
    model = hub3d.load("x3d_xs", pretrained="kinetics400").eval()
    assert same_weights(model, source) and model.pretrained_cfg.tag == "kinetics400"
    assert fake_hub.count("HEAD", "/hub3d/x3d_xs.kinetics400/resolve/main/config.json") == 1  # the Hub first
    assert fake_hub.count("GET", f"/files/{cfg.file}") == 1
    cache = sources.cache_dir()
    assert (cache / cfg.file).read_bytes() == data
    record = cache / (cfg.file + ".sha256")
    assert record.read_text().strip() == hashlib.sha256(data).hexdigest()
    assert sources.is_hub3d_dir(cache / "x3d_xs.kinetics400")
    fake_hub.reset_counts()
    set_offline(monkeypatch)
    again = hub3d.load("x3d_xs", pretrained="kinetics400").eval()
    assert fake_hub.requests == []
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), source(x))


def test_pytorchvideo_later_download_is_checked_against_the_recorded_hash(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = pytorchvideo_tag(monkeypatch, fake_hub, tmp_path)
    hub3d.load("x3d_xs", pretrained="kinetics400")
    cache = sources.cache_dir()
    shutil.rmtree(cache / "x3d_xs.kinetics400")
    (cache / cfg.file).unlink()
    fake_hub.tamper[f"/files/{cfg.file}"] = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    with pytest.raises(errors.ChecksumError) as err:
        hub3d.load("x3d_xs", pretrained="kinetics400")
    message = str(err.value)
    assert "sha256 mismatch" in message and hashlib.sha256(data).hexdigest() in message
    assert f"recorded in {cache / (cfg.file + '.sha256')}" in message and "PyTorchVideo publishes none" in message
    assert not (cache / cfg.file).exists() and not (cache / "x3d_xs.kinetics400").exists()
    # A dropped copy that is not the recorded file is refused too; the real one converts.
    (cache / cfg.file).write_bytes(fake_hub.tamper.pop(f"/files/{cfg.file}"))
    with pytest.raises(errors.ChecksumError, match="publishes none"):
        hub3d.load("x3d_xs", pretrained="kinetics400")
    (cache / cfg.file).write_bytes(data)
    fake_hub.reset_counts()
    assert same_weights(hub3d.load("x3d_xs", pretrained="kinetics400"), source)
    assert fake_hub.count("GET", f"/files/{cfg.file}") == 0


def test_pytorchvideo_not_found_names_the_url(fake_hub, monkeypatch, tmp_path):
    cfg, _, _ = pytorchvideo_tag(monkeypatch, fake_hub, tmp_path)
    del fake_hub.files[cfg.file]
    with pytest.raises(errors.WeightsNotFoundError) as err:
        hub3d.load("x3d_xs", pretrained="kinetics400")
    message = str(err.value)
    assert f"{cfg.url}: HTTP 404" in message and "'X3D_XS.pyth' of the PyTorchVideo" in message
    assert "--model x3d_xs --tag kinetics400" in message
    assert not (sources.cache_dir() / (cfg.file + ".sha256")).exists()  # nothing recorded without a download


def s3d_tag(monkeypatch, server, tmp_path):
    """s3d.kinetics400 on the fake server: a bare state dict named s3d-<sha256 prefix>.pth, as torchvision's."""
    torch.manual_seed(0)
    model = hub3d.create_model("s3d").eval()
    path = tmp_path / "s3d.pth"
    torch.save(model.state_dict(), path)
    data = path.read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    cfg = hub3d.get_pretrained_cfg("s3d", "kinetics400")
    assert cfg.file == f"s3d-{cfg.sha256}.pth"  # the real tag: the prefix in the name is the hash checked
    filename = f"s3d-{prefix}.pth"
    url = server.add_file(filename, data)
    cfg = patch_tag(monkeypatch, "s3d", "kinetics400", url=url, file=filename, sha256=prefix)
    return cfg, model, data


def test_s3d_download_verify_cache_offline_mismatch_and_not_found(fake_hub, monkeypatch, tmp_path):
    cfg, source, data = s3d_tag(monkeypatch, fake_hub, tmp_path)
    path = f"/files/{cfg.file}"
    fake_hub.tamper[path] = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(errors.ChecksumError, match=f"{cfg.url}: .*sha256 mismatch: expected {cfg.sha256}"):
        hub3d.load("s3d", pretrained="kinetics400")
    cache = sources.cache_dir()
    assert not (cache / cfg.file).exists() and not (cache / (cfg.file + ".part")).exists()
    del fake_hub.tamper[path]
    model = hub3d.load("s3d", pretrained="kinetics400")
    assert same_weights(model, source)
    assert (cache / cfg.file).read_bytes() == data and sources.is_hub3d_dir(cache / "s3d.kinetics400")
    assert not (cache / (cfg.file + ".sha256")).exists()  # the hash is published: nothing to record
    fake_hub.reset_counts()
    set_offline(monkeypatch)
    assert same_weights(hub3d.load("s3d", pretrained="kinetics400"), source)
    assert fake_hub.requests == []
    set_offline(monkeypatch, False)
    shutil.rmtree(cache / "s3d.kinetics400")
    (cache / cfg.file).unlink()
    del fake_hub.files[cfg.file]
    with pytest.raises(errors.WeightsNotFoundError, match=f"{cfg.url}: HTTP 404"):
        hub3d.load("s3d", pretrained="kinetics400")


def test_cards_say_the_pytorchvideo_hash_is_unpublished():
    from hub3d.publish import model_card

    card = model_card(hub3d.create_model("x3d_m", pretrained_cfg=hub3d.get_pretrained_cfg("x3d_m", "kinetics400")))
    assert "X3D_M.pyth (sha256 unpublished)" in card and "publishes no checksum" in card
    s3d = model_card(hub3d.create_model("s3d", pretrained_cfg=hub3d.get_pretrained_cfg("s3d", "kinetics400")))
    assert "s3d-d76dad2f.pth (sha256 d76dad2f)" in s3d
