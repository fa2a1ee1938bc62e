#!/usr/bin/env bash
# The inference engines on an NVIDIA GPU: the CUDA tests (test/test_inference_cuda.py, engines
# against the CPU engine) and the per-stage pipeline benchmark with --device cuda.
#
#   bash bench/gpu_check.sh [OUT_DIR]        (default bench/results)
#
# Needs python3 with torch (CUDA build), numpy, scipy, opencv, onnx, onnxruntime, tqdm and
# pytest; ONNX Runtime's CUDA provider is checked when the onnxruntime on PYTHONPATH is
# onnxruntime-gpu. No ROS. docs/inference.md ('Running on a GPU') says how it was run on the
# lent GPU machine and what it printed.
set -uo pipefail
out=${1:-bench/results}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 - <<'PY'
import sys

import numpy
import onnxruntime
import torch

print(f'python {sys.version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__} '
      f'(CUDA {torch.version.cuda}, available {torch.cuda.is_available()}), onnxruntime '
      f'{onnxruntime.__version__} {onnxruntime.get_available_providers()}')
PY
python3 -m pytest -q -rs -p no:cacheprovider test/test_inference_cuda.py \
    test/test_inference_engines.py 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
backends=torch
if python3 -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in
                o.get_available_providers())'; then
    backends='onnxruntime torch'
fi
scene=$(mktemp -d)
python3 -m training.synthesize images --count 8 --seed 4 --no-voxels --out "$scene/scene" \
    > /dev/null 2>&1
python3 bench/bench_pipeline.py --device cuda --backends $backends --objects 1 4 8 \
    --frames 100 --scene "$scene/scene" --out "$out"
bench=$?
rm -rf "$scene"
exit $((tests || bench))
