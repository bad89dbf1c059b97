#!/usr/bin/env bash
# On a lent CUDA machine, in one call: train from the shipped model, export int8, score it.
# Only the int8 model (in parts under 16 MiB, with its sha256) and one archive of figures
# (history, config, export and accuracy reports, training log, curves) are written to $OUT.
#   here:   python scripts/pack_data.py            # once: pack/ (~26 MB, git-ignored)
#   device: scripts/gpu_run.sh [train options]     # run with carry=["pack"]; OUT set by the tool
#   here:   scripts/gpu_ship.sh FILES_AT           # reassemble, check, ship with its card
# EPOCHS (default 30), BATCH (256) and LR (2e-3) size the run; MINUTES (default 7) stops it
# in time for the export, whatever EPOCHS says, after an epoch boundary.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder that comes back}"
export PYTHONUNBUFFERED=1 MULTINET_PROGRESS=0 MULTINET_CACHE=/tmp/multinet-cache
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
run=/tmp/gpu-run
rm -rf "$run"
start=$(date +%s)
timeout --signal=INT "$(( ${MINUTES:-7} * 60 ))" \
  multinet-emotion train --data pack/fer2013 --ferplus pack/ferplus --out "$run" \
  --epochs "${EPOCHS:-30}" --batch-size "${BATCH:-256}" --lr "${LR:-2e-3}" --warmup 1 \
  --init src/multinet_emotion/assets/model.onnx --stem imagenet --normalization imagenet \
  "$@" 2>&1 | tee "$run.log" || echo "training stopped at the time limit (best.pt is kept)"
echo "trained for $(( $(date +%s) - start )) s"
multinet-emotion export --model "$run/best.pt" --out "$run/model.onnx" --data pack/fer2013 \
  --tta-flip --report "$run/export.json"
python3 bench/accuracy.py --model "$run/model.onnx" --data pack/fer2013 --ferplus pack/ferplus \
  --out /tmp/accuracy --json "$run/onnx.json"
cp "$run.log" "$run/train.log"
tar -C "$run" -czf "$OUT/figures.tar.gz" history.json config.json data_report.json curves.png \
  export.json onnx.json train.log
split -b 15M -d "$run/model.onnx" "$OUT/model.onnx.part"
(cd "$run" && sha256sum model.onnx) > "$OUT/model.onnx.sha256"
ls -la "$OUT"
