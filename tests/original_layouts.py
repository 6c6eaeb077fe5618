"""Writers of the checkpoint layouts the original projects released, for tests (no downloads)."""
from __future__ import annotations

import contextlib

import torch
import torch.serialization


@contextlib.contextmanager
def storages_tagged_cuda():
    """Make torch.save record every storage as saved on 'cuda:0', as the 2017/2018 GPU-trained files did."""
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        yield
    finally:
        torch.serialization.location_tag = original


def fake_optimizer_state(model) -> dict:
    params = list(model.parameters())
    return {
        "state": {i: {"momentum_buffer": torch.zeros_like(p)} for i, p in enumerate(params[:3])},
        "param_groups": [{"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 0.001, "nesterov": False,
                          "params": list(range(len(params)))}],
    }


def save_hara2018(model, path, arch: str) -> None:
    """CVPR 2018 release: nn.DataParallel keys, no num_batches_tracked, legacy non-zip format, CUDA storages."""
    state_dict = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    obj = {"epoch": 200, "arch": arch, "state_dict": state_dict, "optimizer": fake_optimizer_state(model)}
    with storages_tagged_cuda():
        torch.save(obj, path, _use_new_zipfile_serialization=False)


def save_hara2020(model, path, arch: str, rename=None) -> None:
    """2020 release: plain keys, optimizer and scheduler state, zip format. rename: fn(state_dict) -> the
    2020 code's key names where they differ from hub3d's (densenet_2020_keys)."""
    scheduler = {"milestones": {50: 1, 100: 1, 150: 1}, "gamma": 0.1, "base_lrs": [0.1], "last_epoch": 200,
                 "_step_count": 201, "verbose": False, "_get_lr_called_within_step": False, "_last_lr": [0.0001]}
    state_dict = model.state_dict() if rename is None else rename(model.state_dict())
    obj = {"epoch": 200, "arch": arch, "state_dict": state_dict, "optimizer": fake_optimizer_state(model),
           "scheduler": scheduler}
    torch.save(obj, path)


def save_bare(model, path) -> None:
    """torchvision: a bare state dict."""
    torch.save(model.state_dict(), path)


def densenet_2020_keys(state_dict: dict) -> dict:
    """hub3d's DenseNet keys -> the 2020 code's (models/densenet.py names the stem features.conv1 / norm1)."""
    out = {}
    for k, v in state_dict.items():
        for ours, theirs in (("features.conv0.", "features.conv1."), ("features.norm0.", "features.norm1.")):
            if k.startswith(ours):
                k = theirs + k[len(ours):]
        out[k] = v
    return out
