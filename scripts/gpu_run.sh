#!/usr/bin/env bash
# On a CUDA machine that runs a copy of the working tree (a remote job runner), in one call:
# train from the shipped model, export int8, score it.
# Only the int8 model (in parts under 16 MiB, with its sha256) and one archive of figures
# (history, config, export and validation reports, training log, curves) are written to $OUT.
#   here:   python scripts/pack_data.py            # once: pack/ (~24 MB, git-ignored)
#   there:  OUT=DIR scripts/gpu_run.sh [train options]   # pack/ copied along; DIR comes back
#   here:   scripts/gpu_ship.sh FILES_AT           # reassemble, check, score on PrivateTest, ship
# MINUTES (default 6.5) is the training budget: `train --minutes` re-plans the cosine schedule
# after every epoch to the epochs that fit, so the run ends annealed in time for the export.
# EPOCHS (default 60) caps the plan; BATCH (256) and LR (5e-4) size the steps.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder that comes back}"
export PYTHONUNBUFFERED=1 MULTINET_PROGRESS=0 MULTINET_CACHE=/tmp/multinet-cache
minutes=${MINUTES:-6.5}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'onnxruntime', onnxruntime.__version__)"
run=/tmp/gpu-run
rm -rf "$run"
start=$(date +%s)
# the budget ends the run annealed; the timeout is only a backstop (best.pt is kept)
timeout --signal=INT "$(python3 -c "print(int($minutes * 60 + 120))")" \
  multinet-emotion train --data pack/fer2013 --ferplus pack/ferplus --out "$run" \
  --minutes "$minutes" --epochs "${EPOCHS:-60}" --batch-size "${BATCH:-256}" \
  --lr "${LR:-5e-4}" --warmup 2 --patience 1000 --no-keep-last \
  --init src/multinet_emotion/assets/model.onnx --stem imagenet --normalization imagenet \
  "$@" 2>&1 | tee "$OUT/train.log" || echo "training stopped at the backstop (best.pt is kept)"
echo "trained for $(( $(date +%s) - start )) s"
multinet-emotion export --model "$run/best.pt" --out "$run/model.onnx" --data pack/fer2013 \
  --tta-flip --report "$run/export.json"
echo "exported at $(( $(date +%s) - start )) s"
# PrivateTest stays here (scripts/pack_data.py); the validation split is a check that the
# int8 file reads faces as the checkpoint did
timeout 120 python3 bench/accuracy.py --model "$run/model.onnx" --data pack/fer2013 --ferplus pack/ferplus \
  --splits val --out /tmp/accuracy --json "$run/onnx.json" || true
tar -C "$run" -czf "$OUT/figures.tar.gz" --ignore-failed-read history.json config.json \
  data_report.json curves.png export.json onnx.json
split -b 15M -d "$run/model.onnx" "$OUT/model.onnx.part"
(cd "$run" && sha256sum model.onnx) > "$OUT/model.onnx.sha256"
echo "done at $(( $(date +%s) - start )) s"
ls -la "$OUT"
