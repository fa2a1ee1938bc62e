#!/usr/bin/env bash
# The three training stages of the chair model in about one hour of this 2-core machine
# (docs/models/chair.md, "The three stages in one hour"): stage 1 (keypoints, 1 thread) and
# stage 2 (interpreter, 1 thread) side by side; once stage 2 is done, stage 1 resumes on
# 2 threads (the same run: --resume is exact); then stage 3 (fine-tuning with the shape
# loss, 2 threads), the selection-set evaluation, the export and the benchmark. The recipe
# is scripts/train_category_1h.sh's, which renders missing data sets first.
#   bash scripts/train_chair_1h.sh [OUT=runs/one_hour]
exec bash "$(dirname "$0")/train_category_1h.sh" chair "${1:-runs/one_hour}"
