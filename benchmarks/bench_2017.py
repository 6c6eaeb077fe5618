"""hub3d versus the 2017 tool's method (video-classification-3d-cnn-pytorch), as whole processes and warm.

The 2017 method, written here from its description (not its code): per video, the `ffmpeg` CLI writes every
frame as a JPEG into a temp folder; a DataLoader (the tool's default 4 worker processes) loads each 16-frame
window's JPEGs with PIL, resizes the short side to 112 (bilinear), center-crops 112, subtracts the Kinetics mean
(pixels 0-255); an fp32 eager resnet-34 (shortcut A, 400 classes: hub3d's architecture, which is the original's)
runs batches of 32; windows are the tool's (1-based starts range(1, n - 15, 16)). Its checkpoint is read with
torch.load as the tool did.

hub3d: `hub3d classify VIDEOS --model resnet3d_34 --pretrained CKPT --tail 2017` (the same clips), through the
console-script entry point (the `hub3d` next to sys.executable; PYTHONPATH = this checkout), fp32 and bf16,
from the 2017-format file and from its converted safetensors directory (what a second run would read once
checkpoints given by path are cached).

Both read the same 2017-format checkpoint (seeded random weights saved with tests/original_layouts.py's
save_hara2018 as resnet-34-kinetics.pth, so hub3d picks that release's preprocessing). Speed does not depend on
the weights.

Warm, in one process: decode-only (iter_clips, no model), model-only (precomputed clips through ClipRunner,
batches of 8, the torch threads the engine gives the model), end-to-end (hub3d.classify), fp32 and bf16.

Needs an `ffmpeg` binary: `apt-get install -y ffmpeg`, or `pip install imageio-ffmpeg` (its static build).

    python benchmarks/bench_2017.py --runs 5 --warm-runs 3      # medians; JSON to benchmarks/results/
    python benchmarks/bench_2017.py --runs 1 --warm-runs 1      # quick look
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

KINETICS_MEAN_255 = (114.7748, 107.7354, 99.4750)  # the 2017 tool's mean.get_mean()
CHECKPOINT_NAME = "resnet-34-kinetics.pth"


# ------------------------------------------------------------------------------- the 2017 method, one process
def ffmpeg_binary():
    """The ffmpeg CLI on PATH, else the static build the imageio-ffmpeg wheel ships (pip-installable offline)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def pipeline_2017(checkpoint: str, videos: list[str], batch_size: int, workers: int) -> None:
    """What the 2017 tool does for a list of videos; prints each video's top clip label counts."""
    import numpy as np
    import torch
    from PIL import Image

    import hub3d

    model = hub3d.create_model("resnet3d_34", num_classes=400, shortcut_type="A")
    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # 2017 files have no num_batches_tracked (older torch): the only keys allowed to be missing
    missing, unexpected = model.load_state_dict({k.removeprefix("module."): v for k, v in data["state_dict"].items()},
                                                strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    model.eval()
    mean = torch.tensor(KINETICS_MEAN_255).view(3, 1, 1)

    class Frames(torch.utils.data.Dataset):
        def __init__(self, folder):
            self.folder = folder
            n = len(os.listdir(folder))
            self.starts = list(range(1, n - 16 + 1, 16))

        def __len__(self):
            return len(self.starts)

        def _image(self, i):
            with Image.open(os.path.join(self.folder, f"image_{i:05d}.jpg")) as im:
                im = im.convert("RGB")
            w, h = im.size
            tw, th = (112, int(112 * h / w)) if w <= h else (int(112 * w / h), 112)
            im = im.resize((tw, th), Image.BILINEAR)
            x1, y1 = int(round((tw - 112) / 2.0)), int(round((th - 112) / 2.0))
            im = im.crop((x1, y1, x1 + 112, y1 + 112))
            x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float()
            return x - mean

        def __getitem__(self, k):
            s = self.starts[k]
            return torch.stack([self._image(i) for i in range(s, s + 16)], 0).permute(1, 0, 2, 3)

    for video in videos:
        tmp = tempfile.mkdtemp(prefix="bench2017-")
        try:
            subprocess.run([ffmpeg_binary(), "-loglevel", "quiet", "-i", video, os.path.join(tmp, "image_%05d.jpg")],
                           check=True)
            loader = torch.utils.data.DataLoader(Frames(tmp), batch_size=batch_size, shuffle=False,
                                                 num_workers=workers)
            outputs = []
            with torch.no_grad():
                for x in loader:
                    outputs.append(model(x))
            top = torch.cat(outputs).argmax(1)
            print(f"{video}: {len(top)} clips, most frequent clip top-1 {int(top.mode().values)}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------- helpers
def hub3d_entry() -> list[str]:
    """The console script as users run it (the `hub3d` beside this Python), else `python -m hub3d`."""
    script = Path(sys.executable).with_name("hub3d")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hub3d"]


def checkout_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def time_process(cmd: list[str], runs: int, env: dict) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return times


def write_checkpoint(folder: Path) -> Path:
    import torch

    import hub3d

    sys.path.insert(0, str(ROOT / "tests"))
    from original_layouts import save_hara2018

    torch.manual_seed(0)
    model = hub3d.create_model("resnet3d_34", num_classes=400, shortcut_type="A")
    path = folder / CHECKPOINT_NAME
    save_hara2018(model, path, arch="resnet-34")
    return path


def median(xs):
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------------------------------------ parts
def whole_processes(videos, checkpoint, converted, runs, workers, precisions) -> list[dict]:
    env = checkout_env()
    base = [*hub3d_entry(), "classify", *map(str, videos), "--model", "resnet3d_34", "--tail", "2017", "-q"]
    cases = [
        ("2017 method (ffmpeg JPEGs, PIL, fp32, batch 32)",
         [sys.executable, __file__, "--workers", str(workers), "--pipeline-2017", str(checkpoint), *map(str, videos)]),
        ("hub3d classify fp32 (2017 .pth)", [*base, "--pretrained", str(checkpoint), "--precision", "fp32"]),
        *[("hub3d classify bf16 (2017 .pth)", [*base, "--pretrained", str(checkpoint), "--precision", "bf16"])
          for _ in ("bf16",) if "bf16" in precisions],
        ("hub3d classify fp32 (converted safetensors)",
         [*hub3d_entry(), "classify", *map(str, videos), "--model", str(converted), "--tail", "2017", "-q",
          "--precision", "fp32"]),
    ]
    rows = []
    for name, cmd in cases:
        times = time_process(cmd, runs, env)
        rows.append({"pipeline": name, "median_s": median(times), "min_s": min(times), "runs": len(times),
                     "times_s": [round(t, 3) for t in times]})
        print(f"  {name:48s} median {median(times):7.2f} s  ({', '.join(f'{t:.2f}' for t in times)})", flush=True)
    ref = rows[0]["median_s"]
    for r in rows:
        r["speedup_vs_2017"] = ref / r["median_s"]
    return rows


def warm(videos, checkpoint, runs, precisions) -> list[dict]:
    import torch

    import hub3d
    from hub3d.inference import ClipRunner, cpu_model_threads

    model = hub3d.load("resnet3d_34", pretrained=str(checkpoint))
    clip_kw = dict(tail="2017")
    videos = [str(v) for v in videos]

    def decode():
        return [c.clip for c in hub3d.iter_clips(videos, model, **clip_kw)]

    clips = decode()
    rows = []
    times = []
    torch_threads = torch.get_num_threads()
    for _ in range(runs):
        t = time.perf_counter()
        decode()
        times.append(time.perf_counter() - t)
    decode_s = median(times)
    rows.append({"part": "decode-only (iter_clips, 1 thread)", "precision": "-", "median_s": decode_s,
                 "times_s": [round(t, 3) for t in times], "clips": len(clips)})
    batches = [torch.stack(clips[i:i + 8]) for i in range(0, len(clips), 8)]
    for precision in precisions:
        for fold in (True, False):  # BatchNorm folded into the convolutions (the engine's default), and not
            how = "" if fold else ", BatchNorm not folded"
            runner = ClipRunner(model, "probs", "cpu", precision, fold_bn=fold)
            torch.set_num_threads(cpu_model_threads(torch_threads, 1))  # what the engine gives the model
            try:
                runner(batches[0])  # warm-up (oneDNN primitive creation, folding)
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    for b in batches:
                        runner(b)
                    times.append(time.perf_counter() - t)
            finally:
                torch.set_num_threads(torch_threads)
            model_s = median(times)
            rows.append({"part": f"model-only (ClipRunner, batch 8{how})", "precision": precision,
                         "median_s": model_s, "times_s": [round(t, 3) for t in times], "clips": len(clips)})
            engine = dict(precision=precision, **clip_kw, **({} if fold else {"runner": runner}))
            hub3d.classify(model, videos[-1], **engine)  # warm-up
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                hub3d.classify(model, videos, **engine)
                times.append(time.perf_counter() - t)
            e2e = median(times)
            rows.append({"part": f"end-to-end (hub3d.classify{how})", "precision": precision, "median_s": e2e,
                         "times_s": [round(t, 3) for t in times], "clips": len(clips),
                         "e2e_over_model": e2e / model_s})
            print(f"  {precision}{how}: decode {decode_s:.2f} s, model {model_s:.2f} s, end-to-end {e2e:.2f} s "
                  f"(x{e2e / model_s:.2f} of model-only)", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="whole-process runs per pipeline (median)")
    p.add_argument("--warm-runs", type=int, default=3, help="in-process runs per measurement (median)")
    p.add_argument("--workers", type=int, default=4, help="the 2017 DataLoader's worker processes (its default 4)")
    p.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    p.add_argument("--precisions", default="fp32,bf16",
                   help="hub3d's precisions (bf16 without native support is dozens of times slower: fp32 only there)")
    p.add_argument("--skip-process", action="store_true")
    p.add_argument("--skip-warm", action="store_true")
    p.add_argument("--out", default=str(HERE / "results" / "bench_2017.json"))
    p.add_argument("--pipeline-2017", nargs="+", metavar=("CHECKPOINT", "VIDEO"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pipeline_2017:
        return pipeline_2017(args.pipeline_2017[0], args.pipeline_2017[1:], args.batch_size, args.workers)

    from _samples import machine, markdown_table, sample_videos, write_json

    if ffmpeg_binary() is None:
        sys.exit("the 2017 method needs an ffmpeg binary: apt-get install -y ffmpeg, or pip install imageio-ffmpeg")
    videos = sample_videos()
    result = {"machine": machine(), "videos": [str(v) for v in videos]}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp))
        from hub3d.loader import convert

        converted = Path(tmp) / "resnet3d_34-converted"
        convert(checkpoint, converted, model_name="resnet3d_34")
        if not args.skip_process:
            print("whole processes:", flush=True)
            result["processes"] = whole_processes(videos, checkpoint, converted, args.runs, args.workers,
                                                  args.precisions.split(","))
        if not args.skip_warm:
            print("warm, in one process:", flush=True)
            result["warm"] = warm(videos, checkpoint, args.warm_runs, args.precisions.split(","))
    result["machine_after"] = machine()["loadavg"]
    for key in ("processes", "warm"):
        if key in result:
            print()
            print(markdown_table([{k: v for k, v in r.items() if k != "times_s"} for r in result[key]]))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
