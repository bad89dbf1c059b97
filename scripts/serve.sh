#!/usr/bin/env bash
# Set up the runtime (no torch) and start the web app with the embedded default model.
# Extra arguments go to `multinet-emotion serve` (e.g. --host 0.0.0.0 --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
exec .venv/bin/multinet-emotion serve "$@"
