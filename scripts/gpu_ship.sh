#!/usr/bin/env bash
# Ship what scripts/gpu_run.sh brought back from a GPU machine.
#   scripts/gpu_ship.sh FILES_AT [RUN_DIR]
# Reassembles the int8 model from its parts, checks its sha256, unpacks the figures into
# RUN_DIR (default ~/.cache/multinet-emotion/runs/gpu-<date>) and runs scripts/ship_model.sh
# on it: accuracy and robustness are measured again here on ../shared, the card written.
set -euo pipefail
cd "$(dirname "$0")/.."
got=${1:?usage: scripts/gpu_ship.sh FILES_AT [RUN_DIR]}
run=${2:-$HOME/.cache/multinet-emotion/runs/gpu-$(date +%Y%m%d-%H%M)}
mkdir -p "$run"
cat "$got"/model.onnx.part* > "$run/model.onnx"
(cd "$run" && sha256sum -c "$got/model.onnx.sha256")
tar -C "$run" -xzf "$got/figures.tar.gz"
cp "$got/train.log" "$run/train.log"
SHIP_ONNX="$run/model.onnx" SHIP_FLIP=yes SHIP_PYTORCH=0 scripts/ship_model.sh "$run"
