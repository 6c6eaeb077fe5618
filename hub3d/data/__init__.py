"""Datasets for training and evaluation: video folders, Kinetics / UCF-101 / HMDB-51 annotations, plain CSVs,
and the generated SyntheticMotion. Items are (frames (T, H, W, 3) uint8, label); hub3d.train samples clips."""
from .datasets import (  # noqa: F401
    HMDB51,
    UCF101,
    CsvDataset,
    KineticsCsv,
    VideoDataset,
    VideoFolder,
    build_dataset,
    load_frames,
    read_classes,
)
from .synthetic import SyntheticMotion, write_synthetic_videos  # noqa: F401

__all__ = [
    "CsvDataset", "HMDB51", "KineticsCsv", "UCF101", "VideoDataset", "VideoFolder", "build_dataset",
    "load_frames", "read_classes", "SyntheticMotion", "write_synthetic_videos",
]
