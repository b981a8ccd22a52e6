#!/usr/bin/env bash
# Sfumato's wasm build against onnxruntime-web (WebGPU execution provider, its defaults) on the
# same ONNX models, the same adapter and the same page, in headless Chromium: builds the page
# (scripts/build-web.sh), writes the models (scripts/make-web-bench-models.py, pinned onnx and
# numpy in a venv), installs onnxruntime-web and playwright-core at the versions
# wasm/bench/package-lock.json pins, and prints the table (output/web-bench.json keeps it).
#
#   bash scripts/bench-web.sh [MODELS] [WARMUP] [ITERS]     # default: resnet-block,bert-layer,minilm-encoder 2 5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-web.sh
venv=target/onnx-venv
if ! "$venv/bin/python" -c "import onnx" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r scripts/onnx-node-tests-requirements.txt
fi
"$venv/bin/python" scripts/make-web-bench-models.py target/web/models
(cd wasm/bench && npm ci --no-audit --no-fund --silent)
mkdir -p target/web/ort
d=wasm/bench/node_modules/onnxruntime-web/dist
cp "$d"/ort.webgpu.min.mjs "$d"/ort-wasm-simd-threaded.* target/web/ort/
node wasm/bench/bench.mjs "$@"
