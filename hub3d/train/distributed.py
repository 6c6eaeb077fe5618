"""torchrun / DistributedDataParallel plumbing: one process per device, launched by torchrun (never by hub3d).

`torchrun --nproc_per_node=N -m hub3d.train ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; here we
join the process group (NCCL on CUDA, gloo on CPU), pick the device and wrap the model. Only rank 0 writes
files and logs. Without those variables everything runs as a single process.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from .. import specs


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: Optional[str], local_rank: int = 0) -> torch.device:
    """hub3d.specs.resolve_device ('auto' / None: the best available; 'cuda' means cuda:LOCAL_RANK), made this
    process's current CUDA device."""
    dev = specs.resolve_device(device or "auto", local_rank=local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: Optional[str] = None, backend: Optional[str] = None) -> DistInfo:
    """Join torchrun's process group when WORLD_SIZE > 1; return this process's rank, world and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistInfo(rank, world, local_rank, dev)


def wrap_model(model: nn.Module, info: DistInfo, sync_bn: bool = False) -> nn.Module:
    """DDP-wrap (and optionally convert BatchNorm to SyncBatchNorm) when running distributed."""
    if not info.distributed:
        return model
    if sync_bn:
        if info.device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA devices (SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers over the ranks (float64, so counts stay exact)."""
    if not info.distributed:
        return [float(v) for v in values]
    dev = info.device if info.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(obj, info: DistInfo) -> list:
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(model: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart after the last training step)."""
    if info.distributed:
        for b in unwrap(model).buffers():
            dist.broadcast(b.data, src=0)


def state_sha256(model: nn.Module) -> str:
    """A hash of every tensor of the state dict: equal on two ranks iff they hold identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(unwrap(model).state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
