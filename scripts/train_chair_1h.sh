#!/usr/bin/env bash
# The three training stages of the chair model in about one hour of this 2-core machine:
# stage 1 (keypoints, 1 thread) and stage 2 (interpreter, 1 thread) side by side; once stage 2
# is done, stage 1 resumes on 2 threads (the same run: --resume is exact); then stage 3
# (fine-tuning with the shape loss, 2 threads), then the selection-set evaluation.
# Needs datasets/chair_train_128 and datasets/chair_sel_128 (docs/models/chair.md).
#   bash scripts/train_chair_1h.sh [OUT=runs/one_hour]
set -eo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh >/dev/null  # (colcon's setup scripts read unset variables: before set -u)
set -u
OUT=${1:-runs/one_hour}
DATA=datasets/chair_train_128
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[$(date -u +%H:%M:%S)] $* ($(( ($(date +%s) - start) / 60 )) min)"; }
stamp 'stages 1 and 2, side by side'
kp_args=(keypoints --data "$DATA" --out "$OUT/keypoints" --steps 16000 --batch 32
         --eval-every 2000 --val-size 300)
python -m training.train "${kp_args[@]}" --threads 1 --stop-after 6000 \
    > "$OUT/keypoints.log" 2>&1 &
kp=$!
python -m training.train interpreter --out "$OUT/interpreter" --steps 16000 \
    --eval-every 4000 --threads 1 > "$OUT/interpreter.log" 2>&1
stamp 'stage 2 done'
wait "$kp"
stamp 'stage 1 paused at step 6000 (a checkpoint step); resuming it on 2 threads'
python -m training.train "${kp_args[@]}" --threads 2 --resume >> "$OUT/keypoints.log" 2>&1
stamp 'stage 1 done; stage 3'
python -m training.train finetune --keypoints "$OUT/keypoints/model.pt" \
    --interpreter "$OUT/interpreter/model.pt" --data "$DATA" --out "$OUT/finetune" \
    --steps 3000 --batch 16 --w-2d 20 --w-structure 40 --w-synthetic 0.3 --lr 5e-4 \
    --threads 2 > "$OUT/finetune.log" 2>&1
stamp 'stage 3 done; evaluating on the selection set'
python -m training.evaluate --checkpoint "$OUT/finetune/model.pt" --data datasets/chair_sel_128 \
    --out "$OUT/eval_sel" --threads 2 > "$OUT/eval_sel.log" 2>&1
stamp "done: $OUT/finetune/model.pt, $OUT/eval_sel/metrics.json"
