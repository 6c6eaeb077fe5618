"""An original checkpoint given by path is converted once into the cache (keyed by content) and read back
memory-mapped into a model built on the meta device: same outputs, same buffers, and a changed file is seen."""
import os

import pytest
import torch
from original_layouts import save_hara2018, save_hara2020

import hub3d
from hub3d import loader, sources
from hub3d.checkpoint import read_checkpoint

CLIP = (1, 3, 8, 64, 64)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB3D_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def seeded(seed, **kwargs):
    torch.manual_seed(seed)
    model = hub3d.create_model("resnet3d_10", num_classes=400, **kwargs)
    for m in model.modules():  # non-trivial BN statistics: a buffer lost on the way shows in the outputs
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(seed + 3)
    return model.eval()


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def conversions(cache):
    root = cache / "converted"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


@pytest.fixture(scope="module")
def clip():
    return torch.randn(*CLIP, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("save", [save_hara2018, save_hara2020])
def test_converted_once_then_read_from_the_cache_bit_identical(tmp_path, cache, clip, monkeypatch, save):
    source = seeded(1)
    path = tmp_path / "r3d10.pth"
    save(source, path, arch="resnet-10")
    direct = loader._load_checkpoint(read_checkpoint(path), "resnet3d_10", None, None, {})  # the uncached way

    first = hub3d.load("resnet3d_10", pretrained=str(path))
    assert len(conversions(cache)) == 1
    # The second load must not unpickle the original (nor hash it again): it reads the converted safetensors.
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("read the original again"))
    monkeypatch.setattr(sources, "sha256_file", lambda p: pytest.fail("hashed an unchanged file again"))
    second = hub3d.load("resnet3d_10", pretrained=path)
    assert len(conversions(cache)) == 1

    expected = outputs(source, clip)
    for model in (direct, first, second):
        assert torch.equal(outputs(model, clip), expected)
    ref = direct.state_dict()
    got = second.state_dict()
    assert list(got) == list(ref)
    for k, v in ref.items():
        assert got[k].device.type == "cpu" and got[k].dtype == v.dtype and torch.equal(got[k], v), k
    bn = [k for k in got if k.endswith("num_batches_tracked")]
    assert bn and all(int(got[k]) == (4 if save is save_hara2020 else 0) for k in bn)  # 2018 files lack them
    assert second.pretrained_cfg == direct.pretrained_cfg and second.labels == direct.labels
    assert second.arch_kwargs == direct.arch_kwargs
    assert all(p.requires_grad for p in second.parameters())


def test_changed_file_is_rehashed_and_reconverted(tmp_path, cache, clip):
    path = tmp_path / "r3d10.pth"
    save_hara2020(seeded(1), path, arch="resnet-10")
    before = hub3d.load("resnet3d_10", pretrained=path)
    other = seeded(2)
    save_hara2020(other, path, arch="resnet-10")  # same name, new content (size may be equal: mtime differs)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    after = hub3d.load("resnet3d_10", pretrained=path)
    assert torch.equal(outputs(after, clip), outputs(other, clip))
    assert not torch.equal(outputs(after, clip), outputs(before, clip))
    assert len(conversions(cache)) == 2


def test_hash_index_remembers_path_size_mtime(tmp_path, cache, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 100)
    calls = []
    real = sources.sha256_file
    monkeypatch.setattr(sources, "sha256_file", lambda p: calls.append(p) or real(p))
    digest = sources.cached_sha256(path)
    assert digest == real(path) and sources.cached_sha256(str(path)) == digest and len(calls) == 1
    link = tmp_path / "link.bin"
    link.symlink_to(path)
    assert sources.cached_sha256(link) == digest and len(calls) == 1  # keyed by the real path
    path.write_bytes(b"b" * 100)  # same size
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1))
    assert sources.cached_sha256(path) == real(path) != digest and len(calls) == 2
    (cache / sources.HASH_INDEX).write_text("{not json")  # a broken index is only a cache miss
    assert sources.cached_sha256(path) == real(path) and len(calls) == 3


def test_num_classes_and_training_on_the_memory_mapped_model(tmp_path, cache, clip):
    path = tmp_path / "r3d10.pth"
    source = seeded(1)
    save_hara2018(source, path, arch="resnet-10")
    hub3d.load("resnet3d_10", pretrained=path)
    model = hub3d.load("resnet3d_10", pretrained=path, num_classes=3)  # from the cache, fresh classifier
    assert model.num_classes == 3 and outputs(model, clip).shape == (1, 3)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(clip).sum().backward()
    opt.step()  # in place on the loaded tensors: must not write through to the cache file
    again = hub3d.load("resnet3d_10", pretrained=path)
    assert torch.equal(outputs(again, clip), outputs(source, clip))


def test_read_only_cache_still_loads(tmp_path, cache, clip, monkeypatch):
    path = tmp_path / "r3d10.pth"
    source = seeded(1)
    save_hara2018(source, path, arch="resnet-10")

    def refuse(*a, **k):
        raise PermissionError("read-only cache")

    monkeypatch.setattr(loader, "convert_into_cache", refuse)
    assert torch.equal(outputs(hub3d.load("resnet3d_10", pretrained=path), clip), outputs(source, clip))
    assert conversions(cache) == []
