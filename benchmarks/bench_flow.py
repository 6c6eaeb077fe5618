"""What TV-L1 optical flow costs per frame (I3D's flow stream computes it from the video): the real sample videos
resized as i3d_flow's weights say (short side 256), OpenCV's default TV-L1, median seconds per flow frame with
OpenCV on 1 thread and on all cores, then the whole flow path (decode + resize + flow + preprocessing) through
hub3d's clips. Needs the flow extra (pip install 'hub3d[flow]').

    python benchmarks/bench_flow.py --frames 12
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _samples import sample_videos  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=12, help="frames of each video to time (flow frames: one less)")
    a = p.parse_args()
    import cv2

    import hub3d
    from hub3d import flow, video
    from hub3d.clips import spec_clips
    from hub3d.transforms import resize_for_cfg

    spec = hub3d.resolve_clip_spec(hub3d.create_model("i3d_flow"))
    print(f"opencv {cv2.__version__}, {os.cpu_count()} cpus, resize {spec.resize}, {a.frames} frames per video")
    for path in sample_videos():
        frames = [f.image for _, f in zip(range(a.frames), video.iter_frames(path))]
        grays = [cv2.cvtColor(resize_for_cfg(f, spec.resize)[0].numpy(), cv2.COLOR_RGB2GRAY) for f in frames]
        h, w = grays[0].shape
        for threads in (1, os.cpu_count()):
            cv2.setNumThreads(threads)
            _, solver = flow.tvl1()
            times = []
            for prev, cur in zip(grays, grays[1:]):
                t0 = time.perf_counter()
                solver.calc(prev, cur, None)
                times.append(time.perf_counter() - t0)
            print(f"{path.name:>17} {w}x{h}: TV-L1 {statistics.median(times):.3f} s/frame "
                  f"(median of {len(times)}), opencv threads {threads}", flush=True)
        cv2.setNumThreads(os.cpu_count())
        t0 = time.perf_counter()
        n = sum(1 for _ in spec_clips(str(path), spec.replace(end=(a.frames - 0.5) / video.probe(path).fps,
                                                              clip_len=a.frames - 1)))
        total = time.perf_counter() - t0
        print(f"{path.name:>17}: whole flow path {total / (a.frames - 1):.3f} s/frame ({n} clip)", flush=True)


if __name__ == "__main__":
    main()
