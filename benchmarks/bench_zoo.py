"""Clips/s of the PyTorchVideo zoo and torchvision's S3D at each tag's own input, batch 1, model only.

Per model and precision: seeded random weights (speed does not depend on them), one clip of the kinetics400
tag's default input (clip_len x crop x crop; SlowFast: [slow, fast] from ``example_input``), run through
hub3d's ClipRunner (eval, inference_mode, channels_last_3d; bf16 on CPU: the bf16 copy of the weights) after one
warm-up call; clips/s = 1 / the median of --repeats timed calls. GFLOPs: 2 x multiply-adds per clip at that input
(hub3d.model_info). Without native bf16 (AVX2-only CPUs) oneDNN's bf16 3D convolutions are far slower than
fp32: there, pass --precisions fp32 or few --models.

    python benchmarks/bench_zoo.py                                  # every zoo model, fp32 and bf16
    python benchmarks/bench_zoo.py --models "x3d_*" --precisions fp32 --repeats 1 --threads 2

Measured on an idle 2-core AMD EPYC with AVX512-BF16 (load ~1.2), torch 2.13, 2 threads, 1 repeat, clips/s
fp32 / bf16: x3d_xs 6.40 / 5.45, x3d_s 2.00 / 3.56, x3d_m 0.67 / 1.44, x3d_l 0.18 / 0.93, efficient_x3d_xs
25.8 / 29.1, efficient_x3d_s 5.91 / 7.92, c2d_r50 1.27 / 2.75, i3d_r50 1.00 / 1.91, slow_r50 0.44 / 1.58,
r2plus1d_r50 0.28 / 0.77, csn_r101 0.24 / 0.47, slowfast_r50 0.51 / 1.37, slowfast_r101 0.32 / 0.72,
s3d 1.87 / 4.00. On the shared AVX2-only box (no native bf16) bf16 was many times slower than fp32.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

ZOO = ["x3d_xs", "x3d_s", "x3d_m", "x3d_l", "efficient_x3d_xs", "efficient_x3d_s", "c2d_r50", "i3d_r50",
       "slow_r50", "r2plus1d_r50", "csn_r101", "slowfast_r50", "slowfast_r101", "s3d"]


def seeded_input(model, cfg):
    import torch

    g = torch.Generator().manual_seed(0)
    example = model.example_input(1, cfg.clip_len, cfg.crop_size, 3)
    if isinstance(example, (list, tuple)):
        return [torch.randn(p.shape, generator=g) for p in example]
    return torch.randn(example.shape, generator=g)


def shape_of(x) -> str:
    if isinstance(x, (list, tuple)):
        return " + ".join(shape_of(p) for p in x)
    return "x".join(map(str, x.shape[1:]))


def bench(name: str, precision: str, repeats: int, device: str) -> dict:
    import torch

    import hub3d
    from hub3d.inference import ClipRunner

    torch.manual_seed(0)
    cfg = hub3d.get_pretrained_cfg(name, "kinetics400")
    model = hub3d.create_model(name, pretrained_cfg=cfg)
    x = seeded_input(model, cfg)
    runner = ClipRunner(model, "logits", device=device, precision=precision)
    runner(x)  # warm-up: oneDNN picks its kernels, the bf16 copy is made
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner(x)
        if runner.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    gflops = round(hub3d.model_info(name).gflops, 1)
    return {"model": name, "precision": precision, "input": shape_of(x), "GFLOPs": gflops,
            "seconds_per_clip": round(sec, 4), "clips_per_s": round(1 / sec, 3), "repeats": repeats}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="*", help="glob over the zoo's model names")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch threads [torch's default]")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in ZOO if fnmatch.fnmatch(n, args.models)]
    rows = []
    print(f"{'model':<18} {'prec':<5} {'input':<32} {'GFLOPs':>7} {'s/clip':>8} {'clips/s':>8}", flush=True)
    for name in names:
        for precision in args.precisions.split(","):
            r = bench(name, precision, args.repeats, args.device)
            rows.append(r)
            print(f"{r['model']:<18} {r['precision']:<5} {r['input']:<32} {r['GFLOPs']:>7} "
                  f"{r['seconds_per_clip']:>8.3f} {r['clips_per_s']:>8.3f}", flush=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device}
    print(json.dumps(meta))
    if args.json:
        from hub3d.io import write_json

        write_json(args.json, {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
