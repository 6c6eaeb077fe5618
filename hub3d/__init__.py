"""hub3d: pretrained 3D CNN video models in one line.

``import hub3d`` stays light (torch only): video decoding (av), the CLI (click), the Hugging Face Hub and
torchvision load when a feature needs them.
"""
from . import models  # noqa: F401  (registers every architecture)
from .pretrained import PretrainedCfg, class_order_from_csv
from .registry import (
    create_model,
    get_pretrained_cfg,
    list_models,
    list_pretrained,
    list_tags,
    model_info,
    register_model,
)

__version__ = "0.1.0"

# name -> module that defines it, imported on first use.
_LAZY = {
    "load": "loader",
    "convert": "checkpoint",
    "save_pretrained": "checkpoint",
    "classify": "inference",
    "extract_features": "inference",
    "iter_clips": "inference",
    "iter_classify": "inference",
    "export": "exporter",  # the module is not hub3d/export.py: a submodule import would shadow the function
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hub3d' has no attribute {name!r}")


__all__ = [
    "PretrainedCfg",
    "class_order_from_csv",
    "create_model",
    "get_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "list_tags",
    "model_info",
    "register_model",
    *_LAZY,
]
