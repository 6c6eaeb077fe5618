"""Training and validation loops, checkpoints, exact resume, final export.

One ``Trainer`` per process. It is the same code on one CPU, one GPU or N GPUs under torchrun: the model is
DDP-wrapped and the samplers are DistributedSamplers when WORLD_SIZE > 1, and only rank 0 writes.

Exact resume: the shuffling order is a function of (seed, epoch) and every sample's augmentation of
(seed, epoch, index), whatever the number of DataLoader workers; a checkpoint holds the model, optimizer,
scheduler, grad scaler, torch RNG state, the epoch count and the metric history. Training that stops after
epoch k and resumes from its checkpoint ends with the same weights as training that never stopped
(tests/test_train.py checks this bit for bit on CPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..inference import FailedVideo, iter_outputs, to_channels_last_3d
from ..io import write_csv, write_json
from ..pretrained import ModelMeta
from ..specs import PRECISIONS, resolve_precision
from .augment import MULTISCALE, POSITIONS, TrainTransform, hflip_label_map
from .distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup,
    init_distributed,
    state_sha256,
    unwrap,
    wrap_model,
)

log = logging.getLogger("hub3d.train")
CHECKPOINT_FORMAT = "hub3d-train-checkpoint"
def _opt(default=None, help: str = "", **cli):
    """A TrainConfig field with its `hub3d train` help text (and click specifics: choices, required, ...)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Every knob of a run; `hub3d train`'s flags are built from these fields (metadata: help, click options).
    Defaults are the papers' recipe where they give one."""

    # data
    data: str = _opt("synthetic", "'synthetic', a folder (root/<class>/<video>, or with train/ and val/), a CSV "
                     "of path,label, a Kinetics CSV, or a UCF-101/HMDB-51 video root (with --annotations).",
                     required=True)
    val_data: Optional[str] = _opt(None, "Validation data, same forms as --data (default: the data's own "
                                   "validation split; synthetic: freshly generated videos).")
    format: str = _opt("auto", "Data layout.", choices=("auto", "folder", "csv", "kinetics", "ucf101", "hmdb51"))
    annotations: Optional[str] = _opt(None, "UCF-101 / HMDB-51 split-file folder.")
    video_root: Optional[str] = _opt(None, "Folder of a Kinetics CSV's videos (default: next to the CSV).")
    split: int = _opt(1, "UCF-101 / HMDB-51 split number.")
    classes: Optional[str] = _opt(None, "Class list file (one name per line): explicit class order, saved with "
                                  "the model.", path=True)
    synthetic_videos: int = _opt(2000, "Training videos of --data synthetic.")
    synthetic_val_videos: int = _opt(200, "Validation videos of --data synthetic.")
    synthetic_frames: int = _opt(32, "Frames per synthetic video.")
    synthetic_size: int = _opt(64, "Frame size of synthetic videos.")
    # model
    model: str = _opt("resnet3d_18", "Architecture name (hub3d list).", required=True)
    model_kwargs: dict = _opt({}, "Architecture argument, e.g. widen_factor=0.25 (repeatable).", flag="--model-arg",
                              kv=True)
    pretrained: Optional[str] = _opt(None, "Start from weights: a tag (kinetics, kinetics700, ...), 'default', or "
                                     "a file / hub3d directory. The classifier is replaced when the classes differ.")
    finetune_from: Optional[str] = _opt(None, "Train this stage onwards (layer4 or conv5_x + fc as in the CVPR "
                                        "paper; conv1, layer1..layer4, conv2_x..conv5_x, fc: the classifier only, all); earlier stages are frozen.")
    tag: Optional[str] = _opt(None, "Tag recorded in the exported config (default: the model's).")
    clip_len: Optional[int] = _opt(None, "Frames per clip (default: the model's config).", type=int)
    crop_size: Optional[int] = _opt(None, "Input size (default: the model's config).", type=int)
    # optimisation (Hara et al.: SGD 0.9, wd 1e-3, lr 0.1 /10 three times on a val-loss plateau)
    epochs: int = _opt(10, "Epochs.")
    batch_size: int = _opt(32, "Per process; global batch = batch size x processes.")
    lr: float = _opt(0.1, "Learning rate (scale it with the global batch: 0.1 at 256).")
    head_lr: Optional[float] = _opt(None, "Learning rate of the classifier (default: --lr).", type=float)
    optimizer: str = _opt("sgd", "SGD is the papers'.", choices=("sgd", "adamw"))
    momentum: float = _opt(0.9, "SGD momentum.")
    dampening: float = _opt(0.0, "SGD dampening.")
    nesterov: bool = _opt(False, "Nesterov momentum.")
    weight_decay: float = _opt(1e-3, "Weight decay.")
    scheduler: str = _opt("plateau", "Learning-rate schedule.", choices=("plateau", "cosine", "multistep", "none"))
    lr_factor: float = _opt(0.1, "plateau / multistep: multiply the lr by this.")
    lr_drops: int = _opt(3, "plateau: at most this many reductions.")
    patience: int = _opt(10, "plateau: epochs without val-loss improvement before reducing.")
    milestones: tuple = _opt((), "multistep: epochs, comma-separated.", numbers=int)
    warmup_epochs: int = _opt(0, "Linear warm-up epochs (large-batch training).")
    # augmentation
    scales: tuple = _opt(MULTISCALE, "Crop scales of the short side, comma-separated (default: 1,2^-1/4,2^-1/2,"
                         "2^-3/4,1/2).", numbers=float)
    positions: tuple = _opt(POSITIONS, "Crop positions.", cli=False)
    hflip: float = _opt(0.5, "Horizontal flip probability.")
    # execution
    device: str = _opt("auto", "auto, cpu, cuda, cuda:1 ...")
    amp: str = _opt("none", "Mixed precision.", choices=("none", "bf16", "fp16"))
    channels_last: bool = _opt(False, "channels_last_3d memory format.")
    sync_bn: bool = _opt(False, "SyncBatchNorm across processes (CUDA).")
    workers: int = _opt(2, "DataLoader processes decoding videos, per training process.")
    threads: Optional[int] = _opt(None, "torch threads per process.", type=int)
    seed: int = _opt(0, "Seed of shuffling, augmentation and initialisation.")
    max_steps: Optional[int] = _opt(None, "Stop each epoch after this many steps (smoke tests, benchmarks).",
                                    type=int)
    # outputs
    out: str = _opt("runs/train", "Run folder: logs, metrics, checkpoints; ends holding the exported model "
                    "(hub3d.load(OUT)).", required=True)
    resume: Optional[str] = _opt(None, "A checkpoint, or a run folder (its latest checkpoint).")
    checkpoint_every: int = _opt(1, "Epochs between checkpoints (the best is always kept).")
    val_every: int = _opt(1, "Epochs between validations.")
    val_batch_size: Optional[int] = _opt(None, "Validation batch size (default: --batch-size).", type=int)
    export: str = _opt("best", "Which epoch's weights --out ends holding.", choices=("best", "last"))
    progress: bool = _opt(True, "Progress bars.")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["scales"], d["positions"], d["milestones"] = list(self.scales), list(self.positions), list(self.milestones)
        return d


