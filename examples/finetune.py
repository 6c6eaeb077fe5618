"""Fine-tune a pretrained model on a small dataset of your own, then reload the result.

    python examples/finetune.py [PRETRAINED] [DATA_DIR]

PRETRAINED: a model tag or file for --pretrained (default: the bundled motion_demo weights, offline).
DATA_DIR: videos in class sub-folders (default: a few SyntheticMotion videos written to a temp folder,
with only 4 of its classes, so the classifier really is new).
The same run from the shell:
    hub3d train --data DATA_DIR --model motion_demo --pretrained synthetic --finetune-from layer4 \
        --lr 0.01 --head-lr 0.05 --epochs 3 --out runs/finetune
"""
import shutil
import sys
import tempfile
from pathlib import Path

import hub3d
from hub3d.data import SyntheticMotion, write_synthetic_videos
from hub3d.train import TrainConfig, train

pretrained = sys.argv[1] if len(sys.argv) > 1 else "synthetic"
work = Path(tempfile.mkdtemp())
if len(sys.argv) > 2:
    data = sys.argv[2]
else:
    # A 4-class task, the moves only (train/ and val/ folders, as a folder dataset expects): 32 + 16 videos.
    for split, seed, n in (("train", 1, 64), ("val", 2, 32)):
        write_synthetic_videos(work / "all" / split, n, seed=seed)
        for name in SyntheticMotion.classes[4:]:
            shutil.rmtree(work / "all" / split / name, ignore_errors=True)
    data = str(work / "all")

cfg = TrainConfig(
    data=data,
    model="motion_demo",
    pretrained=pretrained,
    finetune_from="layer4",  # conv5_x + fc, as in the CVPR 2018 paper
    lr=0.01,
    head_lr=0.05,  # the new classifier learns faster than the pretrained stage
    epochs=3,
    batch_size=16,
    hflip=0.0,  # a flip turns move_left into move_right: only relabelled for SyntheticMotion itself
    workers=1,
    out=str(work / "run"),
)
final = train(cfg)
print({k: round(v, 3) for k, v in final.items() if k.startswith("val_") and isinstance(v, float)})

model = hub3d.load(cfg.out)  # the export: weights, labels and preprocessing
print(model.labels)
