#!/usr/bin/env bash
# The learner page's in-browser analysis files: onnxruntime-web and opencv.js from the npm
# registry at the versions pinned in web/package-lock.json, copied (opencv.js patched to run
# without 'unsafe-eval', see web/patch-opencv.mjs) into the git-ignored
# src/multinet_emotion/app/static/vendor/, and checked against web/vendor.sha256.
# The app serves them itself (no CDN). Quiet, and nothing is downloaded when the checked
# files are already there. Without node/npm it says so and the app uses server analysis.
#   scripts/setup_web.sh           install or check
#   scripts/setup_web.sh --record  rewrite web/vendor.sha256 (after changing the pins)
set -euo pipefail
cd "$(dirname "$0")/.."
web=web
vendor=src/multinet_emotion/app/static/vendor
sums=$web/vendor.sha256
ort=$web/node_modules/onnxruntime-web/dist
ocv=$web/node_modules/@techstark/opencv-js/dist
record=${1:-}

check() { [ -s "$sums" ] && sha256sum --quiet --strict -c "$sums" >/dev/null 2>&1; }

if [ "$record" != --record ] && check; then
  exit 0  # already installed and checked
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "setup_web: node and npm are needed for in-browser analysis (apt-get install nodejs npm);" \
       "without them the app analyses on the server" >&2
  exit 0
fi
if ! npm ci --prefix "$web" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null; then
  echo "setup_web: npm could not install web/package-lock.json; the app analyses on the" \
       "server until scripts/setup_web.sh succeeds" >&2
  exit 0
fi
mkdir -p "$vendor"
for f in ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm; do
  cp "$ort/$f" "$vendor/$f.tmp" && mv "$vendor/$f.tmp" "$vendor/$f"
done
node "$web/patch-opencv.mjs" "$ocv/opencv.js" "$vendor/opencv.js.tmp" "$vendor/opencv.wasm.tmp"
mv "$vendor/opencv.wasm.tmp" "$vendor/opencv.wasm"
mv "$vendor/opencv.js.tmp" "$vendor/opencv.js"
if [ "$record" = --record ]; then
  sha256sum "$ocv/opencv.js" "$vendor"/ort.wasm.min.js "$vendor"/ort-wasm-simd-threaded.mjs \
    "$vendor"/ort-wasm-simd-threaded.wasm "$vendor"/opencv.js "$vendor"/opencv.wasm > "$sums"
  echo "setup_web: recorded $sums"
  exit 0
fi
if ! check; then
  sha256sum --strict -c "$sums" >&2 || true
  rm -f "$vendor"/*  # never serve files that are not the recorded ones
  echo "setup_web: the downloaded files do not match $sums; removed them (the app analyses" \
       "on the server until this is fixed)" >&2
  exit 1
fi