# ------------------------------------------------------------------------------------------------ data
class TrainClips(torch.utils.data.Dataset):
    """A dataset's videos -> augmented training clips; sample i of epoch e uses rng (seed, e, i)."""

    def __init__(self, base, transform: TrainTransform, seed: int):
        self.base, self.transform, self.seed, self.epoch = base, transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        from ..video import VideoError

        try:
            frames = self.base.video(index)
        except VideoError as e:  # logged and skipped: one bad file never ends an epoch
            log.warning("skipped unreadable video: %s", e)
            return None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.transform(frames, self.base.label(index), rng)


def collate_skip_none(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch], dtype=torch.long)


def _seed_worker(worker_id):  # workers get their torch seed from the loader; keep numpy's in step
    np.random.seed(torch.initial_seed() % 2 ** 32)


# ----------------------------------------------------------------------------------------------- model
def build_model(cfg: TrainConfig, classes: Sequence[str]) -> nn.Module:
    """Random init, or pretrained weights (a tag or a file) with a new classifier when the classes differ."""
    from ..loader import load

    classes = list(classes)
    if cfg.pretrained:
        pretrained = True if cfg.pretrained in ("default", "true", "True") else cfg.pretrained
        model = load(cfg.model, pretrained=pretrained, **cfg.model_kwargs)
        if list(model.labels) != classes:
            model.reset_classifier(len(classes), labels=classes)
    else:
        model = load(cfg.model, num_classes=len(classes), **cfg.model_kwargs)
        model.labels = classes
    pcfg = model.pretrained_cfg
    if pcfg.labels is not None and list(pcfg.class_names()) != classes:
        pcfg = pcfg.replace(labels=None)
    changes = {k: v for k, v in (("clip_len", cfg.clip_len), ("crop_size", cfg.crop_size)) if v}
    if cfg.crop_size and isinstance(pcfg.resize, int):
        changes["resize"] = cfg.crop_size
    model.pretrained_cfg = pcfg.replace(**changes) if changes else pcfg
    if cfg.finetune_from and cfg.finetune_from != "all":
        model.freeze_until(cfg.finetune_from)  # the model's own stage names and aliases (VideoModel.stage_choices)
    return model


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (or AdamW); the classifier gets head_lr (fine-tuning), the rest lr. Frozen parameters are left out."""
    head = {id(p) for p in model.get_classifier().parameters()}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
    head_params = [p for p in model.get_classifier().parameters() if p.requires_grad]
    groups = [g for g in ({"params": body, "lr": cfg.lr, "name": "body"},
                          {"params": head_params, "lr": cfg.head_lr or cfg.lr, "name": "head"}) if g["params"]]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer != "sgd":
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}: sgd or adamw")
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                           nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.scheduler == "plateau":
        # min_lr stops the divisions after lr_drops of them (just under lr * factor**drops, so float
        # rounding cannot block the last one).
        min_lrs = [g["lr"] * cfg.lr_factor ** cfg.lr_drops * (1 - 1e-6) for g in opt.param_groups]
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                          patience=cfg.patience, min_lr=min_lrs)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs - cfg.warmup_epochs, 1))
    if cfg.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.lr_factor)
    if cfg.scheduler == "none":
        return None
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}: plateau, cosine, multistep or none")


# ------------------------------------------------------------------------------------------- metrics
def topk_correct(scores: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many rows have their target among the k best scores, for each k (k capped at the class count)."""
    out = []
    for k in ks:
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices
        out.append(int((top == targets[:, None]).any(dim=1).sum()))
    return out


