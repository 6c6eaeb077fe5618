"""Write weights/index.json and weights/cards/{model}.{tag}.md from the runtime registry (the one truth).

Run after adding or changing a tag:  python weights/generate.py
tests/test_hub.py regenerates in memory and fails when these files are out of date.

index.json holds, per tag, its provenance: the original file and where it lives, the Hub repo hub3d publishes
it under, the sha256 of the original (a prefix for torchvision's files, from their names) and of the converted
model.safetensors (measured for bundled weights, else null until someone converts and publishes it: hashes hub3d
has not computed from a real file are never invented), licence, reported metrics, and whether the label order is verified. Hashes measured on the
real files go into weights/hashes.json ({"model.tag": {"sha256_original": ..., "sha256_converted": ...}}), which
this script merges in. weights/motion_demo/ belongs to the training engineer and is left alone.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import hub3d  # noqa: E402
from hub3d import publish  # noqa: E402
from hub3d import sources as weight_sources  # noqa: E402
from hub3d.registry import get_pretrained_cfg, list_tags  # noqa: E402


def known_hashes() -> dict:
    path = HERE / "hashes.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def entry(name: str, tag: str, hashes: dict) -> dict:
    cfg = get_pretrained_cfg(name, tag)
    key = weight_sources.weights_key(name, tag)
    known = dict(hashes.get(key, {}))
    bundled = weight_sources.bundled_dir(name, tag)
    if weight_sources.is_hub3d_dir(bundled):  # the file is here: measure it
        known["sha256_converted"] = weight_sources.sha256_file(bundled / "model.safetensors")
    sources = []
    if cfg.release == "bundled":
        sources.append("bundled")
    sources.append("hf-hub")
    if cfg.url:
        sources.append("url")
    if cfg.drive_folder:
        sources.append("google-drive (manual: hub3d convert)")
    return {
        "model": name,
        "tag": tag,
        "default": tag == list_tags(name)[0],
        "hf_hub_id": weight_sources.hf_repo_id(name, cfg),
        "sources": sources,
        "original_file": weight_sources.original_file_name(cfg),
        "url": cfg.url,
        "drive_folder": cfg.drive_folder,
        "release": cfg.release,
        "sha256_original": known.get("sha256_original") or cfg.sha256,
        "sha256_original_is_prefix": bool(cfg.sha256) and len(cfg.sha256) < 64 and not known.get("sha256_original"),
        "sha256_converted": known.get("sha256_converted"),
        "num_classes": cfg.num_classes,
        "labels": cfg.labels,
        "labels_verified": cfg.labels_verified,
        "dataset": cfg.dataset,
        "metrics": cfg.metrics,
        "license": cfg.license,
        "paper": cfg.paper,
        "arch_kwargs": cfg.arch_kwargs,
        "preprocessing": {
            "value_scale": cfg.value_scale, "mean": list(cfg.mean), "std": list(cfg.std),
            "resize": list(cfg.resize) if isinstance(cfg.resize, tuple) else cfg.resize,
            "crop_size": cfg.crop_size, "clip_len": cfg.clip_len,
        },
        "notes": cfg.notes,
    }


def render() -> dict[str, str]:
    """Every generated file, relative to weights/, with its exact text."""
    hashes = known_hashes()
    entries = [entry(name, tag, hashes) for name in hub3d.list_models(pretrained=True) for tag in list_tags(name)]
    out = {"index.json": json.dumps({"hub3d_version": hub3d.__version__, "weights": entries}, indent=2) + "\n"}
    for e in entries:
        cfg = get_pretrained_cfg(e["model"], e["tag"])
        card = publish.card_for_cfg(e["model"], cfg, repo_id=e["hf_hub_id"])
        status = (
            "\n## Status\n\n"
            f"- sources, in order: {', '.join(e['sources'])}\n"
            f"- sha256 of the original: {e['sha256_original'] or 'unknown (not yet measured on the release file)'}"
            + (" (prefix)" if e["sha256_original_is_prefix"] else "") + "\n"
            f"- sha256 of the converted model.safetensors: {e['sha256_converted'] or 'unknown (not yet published)'}\n"
        )
        out[f"cards/{e['model']}.{e['tag']}.md"] = card + status
    return out


def main() -> None:
    from hub3d.io import write_text

    files = render()
    for rel, text in files.items():
        write_text(HERE / rel, text)
    for stale in (HERE / "cards").glob("*.md"):
        if f"cards/{stale.name}" not in files:
            stale.unlink()
    print(f"wrote {len(files)} files under {HERE}")


if __name__ == "__main__":
    main()
