"""onnxruntime vs PyTorch on CPU (fp32): clips/s of the model alone, for resnet3d_18/34/50 at 16x112x112, batch 8.

Each model is exported with hub3d.export (ONNX, fixed clip shape) and both runtimes run the same random batch:
PyTorch through ClipRunner (eval, inference_mode, channels_last_3d, as the engine runs it), onnxruntime through
OnnxRunner (CPU provider, default graph optimisations). Both get the same thread count (--threads, default all
cores). Median of --repeats timed runs after one warm-up run; prints a markdown table, writes JSON (--out).

    python benchmarks/bench_export.py                       # resnet3d_18/34/50, 3 repeats
    python benchmarks/bench_export.py --models resnet3d_18 --repeats 1

Random weights (speed does not depend on them). The JSON records the load average: on a shared machine the
absolute numbers vary, the ratio less so.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hub3d  # noqa: E402
from hub3d import io  # noqa: E402
from hub3d.exporter import OnnxRunner  # noqa: E402
from hub3d.inference import ClipRunner  # noqa: E402


def timed(fn, x, repeats: int) -> float:
    fn(x)  # warm-up: allocations, oneDNN / ORT kernel selection
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet3d_18", "resnet3d_34", "resnet3d_50"])
    ap.add_argument("--clip", default="16x112x112")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="benchmarks/results/bench_export.json")
    args = ap.parse_args(argv)
    from hub3d.exporter import parse_clip

    clip = parse_clip(args.clip)
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, *clip, generator=torch.Generator().manual_seed(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = hub3d.create_model(name).eval()
            path = hub3d.export(model, Path(tmp) / f"{name}.onnx", clip=clip)
            torch_runner = ClipRunner(model, head="logits")
            ort_runner = OnnxRunner(path, head="logits", threads=args.threads)
            diff = float(np.abs(torch_runner(x) - ort_runner(x)).max())
            t_torch = timed(torch_runner, x, args.repeats)
            t_ort = timed(ort_runner, x, args.repeats)
            rows.append({"model": name, "torch_clips_s": args.batch / t_torch, "ort_clips_s": args.batch / t_ort,
                         "ratio_ort_over_torch": t_torch / t_ort, "max_abs_diff": diff})
            print(f"{name}: torch {args.batch / t_torch:.2f} clips/s, onnxruntime {args.batch / t_ort:.2f} clips/s",
                  flush=True)
            del model, torch_runner, ort_runner
    import onnxruntime

    print(f"\n{args.clip}, batch {args.batch}, fp32, {args.threads} threads, median of {args.repeats}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| model | PyTorch clips/s | onnxruntime clips/s | ORT / PyTorch | max abs diff |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['torch_clips_s']:.2f} | {r['ort_clips_s']:.2f} | {r['ratio_ort_over_torch']:.2f} | "
              f"{r['max_abs_diff']:.1e} |")
    io.write_json(args.out, {"clip": args.clip, "batch": args.batch, "threads": args.threads, "repeats": args.repeats,
                             "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                             "cpu": platform.processor() or platform.machine(), "loadavg": os.getloadavg(),
                             "rows": rows})


if __name__ == "__main__":
    main()
