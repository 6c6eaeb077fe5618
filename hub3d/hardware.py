"""What the hardware runs natively, to resolve ``precision="auto"``.

bf16 pays only where the hardware has bf16 arithmetic; elsewhere oneDNN emulates it (converting to fp32 around
every op) and it is slower than fp32. Measured with resnet3d_34, 16x112x112 clips, batch 8
(benchmarks/bench_precision.py):

- CPU with AVX512-BF16 (the issue-14 dev box, 2 cores): model time 1.8 s fp32 -> 1.1 s bf16 for the two sample
  videos; motion_demo's top-1 agreement with fp32 on SyntheticMotion videos: see bench_precision's table.
- CPU without it (AMD EPYC, AVX2 only, this project's shared box): bf16 is several times slower than fp32
  (bench_precision's speed ratio), so fp32 is the only sensible automatic choice there.
- CUDA: bf16 tensor cores exist from compute capability 8.0 (Ampere) on; before that bf16 is emulated.
- MPS: never chosen automatically (no measurement here; bf16 support depends on the macOS version).

fp16 is never chosen automatically: on CPU it is not supported by hub3d's runner, and on GPUs its overflow
risk in un-normalised activations is a choice the user makes explicitly.

Only the standard library and torch are imported, so the run-spec code can call this at option-parsing time.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

# /proc/cpuinfo flags of native bf16 arithmetic: AMX tiles (Sapphire Rapids+) and AVX512-BF16 (Cooper Lake,
# Zen 4+). Plain AVX512 (avx512bw) only lets oneDNN emulate bf16.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CUDA_BF16_CAPABILITY = (8, 0)

DeviceLike = Union[str, torch.device]


def _read_cpuinfo() -> Optional[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # not Linux, or a sandbox without /proc
        return None


def cpu_flags(cpuinfo: Optional[str]) -> Optional[set[str]]:
    """The feature flags of the first CPU in /proc/cpuinfo text (x86 'flags', Arm 'Features'); None if absent."""
    if not cpuinfo:
        return None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def _torch_cpu_bf16() -> bool:
    # Where /proc/cpuinfo cannot tell (macOS, Windows): torch's own CPUID probes. They are private (torch.cpu._is_*),
    # so each is looked up defensively; absence means "cannot tell", which is False.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # noqa: BLE001  (a probe that fails tells nothing)
            continue
    return False


def cpu_capability() -> Optional[str]:
    """torch's vector ISA for its own kernels ("AVX2", "AVX512", ...), for reports; None when torch cannot say."""
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return get() if get is not None else None


def bf16_native(device: DeviceLike = "cpu") -> bool:
    """True where bf16 runs in hardware: CPU with AMX-BF16 or AVX512-BF16, CUDA compute capability >= 8.0.

    MPS and other devices: False (see the module docstring).
    """
    device = torch.device(device)
    if device.type == "cpu":
        flags = cpu_flags(_read_cpuinfo())
        if flags is not None:
            return any(f in flags for f in BF16_CPU_FLAGS)
        return _torch_cpu_bf16()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        return tuple(torch.cuda.get_device_capability(device)) >= CUDA_BF16_CAPABILITY
    return False


def auto_precision(device: DeviceLike = "cpu") -> str:
    """What ``precision="auto"`` means on this device: "bf16" where it is native (bf16_native), else "fp32"."""
    return "bf16" if bf16_native(device) else "fp32"


__all__ = ["BF16_CPU_FLAGS", "auto_precision", "bf16_native", "cpu_capability", "cpu_flags"]
