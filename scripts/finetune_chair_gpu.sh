#!/usr/bin/env bash
# Stage 3 of the chair model, larger, on an NVIDIA GPU: continues a finished chair model
# (INIT, default: the packaged one) end to end with the shape loss on newly rendered images.
#   1. renders COUNT images (seed SEED, no voxels; one worker per CPU) unless DATA exists;
#   2. times a short probe run, then picks the step count that fills BUDGET_S seconds at
#      that rate (or takes STEPS as given);
#   3. finetune: STEPS x BATCH crops with v7's loss weights, batches made by CPU workers.
# docs/models/chair.md ('Training') has the run and its numbers.
#   bash scripts/finetune_chair_gpu.sh [OUT=runs/gpu_ft]
#   env: INIT, DATA, COUNT (40000), SEED (102), BATCH (64), LR (3e-4), BUDGET_S (400), STEPS,
#        PROBE (400 steps), DEVICE (cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_ft}
INIT=${INIT:-perception_3dinn/data/models/chair/model.pt}
DATA=${DATA:-datasets/chair_train_gpu_ft}
COUNT=${COUNT:-40000}
SEED=${SEED:-102}
BATCH=${BATCH:-64}
LR=${LR:-3e-4}
BUDGET_S=${BUDGET_S:-400}
PROBE=${PROBE:-400}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
cpus=$(nproc)   # before OMP_NUM_THREADS, which nproc obeys
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
workers=$(( cpus > 4 ? cpus - 2 : 2 ))
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[$(date -u +%H:%M:%S)] $* ($(( $(date +%s) - start )) s)"; }
if [ ! -f "$DATA/manifest.json" ]; then
    stamp "rendering $COUNT images with $cpus workers"
    $PY -m training.synthesize images --count "$COUNT" --seed "$SEED" --no-voxels \
        --workers "$cpus" --out "$DATA" > "$OUT/synthesize.log" 2>&1
fi
ft() {  # ft OUT STEPS: the finetune command of this script
    $PY -m training.train finetune --keypoints "$INIT" --interpreter "$INIT" --data "$DATA" \
        --out "$1" --steps "$2" --batch "$BATCH" --synthetic-batch "$BATCH" --lr "$LR" \
        --w-2d 20 --w-structure 40 --w-synthetic 0.3 --device "$DEVICE" --workers "$workers" \
        --eval-every 2000 --log-every 20
}
if [ -z "${STEPS:-}" ]; then
    stamp "probe: $PROBE steps"
    ft "$OUT/probe" "$PROBE" > "$OUT/probe.log" 2>&1
    rate=$($PY - "$OUT/probe/log.jsonl" <<'EOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if '"train"' in x]
a, b = rows[min(len(rows) // 2, len(rows) - 2)], rows[-1]   # the second half: workers running, GPU warm
print((b['step'] - a['step']) / (b['time_s'] - a['time_s']))
EOF
)
    STEPS=$($PY -c "print(max(500, int(float('$rate') * $BUDGET_S / 500) * 500))")
    stamp "probe ran $rate steps/s: $STEPS steps for $BUDGET_S s"
fi
stamp "stage 3 on $DEVICE: $STEPS x $BATCH, $workers batch workers"
ft "$OUT" "$STEPS" > "$OUT/finetune.log" 2>&1
stamp "done: $OUT/model.pt"
