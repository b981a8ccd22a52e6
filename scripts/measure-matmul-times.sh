#!/usr/bin/env bash
# Measure every matmul variant on the built-in models' matmul shapes on this machine's default
# adapter and write them as JSON (one array per model, `sfumato tune --candidates all --json`):
# the data the cost model (shaders/src/matmul/choice.rs, `estimated_cost`) is fitted to and
# checked against (shaders/tests/cost_model.rs reads shaders/tests/data/llvmpipe-matmul-times.json).
#   bash scripts/measure-matmul-times.sh > shaders/tests/data/llvmpipe-matmul-times.json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sfumato >&2
cache="$(mktemp -d)"
echo "["
first=1
while read -r model; do
    [ -z "$model" ] && continue
    echo "== $model" >&2
    # shellcheck disable=SC2086
    out="$(SFUMATO_CACHE_DIR="$cache" target/release/sfumato tune $model --candidates all --force --json)"
    [ "$first" = 1 ] || echo ","
    first=0
    printf '{"model": "%s", "shapes": %s}' "$model" "$out"
done <<'MODELS'
mlp
bert-base --layers 1
bert-base --layers 1 --seq 384
resnet-bottleneck --layers 1
resnet-bottleneck --layers 1 --size 14
gpt2-decode
MODELS
echo
echo "]"
rm -rf "$cache"
