"""Family: what hub3d needs to know about a family of architectures beyond building them.

A family module (hub3d/models/<family>.py) defines its models and one ``Family``, and registers each model
with ``@register_model(pretrained={...}, family=FAMILY)``. The loader then never needs family-specific code:

    FAMILY = Family(
        "densenet3d",                               # shown by hub3d.model_info / `hub3d zoo`
        arch_names={"densenet": "densenet3d"},      # original checkpoint 'arch' prefix -> hub3d model prefix
        remap_state_dict=remap_state_dict,          # fn(sd) -> sd: foreign key layouts -> ours, told from content
        infer_arch_kwargs=infer_arch_kwargs,        # fn(sd) -> dict: num_classes, n_input_channels, ... the
                                                    #   tensors determine (merged over the tag's arch_kwargs)
        detect=detect,                              # fn(sd) -> bool: is this (remapped) state dict one of ours
        load_hint=load_hint,                        # optional fn(missing + unexpected keys) -> str for errors
    )

An original 'arch' string "<prefix>-<depth>" (3D-ResNets-PyTorch saves 'resnet-34') names the hub3d model
"<arch_names[prefix]>_<depth>". Stage names for fine-tuning are the model's ``stage_names`` (+ ``stage_aliases``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional


def _identity(state_dict: dict) -> dict:
    return state_dict


def _nothing(state_dict: dict) -> dict:
    return {}


def _no_hint(keys: list) -> str:
    return ""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per family
class Family:
    name: str
    arch_names: dict = field(default_factory=dict)
    remap_state_dict: Callable[[dict], dict] = _identity
    infer_arch_kwargs: Callable[[dict], dict] = _nothing
    detect: Callable[[dict], bool] = lambda state_dict: False
    load_hint: Callable[[list], str] = _no_hint

    def model_for_arch(self, arch: str) -> Optional[str]:
        """The hub3d model an original 'arch' string ('resnet-34') names, or None if not this family's."""
        prefix, _, depth = arch.rpartition("-")
        if prefix in self.arch_names and depth.isdigit():
            return f"{self.arch_names[prefix]}_{depth}"
        return None


def classifier_classes(state_dict: dict, key: str) -> dict:
    """{'num_classes': rows of the classifier weight} when the state dict has one."""
    weight = state_dict.get(key)
    return {} if weight is None else {"num_classes": weight.shape[0]}
