"""PretrainedCfg factories of the releases several families share (Hara 2018 / 2020, torchvision)."""
from __future__ import annotations

from ..pretrained import (
    CITATION_HARA_2018,
    CITATION_TRAN_2018,
    DRIVE_2018,
    DRIVE_2020,
    KINETICS400_MEAN_255,
    KINETICS700_MEAN,
    KINETICS700_STD,
    TORCHVISION_KINETICS_MEAN,
    TORCHVISION_KINETICS_STD,
    PretrainedCfg,
)

HARA_2018_METRIC = "kinetics400_val_mean_top1_top5"  # the CVPR 2018 paper reports (top-1 + top-5) / 2


def hara2018_cfg(file: str, metric: float, **arch_kwargs) -> PretrainedCfg:
    """A Kinetics-400 model of the CVPR 2018 release: 0-255 frames, mean subtraction only."""
    return PretrainedCfg(
        num_classes=400,
        labels="kinetics400.txt",
        labels_verified=True,
        arch_kwargs=arch_kwargs,
        value_scale=255.0,
        mean=KINETICS400_MEAN_255,
        std=(1.0, 1.0, 1.0),
        resize=112,
        crop_size=112,
        clip_len=16,
        dataset="kinetics400",
        file=file,
        drive_folder=DRIVE_2018,
        release="3D-ResNets-PyTorch CVPR 2018 release",
        metrics={HARA_2018_METRIC: metric},
        license="MIT",
        paper="https://arxiv.org/abs/1711.09577",
        citation=CITATION_HARA_2018,
    )


# 2020 release: dataset code in the file name -> (tag, classes, label file, dataset).
HARA_2020_DATASETS = {
    "K": ("kinetics700", 700, None, "kinetics700"),
    "KM": ("kinetics700_moments", 1039, None, "kinetics700+moments_in_time"),
    "KMS": ("kinetics700_moments_stair", 1139, None, "kinetics700+moments_in_time+stair_actions"),
    "KS": ("kinetics700_stair", 800, None, "kinetics700+stair_actions"),
    "M": ("moments", 339, "moments_in_time.txt", "moments_in_time"),
    "MS": ("moments_stair", 439, None, "moments_in_time+stair_actions"),
    "S": ("stair", 100, None, "stair_actions"),
}
KINETICS700_ORDER_NOTE = (
    "Class order is the first appearance of each label in the official Kinetics-700 train CSV, which hub3d "
    "does not ship: names are class_i until you give them: model.labels = hub3d.class_order_from_csv(train_csv)."
)


def hara2020_cfgs(prefix: str, codes=("K", "KM")) -> dict[str, PretrainedCfg]:
    """The 2020 release's tags for one architecture, e.g. prefix 'r3d50' -> r3d50_K_200ep.pth ..."""
    cfgs = {}
    for code in codes:
        tag, classes, labels, dataset = HARA_2020_DATASETS[code]
        cfgs[tag] = PretrainedCfg(
            num_classes=classes,
            labels=labels,
            labels_verified=False,
            arch_kwargs={"shortcut_type": "B", "conv1_t_size": 7},
            value_scale=1.0,
            mean=KINETICS700_MEAN,
            std=KINETICS700_STD,
            resize=112,
            crop_size=112,
            clip_len=16,
            dataset=dataset,
            file=f"{prefix}_{code}_200ep.pth",
            drive_folder=DRIVE_2020,
            release="3D-ResNets-PyTorch 2020 release",
            license="MIT",
            paper="https://arxiv.org/abs/2004.04968",
            citation=CITATION_HARA_2018,
            notes=KINETICS700_ORDER_NOTE if labels is None else "Label order unverified against the weights.",
        )
    return cfgs


R3D50_CODES = ("K", "KM", "KMS", "KS", "M", "MS", "S")
# Preprocessing of a randomly initialised Hara-style model: the 2020 release's.
RANDOM_CFG = hara2020_cfgs("none")["kinetics700"].replace(num_classes=400, notes=None, dataset=None)


def torchvision_cfg(file: str, acc1: float, acc5: float) -> PretrainedCfg:
    """torchvision's Kinetics-400 weights: a plain state dict; the hex in the file name is its sha256 prefix."""
    return PretrainedCfg(
        num_classes=400,
        labels="kinetics400.txt",
        labels_verified=True,  # torchvision's categories are the alphabetical Kinetics-400 names
        value_scale=1.0,
        mean=TORCHVISION_KINETICS_MEAN,
        std=TORCHVISION_KINETICS_STD,
        resize=(128, 171),
        crop_size=112,
        clip_len=16,
        dataset="kinetics400",
        file=file,
        url=f"https://download.pytorch.org/models/{file}",
        sha256=file.rsplit("-", 1)[1].split(".")[0],
        release="torchvision",
        metrics={"kinetics400_val_video_acc@1": acc1, "kinetics400_val_video_acc@5": acc5},
        license="BSD-3-Clause",
        paper="https://arxiv.org/abs/1711.11248",
        citation=CITATION_TRAN_2018,
        notes="torchvision's accuracies: video level, frame_rate 15, 5 clips per video, clip_len 16.",
    )
