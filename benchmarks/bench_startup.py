"""Start-up: how long `hub3d --help`, `hub3d list`, `hub3d info` take next to `python -c "import torch"`, what
each imports, and what reading a resnet3d_34 checkpoint costs in each format.

1. Commands (medians of --runs whole processes; the console script next to sys.executable, PYTHONPATH = this
   checkout): python -c "import torch", python -c "import hub3d", hub3d --help, hub3d list, hub3d info resnet3d_34.
2. Imports of each: which heavy or optional modules end up in sys.modules (av, huggingface_hub, click,
   safetensors, PIL, tqdm, hub3d's video/inference/hub modules, ...), the module count, and the slowest
   top-level imports by `python -X importtime` (cumulative).
3. Reading the weights of resnet3d_34 (seeded, 400 classes, shortcut A; files warm in the page cache, medians of
   --read-runs): the 2017 layout (tests/original_layouts.py save_hara2018: legacy pickle, CUDA-tagged storages)
   through torch.load(weights_only=True) and through hub3d.checkpoint.read_checkpoint; the same tensors as
   safetensors through safetensors.torch.load_file and through safe_open (mmap, tensor by tensor); and
   load_state_dict into a model from the mmapped tensors; and the sha256 of the .pth, what keying a conversion
   cache by content costs on every run unless the hash is remembered per (path, size, mtime).
4. Preparing resnet3d_34 to run (--parts preparing; medians of --read-runs): ClipRunner + prepare on a zero clip,
   fp32 and bf16, a fresh copy of the model each time: finding the conv -> BatchNorm pairs, writing the folded
   copy (in its dtype and channels_last_3d layout). The engine overlaps it with decoding the first batch.

    python benchmarks/bench_startup.py --runs 10 --read-runs 5     # JSON to benchmarks/results/
"""
from __future__ import annotations

import argparse
import json
import re
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

from bench_2017 import checkout_env, hub3d_entry, time_process  # noqa: E402

WATCHED = ("torch", "numpy", "click", "av", "huggingface_hub", "safetensors", "PIL", "tqdm", "torchvision",
           "sympy", "torch._dynamo", "torch.utils.flop_counter",
           "requests", "httpx", "hub3d.video", "hub3d.inference", "hub3d.hub", "hub3d.loader", "hub3d.checkpoint",
           "hub3d.train", "hub3d.data", "hub3d.cli.predict", "hub3d.cli.train", "hub3d.cli.hub")

# What each command runs, as code a plain `python -c` can run in-process (to list its modules).
COMMANDS = {
    'python -c "import torch"': (None, "import torch"),
    'python -c "import hub3d"': (None, "import hub3d"),
    "hub3d --help": (["--help"], None),
    "hub3d list": (["list"], None),
    "hub3d info resnet3d_34": (["info", "resnet3d_34"], None),
}


def as_code(cli_args, code) -> str:
    if code is not None:
        return code
    return (f"import sys; sys.argv = ['hub3d'] + {cli_args!r}\nfrom hub3d.cli import main\n"
            "try:\n    main(standalone_mode=False)\nexcept SystemExit:\n    pass\n")


