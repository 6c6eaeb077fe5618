"""Speed of the streaming inference engine on a device: does decoding hide behind the model, and what do bf16 /
fp16, more decoder threads, torch.compile and BatchNorm folding buy?

Generates a set of videos (default 8 x 10 s, 320x240, h264, 25 fps; --videos-from: your files) and measures, per
precision:
- decode-only: iter_clips over every video (decode + resize + crop + normalise), no model;
- model-only: the model on precomputed clips, in batches (ClipRunner, as the engine calls it, with the same
  torch thread count the engine gives the model: on cpu all cores but one per decoder thread);
- end-to-end: hub3d.classify on the video list (producer threads overlapping the model);
- clips/s, peak RSS during end-to-end (sampled from /proc/self/statm; ru_maxrss for the whole run),
- ratio = end-to-end / max(decode, model): 1.0 means perfect overlap, decode + model (no overlap) is the worst;
- decode_bound = 1 - model / end-to-end: the share of the run the device is not busy with the model (waiting on
  decoding, copies, Python), per --num-workers value.
Medians over --repeats runs after one warm-up batch. Prints a table and writes JSON (--out).

    python benchmarks/bench_inference.py --model resnet3d_18 --repeats 3
    python benchmarks/bench_inference.py --videos 4 --seconds 4 --repeats 1     # quick look
    python benchmarks/bench_inference.py --device cuda --precisions fp32,fp16,bf16 --num-workers 1,4,8 \
        --size 640x360 --videos 16 --compile --compare-fold                     # a GPU table

Random weights: speed does not depend on them. Timings on a shared machine vary; the JSON records the
machine's load average so numbers can be judged.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hub3d  # noqa: E402
from hub3d import io  # noqa: E402
from hub3d.inference import ClipRunner, _Producer, collate, cpu_model_threads  # noqa: E402
from hub3d.specs import resolve_clip_spec, resolve_device, resolve_run_spec  # noqa: E402


def smooth_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Moving smooth noise: realistic work for the codec (pure noise would be unrealistically expensive)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(num_frames // 8 + 2, 3, height // 8, width // 8, generator=g)
    t = torch.nn.functional.interpolate(small.permute(1, 0, 2, 3)[None], size=(num_frames, height, width),
                                        mode="trilinear", align_corners=False)[0].permute(1, 2, 3, 0)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def streamed_frames(num_frames: int, height: int, width: int, seed: int, chunk: int = 64):
    """smooth_frames in chunks, so that an hour of 1080p never sits in memory."""
    for start in range(0, num_frames, chunk):
        yield from smooth_frames(min(chunk, num_frames - start), height, width, seed=seed * 100_003 + start)


def make_videos(folder: Path, n: int, seconds: float, width: int, height: int, fps: float) -> list[str]:
    from hub3d.video import write_video

    paths = []
    for i in range(n):
        path = folder / f"bench_{i}_{width}x{height}_{seconds:g}s.mp4"
        if not path.exists():
            write_video(path, streamed_frames(int(round(seconds * fps)), height, width, seed=i), fps=fps)
        paths.append(str(path))
    return paths


class RSSPeak:
    """Peak resident memory while the block runs, sampled every 5 ms from /proc/self/statm (Linux)."""

    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self.page
        except OSError:
            return 0

    def __enter__(self):
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def batch_len(batch) -> int:
    return len(batch[0] if isinstance(batch, list) else batch)


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet3d_18")
    p.add_argument("--tag", default="kinetics700", help="Preprocessing/classes of this tag (weights stay random).")
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", default="320x240", help="WxH of the generated videos.")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", default=None,
                   help="Decoder threads, or a comma list (1,4,8): one end-to-end row each (default: the engine's).")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, or auto.")
    p.add_argument("--compile", action="store_true", help="Also time torch.compile (its compile time reported apart).")
    p.add_argument("--compare-fold", action="store_true",
                   help="Also time model-only without BatchNorm folding (ClipRunner(fold_bn=False)).")
    p.add_argument("--videos-from", nargs="+", default=None, metavar="VIDEO",
                   help="Measure these video files instead of generated ones.")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    p.add_argument("--model-threads", type=int, default=None,
                   help="The model's threads in end-to-end and model-only runs (default: the engine's choice).")
    p.add_argument("--compare-layout", action="store_true",
                   help="Also time model-only without channels_last_3d (the engine's default layout).")
    p.add_argument("--video-dir", default=None, help="Keep the generated videos here (default: a temp dir).")
    p.add_argument("--out", default="bench_inference.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    width, height = map(int, args.size.lower().split("x"))
    tmp = None if args.video_dir or args.videos_from else tempfile.TemporaryDirectory(prefix="hub3d_bench_")
    if args.videos_from:
        videos = [str(Path(v)) for v in args.videos_from]
    else:
        folder = Path(args.video_dir or tmp.name)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        videos = make_videos(folder, args.videos, args.seconds, width, height, args.fps)
        print(f"{len(videos)} videos of {args.seconds:g} s {width}x{height} ready in {time.perf_counter() - t0:.1f} s")

    device = resolve_device(args.device)
    cfg = hub3d.get_pretrained_cfg(args.model, args.tag)
    model = hub3d.create_model(args.model, pretrained_cfg=cfg).eval()
    precisions = args.precisions.split(",")
    worker_counts = [None] if args.num_workers is None else [int(w) for w in str(args.num_workers).split(",")]
    run = resolve_run_spec(model, device=device, precision=precisions[0], batch_size=args.batch_size)
    rows, results = [], {"config": vars(args), "machine": machine_info(device)}

    def decode(workers):  # exactly the engine's producer threads, drained without a model
        producer = _Producer(videos, resolve_clip_spec(model), workers, queue_size=2 * args.batch_size)
        n, alive = 0, len(producer.threads)
        while alive:
            kind, idx, _ = producer.queue.get()
            n += kind == "clip"
            alive -= kind == "end" and idx is None
        producer.close()
        return n

    decode_workers = worker_counts[-1] or run.num_workers
    n_clips = decode(decode_workers)
    t_decode, all_decode = timed(lambda: decode(decode_workers), args.repeats)
    print(f"decode-only ({decode_workers} decoder threads): {n_clips} clips, {t_decode:.2f} s")

    # Model-only first, on batches already in memory (on cpu with the torch threads the engine gives the model,
    # so that the ratio measures the overlap, not a thread-count change).
    engine_threads = args.model_threads or cpu_model_threads(torch.get_num_threads(), worker_counts[0] or run.num_workers)
    all_threads = torch.get_num_threads()
    clips = list(hub3d.iter_clips(videos, model))
    batches = [collate(clips[i:i + args.batch_size], pin=device.type == "cuda")
               for i in range(0, len(clips), args.batch_size)]
    del clips
    model_times = {}
    if device.type == "cpu":
        torch.set_num_threads(engine_threads)
        results["model_threads"] = engine_threads
    try:
        for prec in precisions:
            variants = [("default", {})]
            if args.compare_layout:
                variants.append(("contiguous", {"channels_last": False}))
            if args.compare_fold:
                variants.append(("unfolded", {"fold_bn": False}))
            if args.compile:
                variants.append(("compiled", {"compile": True}))
            for name, kw in variants:
                if name == "contiguous":
                    model.to(memory_format=torch.contiguous_format)  # the default runs left it channels_last
                runner = ClipRunner(model, "probs", device, prec, **kw)
                t0 = time.perf_counter()
                runner(batches[0])  # warm-up: oneDNN / cuDNN primitives, BatchNorm folding, compilation
                if batch_len(batches[-1]) != batch_len(batches[0]):
                    runner(batches[-1])  # the short last batch: a second compile
                first = time.perf_counter() - t0
                model_times[prec, name] = (*timed(lambda runner=runner: [runner(b) for b in batches], args.repeats),
                                           first)
                print(f"model-only {prec} {name}: {model_times[prec, name][0]:.3f} s (warm-up {first:.2f} s)")
    finally:
        torch.set_num_threads(all_threads)

    for prec in precisions:
        for workers in worker_counts:
            kw = dict(batch_size=args.batch_size, precision=prec, num_workers=workers, threads=args.model_threads,
                      device=device)
            hub3d.classify(model, videos[0], **kw)  # warm-up (oneDNN primitives, autocast caches)
            with RSSPeak() as mem:
                t_e2e, all_e2e = timed(lambda kw=kw: hub3d.classify(model, videos, **kw), args.repeats)
            t_model, all_model, first = model_times[prec, "default"]
            row = {
                "precision": prec,
                "workers": workers or resolve_run_spec(model, device=device, precision=prec).num_workers,
                "clips": n_clips,
                "decode_s": round(t_decode, 3),
                "model_s": round(t_model, 3),
                "end_to_end_s": round(t_e2e, 3),
                "clips_per_s": round(n_clips / t_e2e, 2),
                "model_clips_per_s": round(n_clips / t_model, 2),
                "ratio": round(t_e2e / max(t_decode, t_model), 3),
                "decode_bound": round(max(0.0, 1 - t_model / t_e2e), 3),
                "peak_rss_mib": round(mem.peak / 2**20, 1),
            }
            for (p_, name), (t, _, warm) in model_times.items():
                if p_ == prec and name != "default":
                    row[f"model_{name}_s"] = round(t, 3)
                    if name == "compiled":
                        row["compile_s"] = round(warm, 2)
            rows.append(row)
            results.setdefault("rows", []).append({**row, "runs": {"decode": all_decode, "model": all_model,
                                                                   "end_to_end": all_e2e}})
            print(f"end-to-end {prec}, {row['workers']} decoder threads: {t_e2e:.2f} s, {row['clips_per_s']} clips/s, "
                  f"decode-bound {row['decode_bound']:.0%}")
    e2e = {r["precision"]: r["end_to_end_s"] for r in rows if r["workers"] == rows[0]["workers"]}
    if "fp32" in e2e and "bf16" in e2e:
        results["bf16_speedup_end_to_end"] = round(e2e["fp32"] / e2e["bf16"], 3)
    results["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["loadavg_after"] = os.getloadavg()

    print()
    print(table(rows))
    if "bf16_speedup_end_to_end" in results:
        print(f"bf16 end-to-end speed-up over fp32: {results['bf16_speedup_end_to_end']:.2f}x")
    print(f"load average (1/5/15 min) at the end: {results['loadavg_after']}")
    io.write_json(args.out, results)
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


def machine_info(device) -> dict:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()],
        "loadavg_before": os.getloadavg(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def table(rows: list[dict]) -> str:
    headers = list(rows[0])
    cells = [[str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


if __name__ == "__main__":
    main()
