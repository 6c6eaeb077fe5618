"""Clips/s on this machine for the seed systems (I3D RGB / flow, C3D, P3D-63; random weights, speed only),
model-only through ClipRunner (channels_last_3d, bf16 as a bf16 copy of the weights on CPU), at each model's
default input, batch --batch, median of --runs after a warm-up. The box may be shared: numbers are noisy.

    python benchmarks/bench_models.py --models i3d c3d p3d_63 --batch 1 --runs 2 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bench(name: str, precision: str, batch: int, runs: int) -> float:
    import torch

    import hub3d
    from hub3d.inference import ClipRunner

    torch.manual_seed(0)
    model = hub3d.create_model(name)
    cfg = model.pretrained_cfg
    x = model.example_input(batch, cfg.clip_len, cfg.crop_size, model.arch_kwargs.get("n_input_channels", 3))
    runner = ClipRunner(model, "probs", "cpu", precision)
    runner(x)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["i3d", "i3d_flow", "c3d", "p3d_63"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}, median of {a.runs}")
    for name in a.models:
        for precision in a.precisions:
            print(f"{name:>10} {precision:>5}: {bench(name, precision, a.batch, a.runs):8.3f} clips/s", flush=True)


if __name__ == "__main__":
    main()
