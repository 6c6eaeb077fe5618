"""Decode + resize speed (frames/s) and accuracy of the two resize paths of hub3d.video / hub3d.transforms.

Paths, for eval preprocessing to a short side of 112:
  decode      iter_frames: full-size RGB frames (FFmpeg YUV -> RGB)
  reference   decode, then transforms.resize_short_side (torch uint8 bilinear+antialias, = PIL within 1 level)
  (decoders only decode: hub3d.video has no resize; the clip pipeline resizes with hub3d.transforms)
  ffmpeg      swscale resizes while converting YUV -> RGB (one pass; VideoFrame.to_ndarray(width, height)),
              the alternative hub3d does not use: no faster here and several gray levels off
  clips       iter_clips with a 112 crop: decode + reference resize + crop + normalise, per frame
Accuracy: the ffmpeg path vs PIL's Image.resize(BILINEAR) on the decoded full-size frames (gray levels).

    python benchmarks/bench_decode.py [--height 720 --width 1280 --frames 96 --codec libx264]

Measured (2 shared CPU cores, load average ~7, PyAV 18.1 / FFmpeg 8, torch 2.13, frames/s):
                                      1280x720   340x256
  decode (full-size RGB)                  298       967
  decode + torch resize 112               228       838
  iter_frames(short_side=112)             271       856   (removed since: decoders only decode)
  ffmpeg scaler (BILINEAR) to 112         269       812   mean error vs PIL 3.0 / 9.0 levels (max 27 / 87)
  iter_clips (resize, crop, normalise)    132       376
The torch resize is within 1 level of PIL (mean 0.002); FFmpeg's scaler is not faster, so hub3d uses torch.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_video(path, frames, height, width, codec, pix_fmt):
    """Smooth random texture panning across the frame: realistic work for the codec and the scaler."""
    import torch
    import torch.nn.functional as F

    from hub3d.video import write_video

    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, height // 8 + 4, (width + 4 * frames) // 8 + 4, generator=g)
    big = F.interpolate(base, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)
    big = (big * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    video = np.stack([big[:height, 4 * i: 4 * i + width] for i in range(frames)])
    return write_video(path, np.ascontiguousarray(video), fps=25, codec=codec, pix_fmt=pix_fmt)


def rate(fn, n_frames, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t)
    assert count == n_frames, (count, n_frames)
    return n_frames / best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--codec", default="libx264")
    p.add_argument("--pix-fmt", default="yuv420p")
    p.add_argument("--short-side", type=int, default=112)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)

    import torch
    from PIL import Image

    import hub3d.video as hv
    from hub3d.clips import iter_clips
    from hub3d.pretrained import PretrainedCfg
    from hub3d.transforms import resize_short_side, short_side_size

    if args.threads:
        torch.set_num_threads(args.threads)
    n, s = args.frames, args.short_side
    with tempfile.TemporaryDirectory() as tmp:
        suffix = {"libvpx-vp9": ".webm", "mpeg4": ".avi", "ffv1": ".mkv"}.get(args.codec, ".mp4")
        path = synthetic_video(Path(tmp) / f"bench{suffix}", n, args.height, args.width, args.codec, args.pix_fmt)
        print(f"{args.codec} {args.pix_fmt} {args.width}x{args.height}, {n} frames, {os.path.getsize(path) / 1e6:.1f} MB;"
              f" torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")

        def decode():
            return sum(1 for _ in hv.iter_frames(path))

        def reference():
            return sum(resize_short_side(f.image, s).shape[0] for f in hv.iter_frames(path))

        def resampled():  # 25 -> 12.5 fps: half the frames are never converted to RGB
            return 2 * sum(1 for _ in hv.iter_frames(path, fps=12.5))

        def ffmpeg_frames(interp):
            import av

            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                size = None
                for frame in container.decode(stream):
                    size = size or short_side_size(frame.height, frame.width, s)
                    yield frame.to_ndarray(format="rgb24", width=size[1], height=size[0], interpolation=interp)

        def ffmpeg(interp):
            return lambda: sum(1 for _ in ffmpeg_frames(interp))

        cfg = PretrainedCfg(resize=s, crop_size=s)

        def clips():
            return sum(c.frames[1] - c.frames[0] for c in iter_clips(path, cfg))

        rows = [("decode (full-size RGB)", decode), (f"reference: decode + torch resize {s}", reference),
                ("iter_frames(fps=12.5) (per source frame)", resampled)]
        rows += [(f"ffmpeg short_side {s} ({i})", ffmpeg(i)) for i in ("BILINEAR", "AREA", "FAST_BILINEAR")]
        rows += [(f"iter_clips (resize {s}, crop, normalise)", clips)]
        for name, fn in rows:
            print(f"  {name:45s} {rate(fn, n, args.repeat):8.1f} frames/s")

        full = hv.read_frames(path)
        h, w = short_side_size(full.shape[1], full.shape[2], s)
        pil = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in full])
        torch_ref = resize_short_side(full, s).numpy()
        d = np.abs(torch_ref.astype(int) - pil)
        print(f"  accuracy vs PIL bilinear: torch path max {d.max()} mean {d.mean():.3f}")
        for interp in ("BILINEAR", "AREA", "FAST_BILINEAR", "BICUBIC"):
            fast = np.stack(list(ffmpeg_frames(interp)))
            d = np.abs(fast.astype(int) - pil)
            print(f"  accuracy vs PIL bilinear: ffmpeg {interp:13s} max {d.max():3d} mean {d.mean():.3f} "
                  f"p99 {np.percentile(d, 99):.0f}")


if __name__ == "__main__":
    main()
