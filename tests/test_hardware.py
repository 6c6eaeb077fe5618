"""hub3d.hardware: native bf16 detection from /proc/cpuinfo text and CUDA capabilities (all monkeypatched)."""
import subprocess
import sys

import pytest
import torch

from hub3d import hardware

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
COOPER_LAKE = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16\n"
SKYLAKE_X = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512dq avx512vl\n"
EPYC_ZEN2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx avx2 fma sha_ni\n"
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


def with_cpuinfo(monkeypatch, text):
    monkeypatch.setattr(hardware, "_read_cpuinfo", lambda: text)


@pytest.mark.parametrize("text, native", [(SAPPHIRE_RAPIDS, True), (COOPER_LAKE, True), (SKYLAKE_X, False),
                                          (EPYC_ZEN2, False), (GRAVITON3, False)])
def test_cpu_bf16_from_cpuinfo(monkeypatch, text, native):
    with_cpuinfo(monkeypatch, text)
    # the torch probes must not be consulted when cpuinfo answers
    monkeypatch.setattr(hardware, "_torch_cpu_bf16", lambda: pytest.fail("cpuinfo should have decided"))
    assert hardware.bf16_native("cpu") is native
    assert hardware.bf16_native(torch.device("cpu")) is native
    assert hardware.auto_precision("cpu") == ("bf16" if native else "fp32")


def test_cpu_flags_parsing():
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= hardware.cpu_flags(SAPPHIRE_RAPIDS)
    assert "bf16" in hardware.cpu_flags(GRAVITON3)
    assert hardware.cpu_flags("") is None
    assert hardware.cpu_flags("processor\t: 0\nmodel name\t: x\n") is None


@pytest.mark.parametrize("probe, native", [("_is_avx512_bf16_supported", True), ("_is_amx_tile_supported", True),
                                           (None, False)])
def test_cpu_without_cpuinfo_asks_torch(monkeypatch, probe, native):
    with_cpuinfo(monkeypatch, None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, (lambda n=name: n == probe), raising=False)
    assert hardware.bf16_native("cpu") is native


def test_cpu_without_cpuinfo_or_probes(monkeypatch):
    with_cpuinfo(monkeypatch, None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert hardware.bf16_native("cpu") is False
    assert hardware.auto_precision("cpu") == "fp32"


@pytest.mark.parametrize("capability, native", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((8, 6), True),
                                                ((9, 0), True)])
def test_cuda_capability(monkeypatch, capability, native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: seen.append(d) or capability)
    assert hardware.bf16_native("cuda:1") is native
    assert seen == [torch.device("cuda:1")]
    assert hardware.auto_precision("cuda") == ("bf16" if native else "fp32")


def test_cuda_absent_and_other_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.bf16_native("cuda") is False
    assert hardware.bf16_native("mps") is False
    assert hardware.auto_precision("mps") == "fp32"


def test_fp16_never_automatic(monkeypatch):
    for text in (SAPPHIRE_RAPIDS, EPYC_ZEN2, None):
        with_cpuinfo(monkeypatch, text)
        assert hardware.auto_precision("cpu") in ("bf16", "fp32")


def test_import_is_light():
    code = ("import sys, hub3d.hardware; bad = {'av', 'click', 'huggingface_hub', 'safetensors', 'torchvision'} "
            "& set(sys.modules); print(sorted(bad)); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
