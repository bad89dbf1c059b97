#!/usr/bin/env bash
# Create .venv and install the package. Usage: scripts/setup.sh [runtime|full]
#   runtime: what `multinet-emotion serve` and `detect` need (no torch)
#   full:    + training (torch, torchvision, ONNX export) and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-runtime}
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
if [ "$mode" = full ]; then
  pip install -q -e ".[train,dev]" 2>&1 | grep -v '^WARNING: Location' || true
else
  pip install -q -e . 2>&1 | grep -v '^WARNING: Location' || true
fi
python -c "import multinet_emotion" || { echo "setup failed" >&2; exit 1; }
scripts/setup_web.sh  # the learner page's in-browser analysis files (npm, checksummed)
