"""Held-out accuracy of the bundled motion_demo weights on freshly generated SyntheticMotion videos.

    PYTHONPATH=. python weights/motion_demo/evaluate.py [--videos 400] [--files 64] [--seed 20261123]

In memory: videos straight from the generator, scored the way validation and hub3d.classify score them
(non-overlapping 16-frame clips, mean softmax). Files: videos written as h264 .mp4 files and classified
with hub3d.classify, the README's path. Prints JSON (metrics.json holds the recorded run).
"""
import argparse
import json
import tempfile
import time

import torch

import hub3d
from hub3d.data import SyntheticMotion, write_synthetic_videos
from hub3d.train.engine import video_logits

parser = argparse.ArgumentParser()
parser.add_argument("--videos", type=int, default=400)
parser.add_argument("--files", type=int, default=64)
parser.add_argument("--seed", type=int, default=20261123)
args = parser.parse_args()
torch.set_num_threads(1)

model = hub3d.load("motion_demo", pretrained=True)
fresh = SyntheticMotion(args.videos, seed=args.seed)
t0 = time.perf_counter()
scores = dict(video_logits(model, fresh, batch_size=32))
seconds = time.perf_counter() - t0
top1 = sum(int(scores[i].softmax(1).mean(0).argmax()) == fresh.label(i) for i in range(len(fresh)))
clips = sum(len(s) for s in scores.values())
out = {"seed": args.seed, "videos": len(fresh), "video_acc1": top1 / len(fresh), "clips": clips,
       "eval_clips_per_s": clips / seconds}

if args.files:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_synthetic_videos(tmp, args.files, seed=args.seed + 1)
        labels = [p.parent.name for p in paths]
        results = hub3d.classify(model, [str(p) for p in paths], batch_size=16)
        out["files"] = len(paths)
        out["files_video_acc1"] = sum(r.label == y for r, y in zip(results, labels)) / len(paths)
print(json.dumps(out, indent=2))
