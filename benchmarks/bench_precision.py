"""bf16 versus fp32: does top-1 hold, and what does bf16 buy on this hardware?

Agreement (needs trained weights, random ones give near-uniform, meaningless argmaxes): the bundled motion_demo
(`hub3d.load("motion_demo", pretrained=True)`) on --videos SyntheticMotion videos written as real h264 files
(hub3d.data.write_synthetic_videos, fresh seed), through hub3d.classify in fp32 and in bf16: per-clip and
per-video top-1 agreement, max |p_bf16 - p_fp32| over every class, and each precision's accuracy on the true
labels.

Speed (weights do not matter): resnet3d_18 and resnet3d_34 with seeded weights on the clips of the two real
sample videos (benchmarks/_samples.py), model-only through ClipRunner (batch 8, channels_last_3d, the bf16 copy
of the weights on CPU), medians of --runs after a warm-up; ratio = fp32 time / bf16 time (> 1: bf16 faster).
Their agreement on the sample videos is printed too, marked as random weights.

Without native bf16 (AVX2-only CPUs) oneDNN's bf16 3D convolutions are dozens of times slower than fp32
(motion_demo, 2 videos: 2.5 s fp32, 67 s bf16 on the shared AMD EPYC box): use few --videos and --max-clips there.

Also prints what hub3d.hardware.auto_precision picks here and why (the CPU flags).

    python benchmarks/bench_precision.py --videos 64 --runs 3      # JSON to benchmarks/results/
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def compare(a, b) -> dict:
    """Top-1 agreement and max prob difference of two lists of VideoResult (same videos, same order)."""
    import numpy as np

    clip_a = np.concatenate([r.clip_probs for r in a])
    clip_b = np.concatenate([r.clip_probs for r in b])
    video_a = np.stack([r.probs for r in a])
    video_b = np.stack([r.probs for r in b])
    return {"clips": len(clip_a), "clip_top1_agree_pct": 100 * float((clip_a.argmax(1) == clip_b.argmax(1)).mean()),
            "videos": len(video_a),
            "video_top1_agree_pct": 100 * float((video_a.argmax(1) == video_b.argmax(1)).mean()),
            "max_abs_prob_diff": float(np.abs(clip_a - clip_b).max()),
            "mean_abs_prob_diff": float(np.abs(clip_a - clip_b).mean())}


def agreement(n_videos: int) -> dict:
    import hub3d
    from hub3d.data import write_synthetic_videos

    model = hub3d.load("motion_demo", pretrained=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_synthetic_videos(tmp, n_videos, seed=20261201, num_frames=48)
        truth = [p.parent.name for p in paths]
        res = {p: hub3d.classify(model, [str(x) for x in paths], precision=p) for p in ("fp32", "bf16")}
    row = {"model": "motion_demo (trained, bundled)", "data": f"{n_videos} SyntheticMotion h264 videos",
           **compare(res["fp32"], res["bf16"])}
    for p, results in res.items():
        row[f"video_acc_{p}_pct"] = 100 * sum(r.label == t for r, t in zip(results, truth)) / len(truth)
    return row


def speed(arch: str, clips, runs: int) -> dict:
    import torch

    import hub3d
    from hub3d.inference import ClipRunner

    torch.manual_seed(0)
    model = hub3d.create_model(arch, num_classes=400, shortcut_type="A")
    batches = [torch.stack([c.clip for c in clips[i:i + 8]]) for i in range(0, len(clips), 8)]
    row = {"model": f"{arch} (seeded random weights)", "clips": len(clips)}
    outs = {}
    for precision in ("fp32", "bf16"):
        runner = ClipRunner(model, "probs", "cpu", precision)
        runner(batches[0])  # warm-up: oneDNN primitives, bf16 weight copy already made
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            outs[precision] = [runner(b) for b in batches]
            times.append(time.perf_counter() - t)
        row[f"{precision}_s"] = statistics.median(times)
    row["fp32_over_bf16"] = row["fp32_s"] / row["bf16_s"]
    import numpy as np

    a, b = np.concatenate(outs["fp32"]), np.concatenate(outs["bf16"])
    row["clip_top1_agree_pct (random weights)"] = 100 * float((a.argmax(1) == b.argmax(1)).mean())
    row["max_abs_prob_diff"] = float(np.abs(a - b).max())
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=64, help="SyntheticMotion videos for the agreement")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-clips", type=int, default=None, help="speed on the first N sample clips only")
    p.add_argument("--archs", default="resnet3d_18,resnet3d_34", help="speed part; '' skips it")
    p.add_argument("--out", default=str(HERE / "results" / "bench_precision.json"))
    args = p.parse_args(argv)

    from _samples import machine, markdown_table, sample_videos, write_json

    import hub3d
    from hub3d import hardware

    info = machine()
    auto = {"auto_precision": hardware.auto_precision("cpu"), "bf16_native": hardware.bf16_native("cpu"),
            "bf16_flags": info["bf16_flags"], "cpu": info["cpu"], "cpu_capability": hardware.cpu_capability()}
    print(f"auto_precision('cpu') = {auto['auto_precision']} (bf16 flags: {auto['bf16_flags'] or 'none'}; "
          f"{auto['cpu']}; torch ISA {auto['cpu_capability']})", flush=True)
    result = {"machine": info, "auto": auto}
    result["agreement"] = [agreement(args.videos)]
    print(markdown_table(result["agreement"]), flush=True)
    archs = [a for a in args.archs.split(",") if a]
    cfg = hub3d.get_pretrained_cfg("resnet3d_34", "kinetics400")
    clips = list(hub3d.iter_clips([str(v) for v in sample_videos()], cfg))[: args.max_clips] if archs else []
    result["speed"] = []
    for arch in archs:
        result["speed"].append(speed(arch, clips, args.runs))
        print(f"  {arch}: fp32 {result['speed'][-1]['fp32_s']:.2f} s, bf16 {result['speed'][-1]['bf16_s']:.2f} s",
              flush=True)
    result["machine_after"] = machine()["loadavg"]
    if result["speed"]:
        print()
        print(markdown_table(result["speed"]))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
