"""hub3d.train: datasets -> the paper's recipe -> checkpoints -> a save_pretrained export (the `train` extra).

`hub3d train ...` or `torchrun --nproc_per_node=N -m hub3d.train ...` (same flags); from Python:
`hub3d.train.train(TrainConfig(...))`.
"""
from .augment import MULTISCALE, POSITIONS, TrainTransform  # noqa: F401
from .engine import TrainConfig, Trainer, train  # noqa: F401

__all__ = ["MULTISCALE", "POSITIONS", "TrainConfig", "TrainTransform", "Trainer", "train"]
