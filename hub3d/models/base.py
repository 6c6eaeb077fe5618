"""The contract every hub3d model keeps, whatever its family."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

# The loader and publishing never import hub3d.models (they build models through the registry), so these
# module-level imports are acyclic: models -> loader/publish -> registry/checkpoint/sources.
from ..errors import CheckpointError
from ..loader import load
from ..pretrained import ModelMeta, PretrainedCfg
from ..publish import push_to_hub as _push_to_hub
from ..publish import save_pretrained as _save_pretrained
from ..sources import HF_PREFIX, looks_like_hf_repo


class VideoModel(nn.Module):
    """Base of every architecture: (B, C, T, H, W) float clips in, logits out.

    Subclasses build their layers under their original parameter names (so original state dicts load as they
    are), set ``num_features`` and name their classifier in ``classifier_name``, and implement
    ``forward_features``. The pooled vector is a global average over T, H and W, so any input size that survives
    the strides works.
    """

    num_features: int
    classifier_name = "fc"
    # True only where the graph is size-generic (global pooling, no shape-dependent padding / kernels / Python shape
    # arithmetic): hub3d.export then keeps T/H/W dynamic. Otherwise a graph traced at one size is wrong at another.
    dynamic_input_shapes: bool = False
    # Set by hub3d.registry.create_model: what this model is and how to rebuild it (hub3d.pretrained.ModelMeta).
    # arch_name, arch_kwargs, pretrained_cfg and labels are views of it; reset_classifier changes the classes.
    meta: ModelMeta

    @property
    def arch_name(self) -> str:
        return self.meta.arch

    @property
    def arch_kwargs(self) -> dict:
        return dict(self.meta.arch_kwargs)

    @property
    def pretrained_cfg(self) -> PretrainedCfg:
        return self.meta.pretrained_cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: PretrainedCfg) -> None:  # preprocessing, provenance; classes stay
        self.meta = self.meta.replace(pretrained_cfg=cfg)

    @property
    def labels(self) -> list:
        return list(self.meta.labels)

    @labels.setter
    def labels(self, labels: Sequence[str]) -> None:  # names only: as many as there are classes
        if len(labels) != self.meta.num_classes:
            raise ValueError(f"{len(labels)} labels given for a model of {self.meta.num_classes} classes")
        self.meta = self.meta.replace(labels=tuple(labels))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, (B, num_features, T', H', W')."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool (and the classifier unless pre_logits): (B, num_features) or (B, num_classes)."""
        x = x.mean(dim=(2, 3, 4))
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)  # a dotted path where the original nests it

    def new_classifier(self, num_classes: int, device=None) -> nn.Module:
        """A fresh classifier for num_classes (families whose classifier is a 1x1x1 conv override this)."""
        return nn.Linear(self.num_features, num_classes, device=device)

    def example_input(self, batch_size: int = 1, clip_len: int = 16, size=112, channels: int = 3):
        """A zero input as forward takes it (list-input models, e.g. SlowFast, override this)."""
        h, w = (size, size) if isinstance(size, int) else size
        return torch.zeros(batch_size, channels, clip_len, h, w)

    @property
    def num_classes(self) -> int:
        fc = self.get_classifier()
        return getattr(fc, "out_features", getattr(fc, "out_channels", 0))

    def reset_classifier(self, num_classes: int, labels: Optional[Sequence[str]] = None) -> None:
        """Replace the classifier with a fresh one for num_classes (0: no classifier, forward gives features)."""
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels given for {num_classes} classes")
        meta = self.meta.with_classes(num_classes, labels) if hasattr(self, "meta") else None
        old = self.get_classifier()
        device = next(self.parameters()).device
        if num_classes > 0:
            fc = self.new_classifier(num_classes, device=device)
            if isinstance(getattr(old, "weight", None), torch.Tensor):
                fc.to(old.weight.dtype)
        else:
            fc = nn.Identity()
        parent, _, leaf = self.classifier_name.rpartition(".")  # a dotted path for nested heads (blocks.5.proj)
        setattr(self.get_submodule(parent) if parent else self, leaf, fc)
        if meta is not None:
            self.meta = meta

    # Stages in forward order, for fine-tuning "from a stage on"; the first one stands for the whole stem
    # (every module not under a later stage). Families override where names differ. This is the one list:
    # freeze_until, hub3d.train and `hub3d train --finetune-from` all read it (with the aliases below).
    stage_names: Sequence[str] = ("stem", "layer1", "layer2", "layer3", "layer4")
    # Other names of those stages: the original code's module names and the CVPR 2018 paper's (conv2_x ...).
    stage_aliases: dict = {"conv1": "stem", "conv2_x": "layer1", "conv3_x": "layer2", "conv4_x": "layer3",
                           "conv5_x": "layer4"}

    def stage_choices(self) -> list[str]:
        """Every name freeze_until accepts: the stages, their aliases, the classifier and 'all'."""
        return [*self.stage_names, *self.stage_aliases, self.classifier_name, "all"]

    def freeze_until(self, stage: str) -> None:
        """Freeze every parameter before ``stage``: ``stage``, the stages after it and the classifier train.

        ``stage`` is one of ``stage_names`` ("layer4" = conv5_x, as in the CVPR 2018 fine-tuning), an alias
        (``stage_aliases``: "conv1", "conv5_x", ...), the classifier's name ("fc": train the classifier only)
        or "all". BatchNorm layers of frozen stages keep their running statistics: ``train()`` leaves them in
        eval mode.
        """
        names = list(self.stage_names)
        stage = self.stage_aliases.get(stage, stage)
        if stage == self.classifier_name:
            first = len(names)
        elif stage == "all" or stage in names:
            first = 0 if stage == "all" else names.index(stage)
        else:
            raise ValueError(f"unknown stage {stage!r}; choose from {self.stage_choices()}")
        self._trainable_prefixes = None if first == 0 else (*names[first:], self.classifier_name)
        for pname, param in self.named_parameters():
            param.requires_grad = not self._is_frozen(pname)

    def _is_frozen(self, name: str) -> bool:
        prefixes = getattr(self, "_trainable_prefixes", None)
        if prefixes is None:
            return False
        return not any(name == p or name.startswith(p + ".") for p in prefixes)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and getattr(self, "_trainable_prefixes", None):
            for name, module in self.named_modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and self._is_frozen(name):
                    module.eval()
        return self

    # Named layers (forward_intermediates, hub3d.extract_features(layer=...), `hub3d info`): by default the stages,
    # in forward order. "stem", where it is no single module, is the input of the next stage. Families override.
    @property
    def feature_layers(self) -> list[str]:
        modules = dict(self.named_modules())
        return [n for n in self.stage_names if n in modules or (n == "stem" and n == self.stage_names[0])]

    def resolve_layer(self, name: str) -> str:
        """A feature layer's name (case-insensitive), or any submodule's dotted path; a ValueError otherwise."""
        layers = self.feature_layers
        for candidate in (*layers, *(n for n, _ in self.named_modules() if n)):
            if candidate.lower() == str(name).lower():
                return candidate
        raise ValueError(f"{self.arch_name if hasattr(self, 'meta') else type(self).__name__} has no layer "
                         f"{name!r}; its feature layers: {', '.join(layers)} (or any submodule's dotted path)")

    def layer_output(self, name: str, output, x):
        """What a layer's hook saw, as the layer's feature (families whose forward applies a functional step
        after the module, or folds time into the batch, override this)."""
        return output

    def forward_intermediates(self, x, layers: Sequence[str]) -> dict:
        """{layer: its output} for the named layers (see ``feature_layers``), from one forward pass stopped
        after the last of them. Outputs are (B, C, T, H, W) maps, (B, D) vectors, or lists of maps per pathway."""
        names = list(dict.fromkeys(self.resolve_layer(n) for n in layers))
        outs: dict = {}

        def keep(name, value):
            if name not in outs:  # a copy: later in-place ops (ReLU(inplace), +=) must not change it
                value = [v.clone() for v in value] if isinstance(value, (list, tuple)) else value.clone()
                outs[name] = self.layer_output(name, value, x)
                if len(outs) == len(names):
                    raise _Stop

        handles = []
        try:
            for name in names:
                if name == "stem" and name not in dict(self.named_modules()):
                    nxt = self.get_submodule(self.stage_names[1])
                    handles.append(nxt.register_forward_pre_hook(lambda m, a, name=name: keep(name, a[0])))
                else:
                    mod = self.get_submodule(name)
                    handles.append(mod.register_forward_hook(lambda m, a, o, name=name: keep(name, o)))
            try:
                self(x)
            except _Stop:
                pass
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in names if n not in outs]
        if missing:
            raise ValueError(f"layer(s) {missing} were not run by this model's forward")
        return {n: outs[n] for n in names}

    # Publishing (hub3d format: model.safetensors + config.json).
    def save_pretrained(self, save_directory, **kwargs):
        return _save_pretrained(self, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, repo_or_dir, **kwargs):
        """hub3d.load for a directory, a file, 'model.tag' or a Hub repo ('org/name' or 'hf-hub:org/name@rev').

        Called on a family's class, the weights must hold that class (a CheckpointError otherwise);
        ``VideoModel.from_pretrained`` takes any model.
        """
        name = str(repo_or_dir)
        if not os.path.exists(name) and not name.startswith(HF_PREFIX) and looks_like_hf_repo(name):
            name = HF_PREFIX + name  # the Hugging Face convention: a bare 'org/name' is a Hub repo
        model = load(name, **kwargs)
        if not isinstance(model, cls):
            raise CheckpointError(
                f"{repo_or_dir}: holds a {model.arch_name} model ({type(model).__name__}), not a {cls.__name__}; "
                f"use {type(model).__name__}.from_pretrained, VideoModel.from_pretrained or hub3d.load"
            )
        return model

    def push_to_hub(self, repo_id: str, **kwargs):
        return _push_to_hub(self, repo_id, **kwargs)


class _Stop(Exception):
    """Ends forward_intermediates' pass once every requested layer has run."""

