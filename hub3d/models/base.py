"""The contract every hub3d model keeps, whatever its family."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn


class VideoModel(nn.Module):
    """Base of every architecture: (B, C, T, H, W) float clips in, logits out.

    Subclasses build their layers under their original parameter names (so original state dicts load as they
    are), set ``num_features`` and name their classifier in ``classifier_name``, and implement
    ``forward_features``. The pooled vector is a global average over T, H and W, so any input size that survives
    the strides works.
    """

    num_features: int
    classifier_name = "fc"
    # Set by hub3d.registry.create_model: how to rebuild this exact model.
    arch_name: str
    arch_kwargs: dict
    labels: list

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
        return getattr(self, self.classifier_name)

    @property
    def num_classes(self) -> int:
        return getattr(self.get_classifier(), "out_features", 0)

    def reset_classifier(self, num_classes: int, labels: Optional[Sequence[str]] = None) -> None:
        """Replace the classifier with a fresh one for num_classes (0: no classifier, forward gives features)."""
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels given for {num_classes} classes")
        old_params = list(self.get_classifier().parameters())
        device = next(self.parameters()).device
        if num_classes > 0:
            fc = self.new_classifier(num_classes).to(device)
            if old_params:
                fc.to(old_params[0].dtype)
        else:
            fc = nn.Identity()
        setattr(self, self.classifier_name, fc)
        if hasattr(self, "arch_kwargs"):
            self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}
        if hasattr(self, "pretrained_cfg"):
            self.pretrained_cfg = self.pretrained_cfg.replace(
                num_classes=num_classes, labels=None, labels_verified=labels is not None
            )
        self.labels = list(labels) if labels is not None else [f"class_{i}" for i in range(num_classes)]

    def new_classifier(self, num_classes: int) -> nn.Module:
        """A fresh classifier for num_classes; families whose original classifier is no nn.Linear override this
        (its parameter names must stay the original's, so that saved models load back)."""
        return nn.Linear(self.num_features, num_classes)

    # Stages in forward order, for fine-tuning "from a stage on"; the first one stands for the whole stem
    # (every module not under a later stage). Families override where names differ.
    stage_names: Sequence[str] = ("stem", "layer1", "layer2", "layer3", "layer4")

    def freeze_until(self, stage: str) -> None:
        """Freeze every parameter before ``stage``: ``stage``, the stages after it and the classifier train.

        ``stage`` is one of ``stage_names`` ("layer4" = conv5_x, as in the CVPR 2018 fine-tuning) or "all".
        BatchNorm layers of frozen stages keep their running statistics: ``train()`` leaves them in eval mode.
        """
        names = list(self.stage_names)
        if stage != "all" and stage not in names:
            raise ValueError(f"unknown stage {stage!r}; choose from {names} or 'all'")
        first = 0 if stage == "all" else names.index(stage)
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

    # Publishing (hub3d format: model.safetensors + config.json).
    def save_pretrained(self, save_directory, **kwargs):
        from ..checkpoint import save_pretrained

        return save_pretrained(self, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, repo_or_dir, **kwargs):
        from ..loader import load

        return load(str(repo_or_dir), **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        from ..hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
