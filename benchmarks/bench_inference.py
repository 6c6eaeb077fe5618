"""Speed of the streaming inference engine: does decoding hide behind the model, and what does bf16 buy?

Generates a set of videos (default 8 x 10 s, 320x240, h264, 25 fps) and measures, for fp32 and bf16:
- decode-only: iter_clips over every video (decode + resize + crop + normalise), no model;
- model-only: the model on precomputed clips, in batches (ClipRunner, as the engine calls it, with the same
  torch thread count the engine gives the model: on cpu all cores but one per decoder thread);
- end-to-end: hub3d.classify on the video list (producer threads overlapping the model);
- clips/s, peak RSS during end-to-end (sampled from /proc/self/statm; ru_maxrss for the whole run),
- ratio = end-to-end / max(decode, model): 1.0 means perfect overlap, decode + model (no overlap) is the worst.
Medians over --repeats runs after one warm-up batch. Prints a table and writes JSON (--out).

    python benchmarks/bench_inference.py --model resnet3d_18 --repeats 3
    python benchmarks/bench_inference.py --videos 4 --seconds 4 --repeats 1     # quick look

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
from hub3d.inference import ClipRunner, _Producer, cpu_model_threads  # noqa: E402
from hub3d.specs import resolve_clip_spec  # noqa: E402


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
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--precisions", default="fp32,bf16")
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
    tmp = None if args.video_dir else tempfile.TemporaryDirectory(prefix="hub3d_bench_")
    folder = Path(args.video_dir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    videos = make_videos(folder, args.videos, args.seconds, width, height, args.fps)
    print(f"{len(videos)} videos of {args.seconds:g} s {width}x{height} ready in {time.perf_counter() - t0:.1f} s")

    cfg = hub3d.get_pretrained_cfg(args.model, args.tag)
    model = hub3d.create_model(args.model, pretrained_cfg=cfg).eval()
    precisions = args.precisions.split(",")
    rows, results = [], {"config": vars(args), "machine": machine_info()}

    def decode():  # exactly the engine's producer threads, drained without a model
        producer = _Producer(videos, resolve_clip_spec(model),
                             args.num_workers or 1, queue_size=2 * args.batch_size)
        n, alive = 0, len(producer.threads)
        while alive:
            kind, idx, _ = producer.queue.get()
            n += kind == "clip"
            alive -= kind == "end" and idx is None
        producer.close()
        return n

    n_clips = decode()
    t_decode, all_decode = timed(decode, args.repeats)
    print(f"decode-only: {n_clips} clips, {t_decode:.2f} s")

    e2e = {}
    for prec in precisions:
        kw = dict(batch_size=args.batch_size, precision=prec, num_workers=args.num_workers, threads=args.model_threads)
        hub3d.classify(model, videos[0], **kw)  # warm-up (oneDNN primitives, autocast caches)
        with RSSPeak() as mem:
            t, all_t = timed(lambda kw=kw: hub3d.classify(model, videos, **kw), args.repeats)
        e2e[prec] = (t, all_t, mem.peak)
        print(f"end-to-end {prec}: {t:.2f} s, peak RSS {mem.peak / 2**20:.0f} MiB")

    # Model-only with the torch threads the engine gives the model on cpu, so the ratio measures the overlap,
    # not a thread-count change.
    workers = args.num_workers or 1
    engine_threads = args.model_threads or cpu_model_threads(torch.get_num_threads(), workers)
    all_threads = torch.get_num_threads()
    torch.set_num_threads(engine_threads)
    results["model_threads"] = engine_threads
    clips = [c.clip for c in hub3d.iter_clips(videos, model)]  # precomputed, kept in memory
    batches = [torch.stack(clips[i:i + args.batch_size]) for i in range(0, len(clips), args.batch_size)]
    del clips
    for prec in precisions:
        variants = [None, False] if args.compare_layout else [None]  # None: the engine's default (channels_last)
        model_t = {}
        for cl in variants:
            runner = ClipRunner(model, "probs", "cpu", prec, channels_last=cl)
            runner(batches[0])  # warm-up
            model_t[cl] = timed(lambda runner=runner: [runner(b) for b in batches], args.repeats)
            model.to(memory_format=torch.contiguous_format)
        t_model, all_model = model_t[None]
        t_e2e, all_e2e, peak = e2e[prec]
        row = {
            "precision": prec,
            "clips": n_clips,
            "decode_s": round(t_decode, 3),
            "model_s": round(t_model, 3),
            "end_to_end_s": round(t_e2e, 3),
            "clips_per_s": round(n_clips / t_e2e, 2),
            "ratio": round(t_e2e / max(t_decode, t_model), 3),
            "peak_rss_mib": round(peak / 2**20, 1),
        }
        if args.compare_layout:
            row["model_contiguous_s"] = round(model_t[False][0], 3)
        rows.append(row)
        results[prec] = {**row, "runs": {"decode": all_decode, "model": all_model, "end_to_end": all_e2e,
                                         **({"model_contiguous": model_t[False][1]} if args.compare_layout else {})}}
    torch.set_num_threads(all_threads)
    if "fp32" in e2e and "bf16" in e2e:
        results["bf16_speedup_end_to_end"] = round(e2e["fp32"][0] / e2e["bf16"][0], 3)
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


def machine_info() -> dict:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()],
        "loadavg_before": os.getloadavg(),
    }


def table(rows: list[dict]) -> str:
    headers = list(rows[0])
    cells = [[str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


if __name__ == "__main__":
    main()
