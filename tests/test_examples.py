"""The examples and the README's main job run as written."""
import os
import subprocess
import sys
from pathlib import Path

import torch

import hub3d
from original_layouts import save_hara2018

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_load_original_checkpoint_example(tmp_path):
    torch.manual_seed(0)
    save_hara2018(hub3d.create_model("resnet3d_18", shortcut_type="A"), tmp_path / "resnet-18-kinetics.pth",
                  arch="resnet-18")
    out = run(ROOT / "examples" / "load_original_checkpoint.py", tmp_path / "resnet-18-kinetics.pth",
              tmp_path / "converted")
    assert out.returncode == 0, out.stderr
    assert "resnet3d_18" in out.stdout and "tag kinetics400" in out.stdout and "value scale 255.0" in out.stdout
    assert "identical outputs: True" in out.stdout
    assert (tmp_path / "converted" / "model.safetensors").exists()


def test_quickstart_example_classifies_the_generated_video():
    out = run(ROOT / "examples" / "quickstart.py")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    first_label = lines[lines.index(next(l for l in lines if l.startswith("video:"))) + 1].split()[0]
    assert first_label == "fade_in"
    assert "features (3, " in out.stdout


def test_readme_main_job_runs_offline():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0 -e . && hub3d demo" in readme
    out = subprocess.run([sys.executable, "-m", "hub3d", "demo", "--seed", "3"], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HUB3D_OFFLINE": "1"}, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "(right)" in out.stdout and "RANDOM" not in out.stderr


def test_finetune_example_trains_a_new_classifier():
    out = run(ROOT / "examples" / "finetune.py")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['move_down', 'move_left', 'move_right', 'move_up']"
    assert "'val_video_acc1'" in out.stdout
