"""The examples and the README's main job run as written."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from original_layouts import save_hara2018

import hub3d

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


def readme_quick_start() -> list[str]:
    """The code lines of the README's quick start block before its Hub and original-file examples (the part
    that runs offline)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    return block.split('model = hub3d.load("hf-hub:', 1)[0].splitlines()


def test_readme_quick_start_runs_as_written(tmp_path, make_video):
    """The quick start, unchanged, with resnet3d_34's kinetics400 weights replaced in the cache by a tiny
    stand-in (same tag, 1/8 width), so it runs offline; the README's shapes and types hold."""
    lines = readme_quick_start()
    assert any("extract_features" in line and ".features" not in line for line in lines)
    home = tmp_path / "home"
    torch.manual_seed(0)
    tiny = hub3d.create_model("resnet3d_34", pretrained_cfg=hub3d.get_pretrained_cfg("resnet3d_34", "kinetics400"),
                              widen_factor=0.125)
    hub3d.save_pretrained(tiny, home / "resnet3d_34.kinetics400")
    make_video(num_frames=40, height=64, width=80, name="video.mp4")
    code = "\n".join(lines) + (
        "\nassert isinstance(result, hub3d.inference.VideoResult) and len(result.topk) == 5"
        "\nassert isinstance(feats, hub3d.inference.FeatureResult)"
        "\nassert feats.features.shape == (feats.n_clips, model.num_features)"
        "\nprint('OK')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**os.environ, "HUB3D_HOME": str(home), "HF_HUB_OFFLINE": "1", "HUB3D_OFFLINE": "1",
                              "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("OK")
    assert ", 64)" in out.stdout  # the printed features shape: (n_clips, num_features)
