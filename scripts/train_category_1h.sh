#!/usr/bin/env bash
# Any category's default model from nothing in about an hour of this 2-core machine: the
# chair's one-hour recipe (scripts/train_chair_1h.sh, docs/models/chair.md) with the data
# sets rendered first when they are missing, then the export and the benchmark.
#   bash scripts/train_category_1h.sh CATEGORY [OUT=runs/<category>_1h]
# Data (seeds as the chair's): datasets/<category>_train_128 (20,000 images, seed 1),
# <category>_sel_128 (500, seed 3, for choosing settings) and the benchmark
# <category>_val_128 (1,000, seed 2, evaluated only).
set -eo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh >/dev/null  # (colcon's setup scripts read unset variables: before set -u)
set -u
CAT=${1:?usage: train_category_1h.sh CATEGORY [OUT]}
OUT=${2:-runs/${CAT}_1h}
KP_STEPS=${KP_STEPS:-16000}
INN_STEPS=${INN_STEPS:-16000}
FT_STEPS=${FT_STEPS:-3000}
DATA=datasets/${CAT}_train_128
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[$(date -u +%H:%M:%S)] $* ($(( ($(date +%s) - start) / 60 )) min)"; }
render() {  # name count seed
    if [ ! -f "datasets/${CAT}_$1/manifest.json" ]; then
        stamp "rendering datasets/${CAT}_$1 ($2 images, seed $3)"
        python -m training.synthesize images --category "$CAT" --count "$2" \
            --out "datasets/${CAT}_$1" --seed "$3" --size 128 --workers 2 --no-voxels \
            --preview "$OUT/${1}_sheet.png" > "$OUT/render_$1.log" 2>&1
    fi
}
render train_128 20000 1
render sel_128 500 3
render val_128 1000 2
again() { [ -f "$1/last.pt" ] && echo --resume; }  # a stopped run continues exactly
stamp 'stages 1 and 2, side by side'
kp_args=(keypoints --data "$DATA" --out "$OUT/keypoints" --steps "$KP_STEPS" --batch 32
         --eval-every 2000 --val-size 300)
# shellcheck disable=SC2046
python -m training.train "${kp_args[@]}" --threads 1 --stop-after 6000 \
    $(again "$OUT/keypoints") >> "$OUT/keypoints.log" 2>&1 &
kp=$!
if [ ! -f "$OUT/interpreter/model.pt" ]; then
    # shellcheck disable=SC2046
    python -m training.train interpreter --category "$CAT" --out "$OUT/interpreter" \
        --steps "$INN_STEPS" --eval-every 4000 --threads 1 $(again "$OUT/interpreter") \
        >> "$OUT/interpreter.log" 2>&1
fi
stamp 'stage 2 done'
wait "$kp"
stamp 'stage 1 paused at step 6000 (a checkpoint step); resuming it on 2 threads'
python -m training.train "${kp_args[@]}" --threads 2 --resume >> "$OUT/keypoints.log" 2>&1
stamp 'stage 1 done; stage 3'
python -m training.train finetune --keypoints "$OUT/keypoints/model.pt" \
    --interpreter "$OUT/interpreter/model.pt" --data "$DATA" --out "$OUT/finetune" \
    --steps "$FT_STEPS" --batch 16 --w-2d 20 --w-structure 40 --w-synthetic 0.3 --lr 5e-4 \
    --threads 2 > "$OUT/finetune.log" 2>&1
stamp 'stage 3 done; selection set, export, benchmark'
python -m training.evaluate --checkpoint "$OUT/finetune/model.pt" \
    --data "datasets/${CAT}_sel_128" --out "$OUT/eval_sel" --threads 2 > "$OUT/eval_sel.log" 2>&1
python -m training.export --checkpoint "$OUT/finetune/model.pt" --out "$OUT/export" \
    --weights fp16 > "$OUT/export.log" 2>&1
python -m training.evaluate --checkpoint "$OUT/finetune/model.pt" \
    --data "datasets/${CAT}_val_128" --out "$OUT/eval_val" --threads 2 > "$OUT/eval_val.log" 2>&1
stamp "done: $OUT/export/manifest.json, $OUT/eval_sel/metrics.json, $OUT/eval_val/metrics.json"
