"""Refactor guard: every registered model's outputs on seeded weights, through every checkpoint layout.

    python tools/golden_outputs.py --write REF.pt   # at the commit before a refactor
    python tools/golden_outputs.py --check REF.pt   # after it: exit 1 unless every tensor is bit-identical

Per model: the seeded init's state-dict digest, logits and pooled features on a fixed small clip; the same
after a round trip through each original layout (Hara 2018 / 2020, PyTorchVideo's {"model_state": ...}, bare
state dict) and save_pretrained. The clip has the shape of ``model.example_input`` (SlowFast: [slow, fast]);
a model whose head fixes its input size (C3D's fc6) runs at its tag's clip instead of the small one.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from original_layouts import save_bare, save_hara2018, save_hara2020  # noqa: E402

import hub3d  # noqa: E402

PYTORCHVIDEO = ("pytorchvideo_resnet", "x3d")  # families released as {"model_state": state_dict}
HARA_ARCH = {"resnet3d": "resnet", "preact_resnet3d": "preresnet", "wide_resnet3d": "wideresnet",
             "resnext3d": "resnext", "densenet3d": "densenet", "resnet2p1d": "resnet2p1d"}


def digest(state_dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(state_dict[k].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        return {"logits": model(x), "features": feats}


def run(pattern: str = "*") -> dict:
    torch.set_num_threads(1)
    ref = {}
    for name in hub3d.list_models(pattern):
        torch.manual_seed(0)
        model = hub3d.create_model(name, num_classes=7)
        cfg = model.pretrained_cfg
        channels = model.arch_kwargs.get("n_input_channels", 3)
        crop = cfg.crop_size if isinstance(cfg.crop_size, int) else min(cfg.crop_size)
        x = clip_for(model, min(cfg.clip_len, 16), min(crop, 64), channels)
        try:
            out = outputs(model, x)
        except (RuntimeError, ValueError):  # a head that fixes its input size: the tag's own clip
            x = clip_for(model, cfg.clip_len, cfg.crop_size, channels)
            out = outputs(model, x)
        entry = {"digest": digest(model.state_dict()), **out}
        with tempfile.TemporaryDirectory() as tmp:
            family, _, depth = name.rpartition("_")  # 'resnet3d_34'; 'c3d' has no depth
            layouts = {"bare": lambda p, model=model: save_bare(model, p)}
            if family in HARA_ARCH and depth.isdigit():
                arch = f"{HARA_ARCH[family]}-{depth}"
                layouts["hara2018"] = lambda p, model=model, arch=arch: save_hara2018(model, p, arch)
                layouts["hara2020"] = lambda p, model=model, arch=arch: save_hara2020(model, p, arch)
            if hub3d.registry.model_family(name) in PYTORCHVIDEO:
                layouts["pytorchvideo"] = lambda p, model=model: torch.save({"model_state": model.state_dict()}, p)
            for layout, write in layouts.items():
                path = Path(tmp) / f"{layout}.pth"
                write(path)
                loaded = hub3d.load(name, pretrained=str(path), **_kwargs(model))
                entry[layout] = outputs(loaded, x)["logits"]
            model.save_pretrained(Path(tmp) / "saved")
            entry["saved"] = outputs(hub3d.load(str(Path(tmp) / "saved")), x)["logits"]
        ref[name] = entry
        print(name, "ok", flush=True)
    return ref


def clip_for(model, clip_len: int, size, channels: int):
    """Seeded random input shaped as the model takes it: a (2, C, T, H, W) tensor, or a list of them."""
    g = torch.Generator().manual_seed(1)
    example = model.example_input(2, clip_len, size, channels)
    if isinstance(example, (list, tuple)):
        return [torch.randn(p.shape, generator=g) for p in example]
    return torch.randn(example.shape, generator=g)


def _kwargs(model) -> dict:
    # What a checkpoint file cannot say by itself.
    keep = ("conv1_t_stride", "no_max_pool", "growth_rate", "bn_size")
    return {k: v for k, v in model.arch_kwargs.items() if k in keep}


def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write")
    g.add_argument("--check")
    ap.add_argument("--models", default="*", help="Only the models matching this pattern (hub3d.list_models).")
    args = ap.parse_args()
    ref = run(args.models)
    if args.write:
        torch.save(ref, args.write)
        return
    old = torch.load(args.check, weights_only=True)
    bad = []
    for name in sorted(set(old) | set(ref)):
        if name not in ref or name not in old:
            if name in old and args.models == "*":
                bad.append(f"{name}: missing now")
            continue
        for key, value in old[name].items():
            new = ref[name].get(key)
            same = new == value if isinstance(value, str) else (new is not None and torch.equal(new, value))
            if not same:
                bad.append(f"{name}.{key} differs")
    print("\n".join(bad) or f"all {len(set(old) & set(ref))} models compared bit-identical")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
