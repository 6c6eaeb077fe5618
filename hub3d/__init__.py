"""hub3d: pretrained 3D CNN video models in one line.

``import hub3d`` stays light (torch only): video decoding (av), the CLI (click), the Hugging Face Hub and
torchvision load when a feature needs them.
"""
from . import models  # noqa: F401  (registers every architecture)
from .errors import (
    CheckpointError,
    ChecksumError,
    ConfigError,
    DownloadError,
    ExportError,
    Hub3dError,
    IncompleteError,
    MissingExtraError,
    OutputError,
    UnsafeCheckpointError,
    VideoError,
    WeightsNotFoundError,
)
from .loader import convert, load
from .pretrained import PretrainedCfg, class_order_from_csv
from .publish import push_to_hub, save_pretrained
from .registry import (
    create_model,
    get_pretrained_cfg,
    list_models,
    list_pretrained,
    list_tags,
    model_info,
    register_model,
)
from .version import __version__

# name -> module that defines it, imported on first use.
_LAZY = {
    "classify": "inference",
    "extract_features": "inference",
    "extract_dataset": "distributed",
    "iter_clips": "inference",
    "iter_classify": "inference",
    "classify_two_stream": "inference",
    "iter_classify_two_stream": "inference",
    "iter_extract_features": "inference",
    "ClipSpec": "specs",
    "RunSpec": "specs",
    "resolve_clip_spec": "specs",
    "inflate": "inflate",
    "export": "exporter",  # the module is not hub3d/export.py: a submodule import would shadow the function
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hub3d' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ChecksumError",
    "ConfigError",
    "DownloadError",
    "OutputError",
    "ExportError",
    "Hub3dError",
    "IncompleteError",
    "MissingExtraError",
    "UnsafeCheckpointError",
    "VideoError",
    "WeightsNotFoundError",
    "__version__",
    "convert",
    "load",
    "push_to_hub",
    "save_pretrained",
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
