"""Decoding options on the two real sample videos (benchmarks/_samples.py): which is fastest and still exact?

1. PyAV threading: stream.thread_type FRAME / SLICE / AUTO x codec thread_count 1 / 2 / 0 (FFmpeg's auto),
   decode + rgb24 at full size (hub3d.video.rgb_converter: one VideoReformatter per decode); frames/s (median
   of --repeat) and whether the frames are bit-identical to single-threaded decoding.
2. Scaling: hub3d's path (full-size rgb24, torch uint8 antialiased bilinear resize of the short side to 112,
   center crop: Preprocess.spatial, what iter_clips does) versus FFmpeg's swscale in the decoder's thread
   (frame.reformat(width, height, "rgb24", interpolation=...)) then the same crop; frames/s and the max abs
   difference of the final preprocessed clips (hub3d.transforms.normalize with resnet3d_34's kinetics400 cfg,
   pixels 0-255 minus the mean: 1 gray level = 1.0) against hub3d's path, and the mean gray-level difference.
3. Reduced-resolution decoding: the codec's `lowres` option (FFmpeg supports it in a few decoders, not h264):
   whether the decoded size changes.
4. torchcodec (optional): its CPU VideoDecoder, if it imports; else the reason.
5. The RGB conversion (single-threaded decoding): frame.to_ndarray(format="rgb24"), which builds a new
   VideoReformatter (a new SwsContext) for every frame, against one VideoReformatter kept for the whole decode
   (hub3d.video.rgb_converter, what decoding uses), timed frame by frame on the same decoded frames, alternating
   which goes first; seconds per video (median of --repeat), and whether every frame is bit-identical.
6. The split on 2 cores: resnet3d_34 fp32 model time on batches of 8 clips alone, then with a decoder thread
   looping over bikes.mp4 (FFmpeg threads 1, and FFmpeg auto threads), and how many frames/s that decoder got.

    python benchmarks/bench_decode_options.py --repeat 3        # JSON to benchmarks/results/
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

SHORT_SIDE = 112


def decode(path, thread_type="AUTO", thread_count=0, convert=None, options=None):
    """Decode every frame; convert(frame) -> array (default: full-size rgb24). Returns the list of arrays."""
    import av

    from hub3d.video import rgb_converter

    convert = convert or rgb_converter()
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        stream.codec_context.thread_count = thread_count
        if options:
            stream.codec_context.options = options
        for frame in container.decode(stream):
            out.append(convert(frame))
    return out


def median_rate(fn, n_frames, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_frames / statistics.median(times)


def threading_rows(videos, repeat):
    rows = []
    for path in videos:
        ref = decode(path, "SLICE", 1)
        for thread_type in ("FRAME", "SLICE", "AUTO"):
            for count in (1, 2, 0):
                frames = decode(path, thread_type, count)
                exact = len(frames) == len(ref) and all(np.array_equal(a, b) for a, b in zip(frames, ref))
                fps = median_rate(lambda p=path, t=thread_type, c=count: decode(p, t, c), len(ref), repeat)
                rows.append({"video": path.name, "thread_type": thread_type, "thread_count": count or "auto",
                             "frames_per_s": fps, "bit_identical": exact})
                print(f"  {path.name:18s} {thread_type:5s} threads {count or 'auto':4} {fps:7.1f} frames/s "
                      f"exact={exact}", flush=True)
    return rows


def scaling_rows(videos, repeat):
    import hub3d
    from hub3d.transforms import Preprocess, center_crop, normalize, short_side_size
    from hub3d.video import rgb_converter

    cfg = hub3d.get_pretrained_cfg("resnet3d_34", "kinetics400")
    pre = Preprocess(cfg)
    rows = []
    for path in videos:
        def hub3d_path(frame, to_rgb):
            return pre.spatial(to_rgb(frame))[0].numpy()

        def hub3d_decode(p=path):
            return decode(p, convert=partial(hub3d_path, to_rgb=rgb_converter()))

        ref = np.stack(hub3d_decode())
        ref_clip = normalize(ref, cfg)
        n = len(ref)
        fps = median_rate(hub3d_decode, n, repeat)
        rows.append({"video": path.name, "scaling": "hub3d: rgb24 + torch resize + crop", "frames_per_s": fps,
                     "max_abs_diff_clip": 0.0, "mean_gray_diff": 0.0})
        print(f"  {path.name:18s} {rows[-1]['scaling']:44s} {fps:7.1f} frames/s", flush=True)
        for interp in ("BILINEAR", "FAST_BILINEAR", "AREA", "BICUBIC"):
            def swscale(frame, interp=interp):
                h, w = short_side_size(frame.height, frame.width, SHORT_SIDE)
                img = frame.reformat(width=w, height=h, format="rgb24", interpolation=interp).to_ndarray()
                return center_crop(img, cfg.crop_size)[0].numpy()

            out = np.stack(decode(path, convert=swscale))
            d = normalize(out, cfg) - ref_clip
            fps = median_rate(lambda p=path, f=swscale: decode(p, convert=f), n, repeat)
            rows.append({"video": path.name, "scaling": f"FFmpeg reformat {interp} + crop", "frames_per_s": fps,
                         "max_abs_diff_clip": float(d.abs().max()),
                         "mean_gray_diff": float(np.abs(out.astype(int) - ref).mean())})
            print(f"  {path.name:18s} {rows[-1]['scaling']:44s} {fps:7.1f} frames/s  max diff "
                  f"{rows[-1]['max_abs_diff_clip']:.1f}  mean {rows[-1]['mean_gray_diff']:.2f} levels", flush=True)
    return rows


def lowres_rows(videos):
    rows = []
    for path in videos:
        full = decode(path)[0].shape
        try:
            low = decode(path, options={"lowres": "1"})[0].shape
            note = "decoded size unchanged: the decoder ignores lowres" if low == full else "reduced"
        except Exception as e:  # noqa: BLE001
            low, note = None, f"{type(e).__name__}: {e}"
        rows.append({"video": path.name, "full": str(full), "lowres=1": str(low), "note": note})
        print(f"  {path.name}: lowres=1 -> {low} ({note})", flush=True)
    return rows


def torchcodec_rows(videos, repeat):
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # noqa: BLE001  (optional: report why it is unavailable)
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(f"  torchcodec unavailable ({msg})", flush=True)
        return [{"torchcodec": "unavailable", "reason": msg}]
    rows = []
    for path in videos:
        ref = np.stack(decode(path))

        def run(threads, path=path):
            dec = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=threads)
            return dec.get_frames_in_range(0, len(dec)).data.numpy()

        for threads in (1, 0):
            out = run(threads)
            fps = median_rate(lambda t=threads: run(t), len(ref), repeat)
            exact = out.shape == ref.shape and bool((out == ref).all())
            rows.append({"video": path.name, "torchcodec threads": threads or "auto", "frames_per_s": fps,
                         "bit_identical_to_pyav": exact,
                         "max_gray_diff": int(np.abs(out.astype(int) - ref).max()) if out.shape == ref.shape else None})
            print(f"  torchcodec {path.name} threads {threads or 'auto'}: {fps:.1f} frames/s exact={exact}", flush=True)
    return rows


def conversion_rows(videos, repeat):
    import av

    from hub3d.video import rgb_converter

    rows = []
    for path in videos:
        runs, exact = {"per frame": [], "one per decode": []}, True
        for _ in range(repeat):
            spent = dict.fromkeys(runs, 0.0)
            convert = {"per frame": lambda f: f.to_ndarray(format="rgb24"),
                       "one per decode": rgb_converter()}
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_count = 1
                for i, frame in enumerate(container.decode(stream)):
                    images = {}
                    for way in (list(runs) if i % 2 else list(runs)[::-1]):
                        t = time.perf_counter()
                        images[way] = convert[way](frame)
                        spent[way] += time.perf_counter() - t
                    exact = exact and np.array_equal(*images.values())
            for way in runs:
                runs[way].append(spent[way])
        per_frame, shared = (statistics.median(runs[w]) for w in runs)
        rows.append({"video": path.name, "to_ndarray per frame s": per_frame, "one reformatter s": shared,
                     "ratio": per_frame / shared, "bit_identical": exact})
        print(f"  {path.name:18s} per frame {per_frame:.3f} s, one reformatter {shared:.3f} s "
              f"(x{per_frame / shared:.2f}) exact={exact}", flush=True)
    return rows


def split_rows(videos, batches, repeat):
    import torch

    import hub3d
    from hub3d.inference import ClipRunner, cpu_model_threads, set_torch_threads

    torch.manual_seed(0)
    model = hub3d.create_model("resnet3d_34", num_classes=400, shortcut_type="A")
    runner = ClipRunner(model, "probs", "cpu", "fp32")
    x = torch.randn(8, 3, 16, 112, 112)
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_model_threads(threads, 1))
    runner(x)

    def model_time():
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(batches):
                runner(x)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    rows = []
    try:
        alone = model_time()
        rows.append({"case": f"model alone ({torch.get_num_threads()} torch threads)", "model_s": alone,
                     "model_slowdown": 1.0, "decoder_frames_per_s": None})
        for count in (1, 0):
            stop = threading.Event()
            decoded = [0]

            def loop(count=count, stop=stop, decoded=decoded):
                set_torch_threads(1)  # as the engine's decoders
                while not stop.is_set():
                    decoded[0] += len(decode(videos[0], "AUTO", count))

            th = threading.Thread(target=loop, daemon=True)
            t0 = time.perf_counter()
            th.start()
            m = model_time()
            stop.set()
            th.join()
            rows.append({"case": f"model + decoder thread (FFmpeg threads {count or 'auto'})", "model_s": m,
                         "model_slowdown": m / alone, "decoder_frames_per_s": decoded[0] / (time.perf_counter() - t0)})
        for r in rows:
            print(f"  {r['case']:48s} model {r['model_s']:.2f} s (x{r['model_slowdown']:.2f})"
                  + (f", decoder {r['decoder_frames_per_s']:.0f} frames/s" if r["decoder_frames_per_s"] else ""),
                  flush=True)
    finally:
        torch.set_num_threads(threads)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--split-batches", type=int, default=2, help="batches of 8 clips per model timing")
    p.add_argument("--parts", default="threading,scaling,lowres,torchcodec,conversion,split")
    p.add_argument("--out", default=str(HERE / "results" / "bench_decode_options.json"))
    args = p.parse_args(argv)
    from _samples import machine, markdown_table, sample_videos, write_json

    videos = sample_videos()
    parts = args.parts.split(",")
    result = {"machine": machine()}
    runners = {"threading": lambda: threading_rows(videos, args.repeat),
               "scaling": lambda: scaling_rows(videos, args.repeat),
               "lowres": lambda: lowres_rows(videos),
               "torchcodec": lambda: torchcodec_rows(videos, args.repeat),
               "conversion": lambda: conversion_rows(videos, args.repeat),
               "split": lambda: split_rows(videos, args.split_batches, args.repeat)}
    for part in parts:
        print(f"{part}:", flush=True)
        result[part] = runners[part]()
    result["machine_after"] = machine()["loadavg"]
    for part in parts:
        print(f"\n{part}\n" + markdown_table(result[part]))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
