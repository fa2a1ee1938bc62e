#!/usr/bin/env bash
# Issue 18, item 4: adapt the default chair model to a shifted-domain rosbag with the video
# stage (no labels from the bag), then evaluate before and after on another bag of the same
# domain, offline and live through the node. About 25 min on 2 CPU cores.
#   bash scripts/adapt_bag_shifted.sh [OUT]   (default runs/adapt_shifted)
set -euo pipefail
OUT=${1:-runs/adapt_shifted}
mkdir -p "$OUT"
W=${WIDTH:-320}
python -m training.bag make-demo --out "$OUT/adapt_bag" --seed 31 --frames 90 --width "$W" \
    --domain shifted --force
python -m training.bag make-demo --out "$OUT/eval_bag" --seed 32 --frames 90 --width "$W" \
    --domain shifted --force
[ -f "$OUT/images/manifest.json" ] || python -m training.synthesize images --count 2000 \
    --out "$OUT/images" --seed 12 --no-voxels --workers 2
/usr/bin/time -v python -m training.train video --init perception_3dinn/data/models/chair \
    --bag "$OUT/adapt_bag" --images "$OUT/images" --out "$OUT/video" \
    --clip-lengths 3,7,11,15 --steps-per-length ${STEPS:-150} --clips 4 --batch 8 \
    --val-fraction 0.3 --threads 2 2> "$OUT/video_time.txt"
python -m training.export --checkpoint "$OUT/video/model.pt" --out "$OUT/export" --weights fp16
python -m training.bag evaluate --bag "$OUT/eval_bag" --out "$OUT/eval_before" --offline \
    --live --start-node
python -m training.bag evaluate --bag "$OUT/eval_bag" --out "$OUT/eval_after" --offline \
    --live --start-node --model "$OUT/export/manifest.json"
