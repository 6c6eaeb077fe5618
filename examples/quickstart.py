"""Classify a video and extract its clip features, offline, with the model that ships inside hub3d.

    python examples/quickstart.py [VIDEO]

Without VIDEO it writes a SyntheticMotion video (a textured object fading in) first.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

import hub3d
from hub3d.data import write_synthetic_videos

model = hub3d.load("motion_demo", pretrained=True)  # labels and preprocessing come with the weights
print(f"{model.arch_name}: {len(model.labels)} classes, input {model.pretrained_cfg.clip_len} frames "
      f"of {model.pretrained_cfg.crop_size}px")

if len(sys.argv) > 1:
    video = sys.argv[1]
else:
    folder = Path(tempfile.mkdtemp())
    videos = write_synthetic_videos(folder, num_videos=5, seed=7, num_frames=48)
    video = str(videos[4])  # the fifth class: fade_in
print(f"video: {video}")

result = hub3d.classify(model, video, topk=3)[0]
for label, _, prob in result.topk:
    print(f"  {label:<25} {prob:.3f}")
for (start, end), (t0, t1), probs in zip(result.clip_frames, result.clip_seconds, result.clip_probs):
    print(f"  clip frames [{start}, {end}) {t0:.2f}-{t1:.2f} s: {result.labels[int(np.argmax(probs))]}")

features = hub3d.extract_features(model, video, per_video_mean=True)[0]
print(f"features {features.features.shape}, video mean {features.mean_features.shape}")
