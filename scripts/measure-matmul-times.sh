#!/usr/bin/env bash
# Measure every matmul variant on the built-in models' matmul shapes on this machine's default
# adapter (`sfumato tune --candidates all --force --json`), twice, and write each variant's lower
# time as JSON (noise on a shared machine only adds time): the data the matmul cost model
# (shaders/src/matmul/choice.rs, `estimated_cost`) is fitted to and checked against
# (shaders/tests/cost_model.rs). Takes about 15 minutes on lavapipe.
#   bash scripts/measure-matmul-times.sh > shaders/tests/data/llvmpipe-matmul-times.json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sfumato >&2
bin="${CARGO_TARGET_DIR:-target}/release/sfumato"
work="$(mktemp -d)"
models=(
    "mlp"
    "bert-base --layers 1"
    "bert-base --layers 1 --seq 384"
    "resnet-bottleneck --layers 1"
    "resnet-bottleneck --layers 1 --size 14"
    "gpt2-decode"
)
for pass in 1 2; do
    for i in "${!models[@]}"; do
        echo "== pass $pass: ${models[$i]}" >&2
        # shellcheck disable=SC2086
        SFUMATO_CACHE_DIR="$work/cache" "$bin" tune ${models[$i]} --candidates all --force --json \
            >"$work/$pass-$i.json"
    done
done
python3 - "$work" "${models[@]}" <<'PY'
import json, sys
work, models = sys.argv[1], sys.argv[2:]
out = []
for i, model in enumerate(models):
    a, b = (json.load(open(f"{work}/{p}-{i}.json")) for p in (1, 2))
    for s, t in zip(a, b):
        other = dict(t["times_ms"])
        s["times_ms"] = [[v, round(min(ms, other.get(v, ms)), 4)] for v, ms in s["times_ms"]]
        if s["times_ms"]:
            s["winner"] = min(s["times_ms"], key=lambda x: x[1])[0]
    out.append((model, a))
print("[")
for i, (model, shapes) in enumerate(out):
    print('  {"model": %s, "shapes": [' % json.dumps(model))
    print(",\n".join("    " + json.dumps(s) for s in shapes))
    print("  ]}" + ("," if i < len(out) - 1 else ""))
print("]")
PY
rm -rf "$work"
