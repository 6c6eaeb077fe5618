"""PretrainedCfg: everything a set of weights needs besides its tensors.

One PretrainedCfg per (model, tag). It says which architecture arguments the weights need, how many classes
and in which order, how frames must be preprocessed (the value scale, mean and std the weights were trained
with), where the weights come from, and what they were reported to achieve.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Optional

from .errors import ConfigError

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
    clip_stride: Optional[int] = None  # source frames between clip starts; None: one clip span (non-overlapping)
    interpolation: str = "bilinear"
    frame_step: int = 1  # source frames apart inside a clip (X3D-S: 13 frames 6 apart)
    fps: Optional[float] = None  # the frame rate the weights were trained at (resampling to it is opt-in)
    channel_order: str = "RGB"  # "BGR": Caffe-derived weights; mean/std are then in BGR order too
    mean_array: Optional[str] = None  # a .npy (3, T, H, W) in resized-frame space, cropped with the frames
    pathway_alpha: Optional[int] = None  # SlowFast: the clip becomes [slow (T // alpha frames), fast (T)]
    modality: str = "rgb"  # "flow": (x, y) optical-flow frames (hub3d.flow), e.g. I3D's flow stream

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
        """Source frames between clip starts with the weights' own sampling."""
        return self.clip_stride or self.clip_len * self.frame_step

    def replace(self, **changes) -> PretrainedCfg:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if isinstance(self.resize, tuple):
            d["resize"] = list(self.resize)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PretrainedCfg:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown PretrainedCfg fields {sorted(unknown)}")
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
            raise ConfigError(
                f"label file {self.labels!r} has {len(names)} names but tag {self.tag!r} has "
                f"{self.num_classes} classes"
            )
        return list(names)


def is_bare_name(value) -> bool:
    """A file name without any directory part: what configs may name (never a path that leaves their folder)."""
    return (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\\" not in value
            and os.path.basename(value) == value and not os.path.isabs(value) and "\0" not in value)


def packaged_label_file(name) -> bool:
    """Is ``name`` one of the class-name files shipped in hub3d/labels/?"""
    return is_bare_name(name) and resources.files("hub3d.labels").joinpath(name).is_file()


def parse_label_text(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@cache
def read_label_file(name: str) -> tuple[str, ...]:
    """Read one of the class-name files shipped in hub3d/labels/ (a bare name: nothing else is ever read)."""
    if not packaged_label_file(name):
        raise ConfigError(f"labels {name!r}: not a label file of hub3d (known: {', '.join(packaged_label_files())}); "
                          "a model directory may hold its own, named without a path, or list the labels inline")
    return parse_label_text(resources.files("hub3d.labels").joinpath(name).read_text(encoding="utf-8"))


def packaged_label_files() -> list[str]:
    return sorted(p.name for p in resources.files("hub3d.labels").iterdir() if p.name.endswith(".txt"))



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


@dataclass(frozen=True)
class ModelMeta:
    """What a built model is, in one object: its registered name, the arguments it was built with, the config
    of its weights and its class names. The number of classes lives here once: ``len(labels)``, which the
    config and ``arch_kwargs`` always agree with (``with_classes`` is the one way to change it)."""

    arch: str
    arch_kwargs: dict  # everything the entry point was called with, num_classes included
    pretrained_cfg: PretrainedCfg
    labels: tuple

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "arch_kwargs", {**self.arch_kwargs, "num_classes": len(self.labels)})
        if self.pretrained_cfg.num_classes != len(self.labels):
            raise ValueError(
                f"{self.arch}: {len(self.labels)} labels but the config says {self.pretrained_cfg.num_classes} classes"
            )

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def build(cls, arch: str, arch_kwargs: dict, cfg: PretrainedCfg, num_classes: int) -> ModelMeta:
        """The metadata of a fresh model: the config's labels when it has num_classes classes, else class_i."""
        if num_classes == cfg.num_classes:
            return cls(arch, arch_kwargs, cfg, cfg.class_names())
        return cls._reclassed(arch, arch_kwargs, cfg, num_classes, None, verified=False)

    @classmethod
    def _reclassed(cls, arch, arch_kwargs, cfg, num_classes, labels, verified) -> ModelMeta:
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels given for {num_classes} classes")
        cfg = cfg.replace(num_classes=num_classes, labels=None, labels_verified=verified)
        names = list(labels) if labels is not None else [f"class_{i}" for i in range(num_classes)]
        return cls(arch, arch_kwargs, cfg, names)

    def with_classes(self, num_classes: int, labels=None, verified: Optional[bool] = None) -> ModelMeta:
        """The same model with a new classifier of num_classes (labels: their names, default class_i);
        ``verified`` (default: labels were given) is the new config's labels_verified."""
        verified = labels is not None if verified is None else verified
        return self._reclassed(self.arch, self.arch_kwargs, self.pretrained_cfg, num_classes, labels, verified)

    def replace(self, **changes) -> ModelMeta:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields of hub3d's config.json that rebuild the model (see from_dict)."""
        return {
            "architecture": self.arch,
            "arch_kwargs": dict(self.arch_kwargs),
            "num_classes": self.num_classes,
            "labels": list(self.labels),
            "pretrained_cfg": self.pretrained_cfg.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelMeta:
        cfg = PretrainedCfg.from_dict(d["pretrained_cfg"])
        labels = d.get("labels")
        if labels is None:
            labels = cfg.class_names()
        return cls(d["architecture"], dict(d["arch_kwargs"]), cfg, labels)
