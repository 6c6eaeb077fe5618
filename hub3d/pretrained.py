"""PretrainedCfg: everything a set of weights needs besides its tensors.

One PretrainedCfg per (model, tag). It says which architecture arguments the weights need, how many classes
and in which order, how frames must be preprocessed (the value scale, mean and std the weights were trained
with), where the weights come from, and what they were reported to achieve.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

KINETICS400_MEAN_255 = (114.7748, 107.7354, 99.4750)  # CVPR 2018 release: 0-255 frames, std 1
KINETICS700_MEAN = (0.4345, 0.4051, 0.3775)  # 2020 release: frames / 255
KINETICS700_STD = (0.2768, 0.2713, 0.2737)
TORCHVISION_KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
TORCHVISION_KINETICS_STD = (0.22803, 0.22145, 0.216989)

DRIVE_2018 = "https://drive.google.com/drive/folders/1zvl89AgFAApbH0At-gMuZSeQB_LpNP-M"
DRIVE_2020 = "https://drive.google.com/drive/folders/1xbYbZ7rpyjftI_KCk6YuL-XrfQDz7Yd4"

CITATION_HARA_2018 = (
    "@inproceedings{hara3dcnns, author={Kensho Hara and Hirokatsu Kataoka and Yutaka Satoh}, "
    "title={Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?}, "
    "booktitle={CVPR}, pages={6546--6555}, year={2018}}"
)
CITATION_TRAN_2018 = (
    "@inproceedings{tran2018closer, author={Du Tran and Heng Wang and Lorenzo Torresani and Jamie Ray and "
    "Yann LeCun and Manohar Paluri}, title={A Closer Look at Spatiotemporal Convolutions for Action "
    "Recognition}, booktitle={CVPR}, year={2018}}"
)


@dataclass(frozen=True)
class PretrainedCfg:
    """Facts about one set of weights of one architecture."""

    tag: str = "random"
    num_classes: int = 400
    labels: Optional[str] = None  # file name in hub3d/labels/, or None (class indices only)
    labels_verified: bool = False  # is the label order known to match the weights?
    arch_kwargs: dict = field(default_factory=dict)  # architecture overrides these weights need

    # Preprocessing: uint8 frames -> x = frame / 255 * value_scale, then (x - mean) / std per channel
    # (the original code's ScaleValue): value_scale 255 keeps 0-255 floats (2018 release), 1 gives 0-1.
    value_scale: float = 1.0
    mean: tuple = KINETICS700_MEAN
    std: tuple = KINETICS700_STD
    resize: Any = 112  # int: short side; (h, w): both sides (torchvision's 128x171)
    crop_size: int = 112
    clip_len: int = 16
    clip_stride: Optional[int] = None  # None: clip_len (non-overlapping)
    frame_step: int = 1  # frames apart inside a clip (the sampling rate: X3D-S takes 13 frames 6 apart)
    fps: Optional[float] = None  # frame rate the weights were trained at
    pathway_alpha: Optional[int] = None  # SlowFast: slow pathway takes T // alpha of the T frames
    interpolation: str = "bilinear"

    # Provenance.
    dataset: Optional[str] = None
    file: Optional[str] = None  # original release file name
    url: Optional[str] = None  # direct download (torchvision)
    sha256: Optional[str] = None  # full hash, or a prefix (torchvision file names carry one)
    drive_folder: Optional[str] = None  # Google Drive folder of the original file, when only there
    hf_hub_id: Optional[str] = None  # hub3d's converted repo on the Hugging Face Hub
    release: Optional[str] = None
    metrics: dict = field(default_factory=dict)
    license: Optional[str] = None
    paper: Optional[str] = None
    citation: Optional[str] = None
    notes: Optional[str] = None

    @property
    def stride(self) -> int:
        return self.clip_stride or self.clip_len

    def replace(self, **changes) -> "PretrainedCfg":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if isinstance(self.resize, tuple):
            d["resize"] = list(self.resize)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainedCfg":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown PretrainedCfg fields {sorted(unknown)}")
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        if isinstance(d.get("resize"), list):
            d["resize"] = tuple(d["resize"])
        return cls(**d)

    def class_names(self) -> list[str]:
        """The class names in index order; 'class_i' when no label file is known."""
        if self.labels is None:
            return [f"class_{i}" for i in range(self.num_classes)]
        names = read_label_file(self.labels)
        if len(names) != self.num_classes:
            raise ValueError(
                f"label file {self.labels!r} has {len(names)} names but tag {self.tag!r} has "
                f"{self.num_classes} classes"
            )
        return list(names)


@lru_cache(maxsize=None)
def read_label_file(name: str) -> tuple[str, ...]:
    """Read one of the class-name files shipped in hub3d/labels/."""
    text = resources.files("hub3d.labels").joinpath(name).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())



def class_order_from_csv(csv_path, column: str = "label") -> list[str]:
    """Class names in order of first appearance in a dataset CSV.

    This is how the 2020 release numbered its classes (Kinetics-700: the official train CSV), so
    ``model.labels = class_order_from_csv("kinetics_700_train.csv")`` gives those weights their names.
    """
    import csv

    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"{csv_path}: no {column!r} column (columns: {reader.fieldnames})")
        return list(dict.fromkeys(row[column] for row in reader if row[column]))