def modules_of(code: str, env) -> dict:
    probe = code + (f"\nimport sys, json\nw = {WATCHED!r}\n"
                    "print('@@' + json.dumps({'modules': len(sys.modules), "
                    "'imported': [m for m in w if m in sys.modules]}))")
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    line = next((l for l in r.stdout.splitlines() if l.startswith("@@")), None)
    if line is None:
        raise RuntimeError(f"probe failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(line[2:])


def slowest_imports(code: str, env, top: int = 6) -> list[tuple[str, float]]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if m and not m.group(3):  # top-level imports only (no indentation)
            rows.append((m.group(4), int(m.group(2)) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def commands(runs: int, names) -> list[dict]:
    env = checkout_env()
    rows = []
    for name in names:
        cli_args, code = COMMANDS[name]
        cmd = [*hub3d_entry(), *cli_args] if cli_args is not None else [sys.executable, "-c", code]
        time_process(cmd, 1, env)  # warm the page cache
        times = time_process(cmd, runs, env)
        mods = modules_of(as_code(cli_args, code), env)
        slow = slowest_imports(as_code(cli_args, code), env)
        rows.append({"command": name, "median_s": statistics.median(times), "min_s": min(times),
                     "modules": mods["modules"], "imports": " ".join(m for m in mods["imported"]),
                     "slowest_imports": ", ".join(f"{m} {t:.2f}s" for m, t in slow),
                     "times_s": [round(t, 3) for t in times]})
        print(f"  {name:28s} median {rows[-1]['median_s']:.3f} s  modules {mods['modules']}  "
              f"imports: {rows[-1]['imports']}", flush=True)
    ref = rows[0]["median_s"]
    for r in rows:
        r[f"over_{rows[0]['command']}_s"] = r["median_s"] - ref
    return rows


def reading(runs: int) -> list[dict]:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import hub3d
    from hub3d.checkpoint import read_checkpoint

    sys.path.insert(0, str(ROOT / "tests"))
    from original_layouts import save_hara2018

    torch.manual_seed(0)
    model = hub3d.create_model("resnet3d_34", num_classes=400, shortcut_type="A")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / "resnet-34-kinetics.pth"
        st = Path(tmp) / "model.safetensors"
        save_hara2018(model, pth, arch="resnet-34")
        save_file(sd, str(st))

        def mmap_open():
            with safe_open(str(st), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}

        def mmap_and_load():
            model.load_state_dict(mmap_open())

        def mmap_and_assign():  # no copy: the model is built on "meta" and takes the mmapped tensors as they are
            with torch.device("meta"):
                empty = hub3d.create_model("resnet3d_34", num_classes=400, shortcut_type="A")
            empty.load_state_dict(mmap_open(), assign=True)

        def sha256():
            import hashlib

            h = hashlib.sha256()
            with open(pth, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()

        import os

        from hub3d.loader import _load_checkpoint

        os.environ["HUB3D_HOME"] = str(Path(tmp) / "cache")  # the conversion cache of this run only

        def load_uncached():  # what hub3d.load(name, pretrained=FILE) did before the conversion cache
            return _load_checkpoint(read_checkpoint(pth), "resnet3d_34", None, None, {})

        def load_cached():  # now: sha256 remembered, the converted safetensors mmapped into a meta-built model
            return hub3d.load("resnet3d_34", pretrained=pth)

        cases = [
            ("hub3d.load(resnet3d_34, pretrained=.pth) before: unpickle + init + copy", pth, load_uncached),
            ("hub3d.load(resnet3d_34, pretrained=.pth) now: conversion cached", pth, load_cached),
            ("2017 .pth: sha256 of the file (a content-hash key)", pth, sha256),
            ("2017 .pth: torch.load(weights_only=True)", pth, lambda: torch.load(pth, map_location="cpu",
                                                                                 weights_only=True)),
            ("2017 .pth: hub3d read_checkpoint", pth, lambda: read_checkpoint(pth)),
            ("safetensors: load_file", st, lambda: load_file(str(st))),
            ("safetensors: safe_open (mmap)", st, mmap_open),
            ("safetensors: safe_open + load_state_dict", st, mmap_and_load),
            ("safetensors: safe_open + meta model + load_state_dict(assign=True)", st, mmap_and_assign),
        ]
        for name, path, fn in cases:
            fn()  # page cache and first-call costs
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            rows.append({"read": name, "MB": round(path.stat().st_size / 1e6, 1),
                         "median_s": statistics.median(times), "min_s": min(times)})
            print(f"  {name:72s} {rows[-1]['MB']:6.1f} MB  median {rows[-1]['median_s']:.3f} s", flush=True)
    ref = next(r["median_s"] for r in rows if r["read"].startswith("2017 .pth: torch.load"))
    for r in rows:
        r["fraction_of_torch_load"] = r["median_s"] / ref
    return rows


def preparing(runs: int) -> list[dict]:
    import copy

    import torch

    import hub3d
    from hub3d import inference

    torch.manual_seed(0)
    model = hub3d.create_model("resnet3d_34", num_classes=400)
    example = torch.zeros(1, 3, 16, 112, 112)
    rows = []
    for precision in ("fp32", "bf16"):
        times = []
        for _ in range(runs + 1):  # the first run pays first-call costs
            fresh = copy.deepcopy(model)
            t = time.perf_counter()
            inference.ClipRunner(fresh, "probs", "cpu", precision).prepare(example)
            times.append(time.perf_counter() - t)
        rows.append({"prepare": f"resnet3d_34 {precision}: ClipRunner + prepare",
                     "median_s": statistics.median(times[1:]), "min_s": min(times[1:])})
        print(f"  {rows[-1]['prepare']:44s} median {rows[-1]['median_s']:.3f} s", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--read-runs", type=int, default=5)
    p.add_argument("--parts", default="commands,reading")
    p.add_argument("--commands", default=",".join(COMMANDS), help="which commands (comma-separated names)")
    p.add_argument("--out", default=str(HERE / "results" / "bench_startup.json"))
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    from _samples import machine, markdown_table, write_json

    result = {"machine": machine()}
    if "commands" in parts:
        print("commands:", flush=True)
        result["commands"] = commands(args.runs, args.commands.split(","))
    if "reading" in parts:
        print("reading resnet3d_34 weights:", flush=True)
        result["reading"] = reading(args.read_runs)
    if "preparing" in parts:
        print("preparing resnet3d_34 to run:", flush=True)
        result["preparing"] = preparing(args.read_runs)
    result["machine_after"] = machine()["loadavg"]
    if "commands" in result:
        print()
        print(markdown_table([{k: v for k, v in r.items() if k not in ("times_s", "slowest_imports")}
                              for r in result["commands"]]))
        print()
        print(markdown_table([{"command": r["command"], "slowest top-level imports": r["slowest_imports"]}
                              for r in result["commands"]]))
    if "reading" in result:
        print()
        print(markdown_table(result["reading"]))
    if "preparing" in result:
        print()
        print(markdown_table(result["preparing"]))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
