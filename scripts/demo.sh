#!/usr/bin/env bash
# The demo behind `make demo` (run after `make setup`): the chair_detector node on the demo
# sequence with the default models on CPU, over real DDS.
#
#   1. generate the demo bag deterministically if it is absent: a room with every category
#      that has a packaged model (perception_3dinn/data/models/<category>), e.g. chairs
#      beside their tables (out/demo/mixed_demo), or chairs alone while the chair is the only
#      packaged model (out/demo/chair_demo);
#   2. start the node (console script, config/chair_detector.yaml, autostart, the floor
#      from TF: pose.floor_frame:=floor, as the bag carries floor -> camera on /tf);
#   3. play the bag to it over DDS, record its outputs, evaluate against ground truth
#      (and the same bag offline through the pipeline, for the ROS overhead);
#   4. print a summary and the files written.
#
# Environment: DEMO_RATE (frames/s, default 15), DEMO_LOOPS (default 1), ROS_DOMAIN_ID
# (default 77, DDS kept on this machine), DEMO_MODEL (a manifest.json; default: the packaged
# model, or a randomly initialised export when no trained model is packaged yet).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! python -c 'import rclpy, perception_3dinn_msgs' >/dev/null 2>&1; then
  # shellcheck disable=SC1091
  source scripts/env.sh
fi
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-77}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONUNBUFFERED=1

OUT="$ROOT/out/demo"
CATS="$(python -c 'from perception_3dinn.ros.node_categories import installed_models as m
print(",".join(m()))')"
if [ -z "${DEMO_MODEL:-}" ] && [ -n "$CATS" ] && [ "$CATS" != chair ]; then
  BAG="$OUT/mixed_demo"
else
  BAG="$OUT/chair_demo"
  CATS=chair
fi
EVAL="$OUT/eval"
RATE="${DEMO_RATE:-15}"
LOOPS="${DEMO_LOOPS:-1}"
mkdir -p "$EVAL"
say() { printf '\033[1;32m[demo]\033[0m %s\n' "$*"; }

# Bags written before make-demo added /tf (the camera's pose above the floor), or for other
# categories than the packaged models now have, are rewritten.
if [ ! -f "$BAG/metadata.yaml" ] || ! grep -Eq '^ +name: /tf$' "$BAG/metadata.yaml" \
    || [ "$(cat "$BAG.categories" 2>/dev/null || echo chair)" != "$CATS" ]; then
  rm -rf "$BAG"
  if [ "$CATS" = chair ]; then
    say "generating the demo bag (deterministic, seed 7) -> $BAG"
    python -m training.bag make-demo --out "$BAG"
  else
    say "generating the demo bag of a room with $CATS (deterministic) -> $BAG"
    python -m training.bag make-demo --out "$BAG" --categories "$CATS"
    echo "$CATS" > "$BAG.categories"
  fi
fi

MODEL="${DEMO_MODEL:-}"
if [ -z "$MODEL" ]; then
  MODEL="$(python -c 'from perception_3dinn.inference.manifest import default_model_dir as d
print(d("chair") / "manifest.json")')"
  if [ ! -f "$MODEL" ]; then
    MODEL="$OUT/random_model/manifest.json"
    say "no trained chair model is packaged yet: using a RANDOMLY INITIALISED model (plumbing"
    say "only, accuracy meaningless) -> $MODEL"
    [ -f "$MODEL" ] || python -m training.export --random-init --category chair \
      --out "$OUT/random_model" >"$OUT/random_model.log" 2>&1
  fi
fi

if ! python -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get("trained", True) else 1)' "$MODEL"; then
  say "NOTE: $MODEL is marked untrained (manifest trained=false): the pipeline runs end to end"
  say "but its accuracy numbers are meaningless until a trained model is exported there."
fi

# The sourced workspace's node (install-<distro>/ here), found as `ros2 run` finds it.
NODE_EXE="$(python -c 'from perception_3dinn.ros.distro import node_executable as e; print(e())')"
if [ "$CATS" = chair ]; then
  SERVE=(-p "model.manifest:=$MODEL")
  MODELS=(--model "$MODEL")
else  # every packaged model, one node
  SERVE=(-p "categories:=['all']")
  MODELS=()
  MODEL="the packaged models of $CATS"
fi
say "starting chair_detector (ROS_DOMAIN_ID=$ROS_DOMAIN_ID, $MODEL), log $EVAL/node.log"
"$NODE_EXE" --ros-args --params-file "$ROOT/config/chair_detector.yaml" \
  -p autostart:=true -p input.compressed:=true "${SERVE[@]}" \
  -p pose.floor_frame:=floor \
  >"$EVAL/node.log" 2>&1 &
NODE_PID=$!
cleanup() {
  if kill -0 "$NODE_PID" 2>/dev/null; then
    kill -INT "$NODE_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$NODE_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

say "playing $BAG at $RATE frames/s over DDS, recording and evaluating -> $EVAL"
python -m training.bag evaluate --bag "$BAG" --out "$EVAL" --offline --live \
  --rate "$RATE" --loops "$LOOPS" "${MODELS[@]}" --floor-frame floor
cleanup
say "node log: $EVAL/node.log"