def _fmt(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif isinstance(v, int):
            parts.append(f"{k} {v}")
    return "  ".join(parts)


class _DatasetVideo:
    """One dataset video for the inference engine: loaded (dataset.video) in a decoder thread, when needed."""

    __slots__ = ("dataset", "index", "name")

    def __init__(self, dataset, index: int):
        self.dataset, self.index = dataset, index
        self.name = f"{type(dataset).__name__}[{index}]"

    def __call__(self):
        return self.dataset.video(self.index)


def video_logits(model, dataset, indices=None, batch_size=16, device=None, amp="none", channels_last=False,
                 progress=None):
    """Yield (index, clip logits (n_clips, num_classes) float32) per video, or (index, None) if unreadable.

    The inference engine itself (hub3d.inference.iter_outputs on the dataset's in-memory videos): the weights'
    clip windows (loop-padded tail), centre crops, batches shared across videos; softmax then mean over a
    video's clips gives the probabilities hub3d.classify reports. progress: a tqdm-like bar (counts clips).
    """
    indices = list(range(len(dataset)) if indices is None else indices)
    videos = [_DatasetVideo(dataset, i) for i in indices]
    # threads: keep the process's (training set them); the engine's cpu default is for inference runs.
    outputs = iter_outputs(model, videos, "logits", tail="loop", batch_size=batch_size, device=device,
                           precision=amp, channels_last=channels_last, threads=torch.get_num_threads(),
                           on_error="skip", progress=False if progress is None else progress)
    for i, item in zip(indices, outputs):
        if isinstance(item, FailedVideo):
            log.warning("skipped unreadable video: %s", item.error)
            yield i, None
        else:
            yield i, torch.from_numpy(item[1][0])


# ------------------------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: TrainConfig, info: Optional[DistInfo] = None):
        from ..data import build_dataset, read_classes

        self.cfg = cfg
        self.info = info or init_distributed(cfg.device)
        self.device = self.info.device
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            self.precision = resolve_precision(cfg.amp, self.device)  # "none" = fp32; fp16 refused on cpu
        except ValueError as e:
            raise ValueError(f"--amp {cfg.amp}: {e}") from None
        self.out = Path(cfg.out)
        self._setup_logging()
        torch.manual_seed(cfg.seed)

        classes = read_classes(cfg.classes) if cfg.classes else None
        common = dict(fmt=cfg.format, annotations=cfg.annotations, video_root=cfg.video_root, split=cfg.split,
                      synthetic_frames=cfg.synthetic_frames, synthetic_size=cfg.synthetic_size, seed=cfg.seed)
        self.train_set = build_dataset(cfg.data, train=True, classes=classes,
                                       synthetic_videos=cfg.synthetic_videos, **common)
        classes = list(self.train_set.classes)
        self.val_set = None
        if cfg.val_data or cfg.data == "synthetic" or cfg.format in ("ucf101", "hmdb51") or (
                Path(cfg.data).is_dir() and (Path(cfg.data) / "val").is_dir()):
            self.val_set = build_dataset(cfg.val_data or cfg.data, train=False, classes=classes,
                                         synthetic_videos=cfg.synthetic_val_videos, **common)
        self.classes = classes

        model = build_model(cfg, classes).to(self.device)
        self.model_cfg = model.pretrained_cfg
        if cfg.channels_last:
            to_channels_last_3d(model)  # rank-5 tensors only: P3D's 2D res5 has no 3D channels-last layout
        self.model = wrap_model(model, self.info, cfg.sync_bn)
        self.optimizer = build_optimizer(unwrap(self.model), cfg)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.transform = TrainTransform(self.model_cfg, scales=cfg.scales, positions=cfg.positions,
                                        hflip_prob=cfg.hflip, hflip_labels=hflip_label_map(self.train_set))
        self.clips = TrainClips(self.train_set, self.transform, cfg.seed)
        if self.info.distributed:
            self.sampler = DistributedSampler(self.clips, self.info.world_size, self.info.rank, shuffle=True,
                                              seed=cfg.seed, drop_last=True)
        else:
            self.sampler = None
        self.start_epoch, self.history, self.best = 0, [], None
        if cfg.resume:
            self.load_checkpoint(self.find_checkpoint(cfg.resume))

    # -------------------------------------------------------------------------------- logging/files
    def _setup_logging(self):
        log.setLevel(logging.INFO)
        log.propagate = False
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()
        if not self.info.is_main:
            log.addHandler(logging.NullHandler())
            return
        self.out.mkdir(parents=True, exist_ok=True)
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(self.out / "train.log", encoding="utf-8")):
            h.setFormatter(fmt)
            log.addHandler(h)

    def _progress(self, iterable, total, desc):
        if not (self.cfg.progress and self.info.is_main):
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)

    # ------------------------------------------------------------------------------------- loaders
    def _loader(self, epoch: int) -> DataLoader:
        self.clips.set_epoch(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            sampler = self.sampler
        else:
            g = torch.Generator()
            g.manual_seed(self.cfg.seed * 1_000_003 + epoch)  # the order is a function of (seed, epoch)
            sampler = RandomSampler(self.clips, generator=g)
        return DataLoader(self.clips, batch_size=self.cfg.batch_size, sampler=sampler,
                          num_workers=self.cfg.workers, collate_fn=collate_skip_none, drop_last=True,
                          pin_memory=self.device.type == "cuda", worker_init_fn=_seed_worker,
                          persistent_workers=False, prefetch_factor=4 if self.cfg.workers else None)

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _to_device(self, x):
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last_3d) if self.cfg.channels_last else x

    # ------------------------------------------------------------------------------------ epochs
    def _set_warmup_lr(self, epoch: int, step: int, steps: int):
        if epoch < self.cfg.warmup_epochs:
            frac = (epoch * steps + step + 1) / (self.cfg.warmup_epochs * steps)
            for g, base in zip(self.optimizer.param_groups, self.base_lrs):
                g["lr"] = base * frac

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        loader = self._loader(epoch)
        steps = len(loader) if self.cfg.max_steps is None else min(len(loader), self.cfg.max_steps)
        loss_sum, correct, n = 0.0, 0, 0
        t0 = time.perf_counter()
        bar = self._progress(loader, steps, f"epoch {epoch + 1}/{self.cfg.epochs}")
        for step, batch in enumerate(bar):
            if step >= steps:
                break
            if batch is None:
                continue
            self._set_warmup_lr(epoch, step, steps)
            x, y = self._to_device(batch[0]), batch[1].to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1} step {step}: loss is {loss.item()} (lower --lr?)")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}")
        seconds = time.perf_counter() - t0
        loss_sum, correct, n = all_reduce_sum([loss_sum, correct, n], self.info)
        return {"train_loss": loss_sum / max(n, 1), "train_clip_acc1": correct / max(n, 1),
                "train_clips": int(n), "train_seconds": seconds, "train_clips_per_s": n / max(seconds, 1e-9)}

    def validate(self, dataset=None) -> dict:
        """Clip and video accuracy (top-1/top-5) and clip loss on the validation videos (see video_logits).

        Ranks split the videos (every rank-th one); the sums are reduced over the ranks.
        """
        dataset = dataset or self.val_set
        model = unwrap(self.model)
        indices = list(range(self.info.rank, len(dataset), self.info.world_size))
        stats = np.zeros(8)  # clip loss sum, clip top1, clip top5, clips, video top1, video top5, videos, skipped
        scores = video_logits(model, dataset, indices, self.cfg.val_batch_size or self.cfg.batch_size,
                              self.device, self.cfg.amp, self.cfg.channels_last,
                              progress=self._progress(None, None, "validate clips"))
        for i, logits in scores:
            if logits is None:
                stats[7] += 1
                continue
            targets = torch.full((len(logits),), dataset.label(i), dtype=torch.long)
            stats[0] += float(F.cross_entropy(logits, targets, reduction="sum"))
            stats[1:3] += topk_correct(logits, targets)
            stats[3] += len(targets)
            stats[4:6] += topk_correct(logits.softmax(1).mean(0, keepdim=True), targets[:1])
            stats[6] += 1
        model.train()
        total = all_reduce_sum(stats.tolist(), self.info)
        clips, videos = max(total[3], 1), max(total[6], 1)
        return {"val_loss": total[0] / clips, "val_clip_acc1": total[1] / clips, "val_clip_acc5": total[2] / clips,
                "val_video_acc1": total[4] / videos, "val_video_acc5": total[5] / videos,
                "val_videos": int(total[6]), "val_skipped": int(total[7])}

    # ---------------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self, epoch: int) -> dict:
        model = unwrap(self.model)
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,  # epochs completed
            "model": model.meta.to_dict(),  # architecture, arch_kwargs, labels, pretrained_cfg (ModelMeta)
            "state_dict": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
            "best": self.best,
            "history": self.history,
            "config": self.cfg.to_dict(),
        }

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        if not self.info.is_main:
            return
        from ..io import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.checkpoint_state(epoch)
        with atomic_write(path, "wb") as f:
            torch.save(state, f)

    def find_checkpoint(self, resume: str) -> Path:
        """A checkpoint file, or a run directory (its latest checkpoints/epoch_*.pt)."""
        path = Path(resume)
        if path.is_dir():
            ckpts = sorted((path / "checkpoints").glob("epoch_*.pt")) or sorted(path.glob("epoch_*.pt"))
            if not ckpts:
                raise ValueError(f"{path}: no checkpoints/epoch_*.pt to resume from")
            path = ckpts[-1]
        if not path.exists():
            raise ValueError(f"{path}: no such checkpoint")
        return path

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a hub3d training checkpoint (use --pretrained for model weights)")
        model = unwrap(self.model)
        saved = ModelMeta.from_dict(state["model"])
        if saved.arch != model.arch_name:
            raise ValueError(f"{path}: a {saved.arch} checkpoint, but --model is {model.arch_name}")
        if list(saved.labels) != list(model.labels):
            raise ValueError(f"{path}: its {saved.num_classes} classes differ from this run's data")
        model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.start_epoch, self.best, self.history = int(state["epoch"]), state["best"], list(state["history"])
        log.info("resumed from %s (epoch %d done)", path, self.start_epoch)

    # ---------------------------------------------------------------------------------------- fit
    def _scheduler_step(self, metrics: dict) -> None:
        if self.scheduler is None or self.start_epoch <= self.cfg.warmup_epochs:  # warm-up sets the lr itself
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # The paper watches the validation loss; without validation data, the training loss.
            self.scheduler.step(metrics.get("val_loss", metrics["train_loss"]))
        else:
            self.scheduler.step()

    def _is_better(self, metrics: dict) -> bool:
        """Best = highest validation video accuracy, ties broken by the lower validation loss (without
        validation: the lowest training loss)."""
        if "val_video_acc1" in metrics:
            value = [metrics["val_video_acc1"], -metrics["val_loss"]]
        else:
            value = [float("-inf"), -metrics["train_loss"]]
        best = self.best if isinstance(self.best, (list, type(None))) else [self.best, float("-inf")]
        if best is None or value > list(best):
            self.best = value
            return True
        return False

    def fit(self) -> dict:
        cfg, info = self.cfg, self.info
        model = unwrap(self.model)
        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("hub3d train: %s (%s params, %s trainable), %d classes, %d train videos%s, %d process(es) on %s",
                 model.arch_name, f"{n_params:,}", f"{n_train:,}", len(self.classes), len(self.train_set),
                 f", {len(self.val_set)} val videos" if self.val_set is not None else "", info.world_size,
                 self.device)
        log.info("recipe: %s; global batch %d", self.transform, cfg.batch_size * info.world_size)
        ckpt_dir = self.out / "checkpoints"
        for epoch in range(self.start_epoch, cfg.epochs):
            metrics = {"epoch": epoch + 1}
            metrics.update(self.train_epoch(epoch))
            metrics["lr"] = self.optimizer.param_groups[0]["lr"]  # after warm-up steps, before the scheduler
            if self.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                metrics.update(self.validate())
            self.start_epoch = epoch + 1
            self._scheduler_step(metrics)
            better = self._is_better(metrics) if ("val_loss" in metrics or self.val_set is None) else False
            self.history.append(metrics)
            log.info("epoch %d/%d  %s", epoch + 1, cfg.epochs, _fmt({k: v for k, v in metrics.items() if k != "epoch"}))
            if info.is_main:
                write_csv(self.out / "metrics.csv", self.history, fieldnames=_columns(self.history))
                write_json(self.out / "metrics.json", self.history)
                if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                    self.save_checkpoint(ckpt_dir / f"epoch_{epoch + 1:04d}.pt", epoch + 1)
                if better:
                    self.save_checkpoint(ckpt_dir / "best.pt", epoch + 1)
            barrier(info)
        return self.finish()

    def finish(self) -> dict:
        """Sync buffers, check every rank holds the same weights, export (save_pretrained) on rank 0."""
        cfg, info = self.cfg, self.info
        model = unwrap(self.model)
        broadcast_buffers(self.model, info)
        digests = all_gather_objects(state_sha256(model), info)
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks hold different weights after training: {digests}")
        exported_epoch = self.start_epoch
        best_path = self.out / "checkpoints" / "best.pt"
        if cfg.export == "best" and info.is_main and best_path.exists():
            state = torch.load(best_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["state_dict"])
            exported_epoch = int(state["epoch"])
        final = {"epochs": self.start_epoch, "exported_epoch": exported_epoch, "world_size": info.world_size,
                 "rank_state_sha256": digests}
        for m in self.history:
            if m["epoch"] == exported_epoch:
                final.update({k: v for k, v in m.items() if k.startswith("val_")})
        if info.is_main:
            metrics = {k: round(v, 4) for k, v in final.items() if k.startswith("val_") and isinstance(v, float)}
            model.pretrained_cfg = model.pretrained_cfg.replace(
                tag=cfg.tag or model.pretrained_cfg.tag, labels_verified=True, metrics=metrics,
                dataset=cfg.data if cfg.data == "synthetic" else Path(cfg.data).name, file=None, url=None,
                sha256=None, drive_folder=None, hf_hub_id=None)
            model.save_pretrained(self.out, config_extra={"training": {
                "config": cfg.to_dict(), "epochs": self.start_epoch, "exported_epoch": exported_epoch}})
            write_json(self.out / "final_metrics.json", final)
            log.info("exported epoch %d to %s (hub3d.load(%r))", exported_epoch, self.out, str(self.out))
        barrier(info)
        return final


def _columns(history: list[dict]) -> list[str]:
    cols = []
    for m in history:
        cols += [k for k in m if k not in cols]
    return cols


def train(cfg: TrainConfig) -> dict:
    """Run one training (in this process; under torchrun, in each): returns the final metrics."""
    info = init_distributed(cfg.device)
    try:
        return Trainer(cfg, info).fit()
    finally:
        cleanup(info)
