#!/usr/bin/env bash
# The GPU checks in one run, for a session that is lent a device machine (docs/performance.md, "GPUs"): the CUDA
# tests, then the engine's clips/s and decode-bound table (benchmarks/bench_inference.py --device cuda).
#
# The device machine is bare and reaches no package registry; its python3 has torch (CUDA), numpy, safetensors,
# huggingface_hub, click, tqdm and pillow, but no PyAV. Before the run, here:
#     pip download "av==18.1.0" --no-deps --only-binary=:all: --python-version 3.12 \
#         --platform manylinux_2_28_x86_64 -d .device          # .device/ is in .git/info/exclude
# then run `bash benchmarks/gpu_run.sh` there with carry [".device"]; the logs and JSON land in $OUT.
# About 5 minutes on an H200 with 16 cores (the video generation is ~1 of them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/hub3d-gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if ! "$PY" -c "import av" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps .device/av-*.whl
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch, av; print('torch', torch.__version__, 'av', av.__version__)" | tee -a "$OUT/gpu.txt"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log" || true
"$PY" benchmarks/bench_inference.py --device cuda --model resnet3d_34 --tag kinetics \
    --precisions fp32,fp16,bf16 --num-workers 1,4,8,12 --size 640x360 --videos 16 --seconds 10 \
    --repeats 3 --compile --compare-fold --video-dir /tmp/hub3d-gpu-videos \
    --out "$OUT/bench_inference_cuda.json" 2>&1 | tee "$OUT/bench_inference_cuda.log"
