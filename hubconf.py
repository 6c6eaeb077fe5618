"""torch.hub entry points: one per hub3d model and one per weight tag, each a thin call to hub3d.load.

    model = torch.hub.load("<owner>/hub3d", "resnet3d_34", pretrained="kinetics")
    model = torch.hub.load("<owner>/hub3d", "resnet3d_34.kinetics400")    # the names hub3d.list_pretrained() prints
    torch.hub.list("<owner>/hub3d"); print(torch.hub.help("<owner>/hub3d", "resnet3d_34"))

Arguments are hub3d.load's: pretrained=None (random) | True | a tag | a file path, num_classes=..., and
architecture overrides. A 'model.tag' entry loads that tag's weights.
"""
import hub3d as _hub3d
from hub3d.registry import _entrypoints as _registered

dependencies = ["torch", "safetensors", "huggingface_hub"]


def _entry_point(name, tag=None):
    def entry_point(pretrained=None, **kwargs):
        return _hub3d.load(name if tag is None else f"{name}.{tag}", pretrained=pretrained, **kwargs)

    summary = (_registered[name].__doc__ or name).strip().splitlines()[0].rstrip(".")
    tags = _hub3d.list_tags(name)
    if tag is not None:
        weights = f"weights {tag}"
    else:
        weights = f"pretrained= {' | '.join(tags)}" if tags else "no released weights"
    entry_point.__name__ = entry_point.__qualname__ = name if tag is None else f"{name}.{tag}"
    entry_point.__module__ = __name__
    entry_point.__doc__ = f"{summary}; {weights}."
    return entry_point


for _name in _hub3d.list_models():
    globals()[_name] = _entry_point(_name)
    for _tag in _hub3d.list_tags(_name):
        globals()[f"{_name}.{_tag}"] = _entry_point(_name, _tag)  # torch.hub looks entries up by getattr
del _name, _tag
