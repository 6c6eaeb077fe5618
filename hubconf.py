"""torch.hub entry points: one per hub3d model, each a thin call to hub3d.load.

    model = torch.hub.load("<owner>/hub3d", "resnet3d_34", pretrained="kinetics")
    torch.hub.list("<owner>/hub3d"); print(torch.hub.help("<owner>/hub3d", "resnet3d_34"))

Arguments are hub3d.load's: pretrained=None (random) | True | a tag | a file path, num_classes=..., and
architecture overrides.
"""
import hub3d as _hub3d
from hub3d.registry import _entrypoints as _registered

dependencies = ["torch", "safetensors", "huggingface_hub"]


def _entry_point(name):
    def entry_point(pretrained=None, **kwargs):
        return _hub3d.load(name, pretrained=pretrained, **kwargs)

    summary = (_registered[name].__doc__ or name).strip().splitlines()[0].rstrip(".")
    tags = _hub3d.list_tags(name)
    weights = f"pretrained= {' | '.join(tags)}" if tags else "no released weights"
    entry_point.__name__ = entry_point.__qualname__ = name
    entry_point.__module__ = __name__
    entry_point.__doc__ = f"{summary}; {weights}."
    return entry_point


for _name in _hub3d.list_models():
    globals()[_name] = _entry_point(_name)
del _name
