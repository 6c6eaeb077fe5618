"""Make the pictures of docs/export.md (docs/img/*.png) from the bundled motion_demo model, offline:

    python docs/make_pictures.py

A 6-second video of three SyntheticMotion actions in a row (move_right, grow, fade_out; 48 frames each, 25 fps) is
classified clip by clip (timeline), its clip features compared (similarity: the three scenes show as blocks), and
one frame of the labelled video written by hub3d.render is kept.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hub3d  # noqa: E402
from hub3d import plots  # noqa: E402
from hub3d.data.synthetic import render  # noqa: E402
from hub3d.render import render_video  # noqa: E402
from hub3d.video import read_frames, write_video  # noqa: E402

IMG = Path(__file__).resolve().parent / "img"
ACTIONS = ("move_right", "grow", "fade_out")


def main():
    from PIL import Image

    model = hub3d.load("motion_demo", pretrained=True)
    frames = np.concatenate([render(a, np.random.default_rng([7, i]), num_frames=48, size=64)
                             for i, a in enumerate(ACTIONS)])
    frames = np.stack([np.asarray(Image.fromarray(f).resize((128, 128), Image.BILINEAR)) for f in frames])
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "three_actions.mp4", frames, fps=25, pix_fmt="yuv444p", options={"crf": "10"})
        result = hub3d.classify(model, video, topk=3, stride=8)[0]
        feats = hub3d.extract_features(model, video, stride=8)[0]
        plots.plot_timeline(result, IMG / "timeline.png", k=4)
        plots.plot_similarity(feats, IMG / "similarity.png")
        out = render_video(model, video, Path(tmp) / "labelled.mp4", result=result)
        labelled = read_frames(out)
        strip = np.concatenate([labelled[i] for i in (20, 70, 120)], axis=1)
        Image.fromarray(strip).save(IMG / "labelled_frames.png", optimize=True)
    print(f"{video.name}: {result.label}; wrote timeline.png, similarity.png, labelled_frames.png to {IMG}")


if __name__ == "__main__":
    main()
