#!/usr/bin/env bash
# Stage 1 of the chair model, larger, on an NVIDIA GPU (as run on the lent H100 machine;
# docs/models/chair.md, 'Training', has the numbers). Continues the stage-1 keypoint net of
# the CPU recipe (runs/kp4_refine/model.pt) on 60,000 newly rendered images:
#   1. renders them (seed 101, no voxels; one worker per CPU) unless DATA exists;
#   2. keypoints: 30000 steps x 64 crops, lr 5e-4, validation on the last 300 images;
#      batches are made by CPU worker processes, the network trains on the GPU.
# Stage 3 then ran on the 2-core CPU machine (the command is in the model card).
#   bash scripts/train_chair_gpu.sh [OUT=runs/gpu]     (DATA=... to use other images)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu}
DATA=${DATA:-datasets/chair_train_gpu}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cpus=$(nproc)
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[$(date -u +%H:%M:%S)] $* ($(( $(date +%s) - start )) s)"; }
if [ ! -f "$DATA/manifest.json" ]; then
    stamp "rendering 60000 images with $cpus workers"
    $PY -m training.synthesize images --count 60000 --seed 101 --no-voxels \
        --workers "$cpus" --out "$DATA" > "$OUT/synthesize.log" 2>&1
fi
workers=$(( cpus > 4 ? cpus - 2 : 2 ))
stamp "stage 1 on the GPU ($workers batch workers)"
OMP_NUM_THREADS=1 $PY -m training.train keypoints --data "$DATA" --out "$OUT/keypoints" \
    --init runs/kp4_refine/model.pt --steps 30000 --batch 64 --lr 5e-4 --eval-every 5000 \
    --val-size 300 --device cuda --workers "$workers" > "$OUT/keypoints.log" 2>&1
stamp "done: $OUT/keypoints/model.pt"
