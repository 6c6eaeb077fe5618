"""Publishing: hub3d's format on disk (save_pretrained), model cards, and uploads to the Hugging Face Hub.

huggingface_hub is imported only by the functions that talk to the Hub or write a card.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

from torch import nn

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_checkpoint, write_pretrained
from .errors import CheckpointError
from .loader import convert, load
from .pretrained import PretrainedCfg
from .registry import get_pretrained_cfg, is_model, list_tags
from .sources import HF_ORG, is_hub3d_dir, weights_key

README_NAME = "README.md"

PathLike = Union[str, os.PathLike]


def save_pretrained(model: nn.Module, save_directory: PathLike, config_extra: Optional[dict] = None) -> Path:
    """Write model.safetensors + config.json (atomically) into a directory that hub3d.load reads back.

    ``config_extra`` adds fields to config.json (e.g. how the model was trained).
    """
    return write_pretrained(model, save_directory, config_extra=config_extra)


def model_card(model, repo_id: Optional[str] = None) -> str:
    """README.md of a model's repo: HF metadata (library, pipeline, datasets, metrics, licence) + provenance.

    A model whose classes differ from the tag it was built from (a new classifier, other labels) is described as
    derived from that tag, without the tag's dataset and reported results.
    """
    name, cfg = model.arch_name, model.pretrained_cfg
    labels = list(model.labels)
    derived_from = None
    if is_model(name) and cfg.tag in list_tags(name):
        original = get_pretrained_cfg(name, cfg.tag)
        if original.num_classes != model.num_classes or labels != original.class_names():
            derived_from = f"{name}.{cfg.tag}"
            cfg = cfg.replace(metrics={}, dataset=None)
    named = labels != [f"class_{i}" for i in range(len(labels))]
    return card_for_cfg(name, cfg, repo_id=repo_id, arch_kwargs=model.arch_kwargs, derived_from=derived_from,
                        labels_in_config=named)


def card_for_cfg(
    model_name: str,
    cfg: PretrainedCfg,
    repo_id: Optional[str] = None,
    arch_kwargs: Optional[dict] = None,
    derived_from: Optional[str] = None,
    labels_in_config: bool = False,
) -> str:
    """The model card of one set of weights, from its PretrainedCfg alone (weights/generate.py uses this too)."""
    from huggingface_hub import ModelCardData

    datasets = cfg.dataset.split("+") if cfg.dataset else None
    data = ModelCardData(
        library_name="hub3d",
        pipeline_tag="video-classification",
        license=(cfg.license or "other").lower(),
        datasets=datasets,
        metrics=["accuracy"] if cfg.metrics else None,
        tags=["hub3d", "video-classification", "3d-cnn", model_name],
    )
    repo = repo_id or f"{HF_ORG}/{weights_key(model_name, cfg.tag)}"
    kwargs = {**cfg.arch_kwargs, **(arch_kwargs or {})}
    resize = "x".join(map(str, cfg.resize)) if isinstance(cfg.resize, (tuple, list)) else f"short side {cfg.resize}"
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {model_name} ({cfg.tag})",
        "",
        f"A {model_name} video classifier in hub3d format "
        f"(`config.json` + `model.safetensors`): {cfg.num_classes} classes"
        + (f", trained on {cfg.dataset}" if cfg.dataset else "") + ".",
        "",
        "```python",
        "import hub3d",
        f'model = hub3d.load("hf-hub:{repo}")',
        'print(hub3d.classify(model, "video.mp4"))',
        "```",
        "",
        "## Input and preprocessing",
        "",
        f"- clips of {cfg.clip_len} frames, {cfg.crop_size}x{cfg.crop_size} center crop after resizing ({resize}, "
        f"{cfg.interpolation})",
        f"- x = frame / 255 * {cfg.value_scale:g}; x = (x - mean) / std with mean {list(cfg.mean)}, std {list(cfg.std)}",
        f"- architecture arguments: `{kwargs}`",
        "- labels: " + (f"`{cfg.labels}`" if cfg.labels else "the names in config.json" if labels_in_config
                        else "class indices only")
        + (" (order verified against the weights)" if cfg.labels_verified else " (order not verified against the weights)"),
        "",
        "## Provenance",
        "",
        *([f"- derived from hub3d's `{derived_from}` (new classifier or labels): the results reported for those "
           "weights do not apply to this model", ] if derived_from else []),
        f"- release: {cfg.release or 'unknown'}",
        f"- original file: {cfg.file or '-'}" + (f" (sha256 {cfg.sha256})" if cfg.sha256 else
                                                 " (sha256 unpublished)" if cfg.url else ""),
    ]
    if cfg.url:
        lines.append(f"- original URL: {cfg.url}")
    if cfg.drive_folder:
        lines.append(f"- original Google Drive folder: {cfg.drive_folder}")
    if cfg.paper:
        lines.append(f"- paper: {cfg.paper}")
    lines.append(f"- licence: {cfg.license or 'unknown'}")
    if cfg.notes:
        lines += ["", cfg.notes]
    if cfg.metrics:
        lines += ["", "## Reported results", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in cfg.metrics.items()]
    if cfg.citation:
        lines += ["", "## Citation", "", "```bibtex", cfg.citation, "```"]
    return "\n".join(lines) + "\n"


def push_to_hub(
    model,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: str = "Upload hub3d model",
    revision: Optional[str] = None,
) -> str:
    """Publish a model as a hub3d repo (config.json, model.safetensors, README.md); returns the commit URL."""
    with tempfile.TemporaryDirectory(prefix="hub3d-push-") as tmp:
        save_pretrained(model, tmp)
        return upload_dir(tmp, repo_id, model_card(model, repo_id), token=token, private=private,
                          commit_message=commit_message, revision=revision)


def upload_dir(
    directory: PathLike,
    repo_id: str,
    card: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: str = "Upload hub3d model",
    revision: Optional[str] = None,
) -> str:
    """Write README.md into a hub3d directory and upload the three files in one commit."""
    from huggingface_hub import HfApi

    directory = Path(directory)
    if not is_hub3d_dir(directory):
        raise CheckpointError(f"{directory}: not a hub3d model directory ({CONFIG_NAME} and {WEIGHTS_NAME} needed)")
    (directory / README_NAME).write_text(card, encoding="utf-8")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(directory),
        allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, README_NAME],
        commit_message=commit_message,
        revision=revision,
    )
    return str(info.commit_url)


def push_path(
    file_or_dir: PathLike,
    repo_id: str,
    model_name: Optional[str] = None,
    tag: Optional[str] = None,
    **push_kwargs,
) -> str:
    """Publish an original checkpoint (converted on the way) or a hub3d directory.

    ``model_name`` may be 'model.tag' (then ``tag`` is optional).
    """
    source = Path(file_or_dir)
    with tempfile.TemporaryDirectory(prefix="hub3d-push-") as tmp:
        if source.is_dir():
            read_checkpoint(source)  # validates it is a complete hub3d directory
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                shutil.copyfile(source / name, Path(tmp) / name)
        else:
            convert(source, tmp, model_name=model_name, tag=tag)
        model = load(tmp)
        return upload_dir(tmp, repo_id, model_card(model, repo_id), **push_kwargs)
