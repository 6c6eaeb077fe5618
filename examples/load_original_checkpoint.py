"""Load an original checkpoint of the 3D-ResNets-PyTorch releases, convert it, and reload the converted copy.

    python examples/load_original_checkpoint.py resnet-34-kinetics.pth [OUT_DIR]

Any layout works: the CVPR 2018 release (legacy pickle, 'module.' keys, CUDA tensors), the 2020 release,
torchvision's state dicts. What the file determines (classes, shortcut type, stem) is read from it; the
preprocessing and labels come from the weight tag whose release file name matches.
"""
import sys

import torch

import hub3d

path = sys.argv[1]
out_dir = sys.argv[2] if len(sys.argv) > 2 else "converted"

model = hub3d.load(path)  # the file's own 'arch' names the architecture; else hub3d.load(NAME, pretrained=path)
cfg = model.pretrained_cfg
print(f"{model.arch_name} {model.arch_kwargs}")
print(f"tag {cfg.tag}: value scale {cfg.value_scale}, mean {cfg.mean}, std {cfg.std}, {cfg.clip_len} frames")

hub3d.convert(path, out_dir, model_name=model.arch_name)  # model.safetensors + config.json
reloaded = hub3d.load(out_dir)
x = torch.randn(1, 3, cfg.clip_len, cfg.crop_size, cfg.crop_size)
with torch.no_grad():
    same = torch.equal(model.eval()(x), reloaded.eval()(x))
print(f"converted into {out_dir}; identical outputs: {same}")
