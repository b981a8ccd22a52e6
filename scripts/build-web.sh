#!/usr/bin/env bash
# Builds the web page into target/web/: the wasm module (release, wasm32-unknown-unknown), its
# JavaScript bindings from wasm-bindgen-cli at exactly the version Cargo.lock resolves (a
# mismatch between the two fails at load time), and the pages in wasm/www/.
#
#   bash scripts/build-web.sh            # then: python3 -m http.server -b 127.0.0.1 -d target/web 8080
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[ -n "$version" ] || { echo "error: wasm-bindgen is not in Cargo.lock" >&2; exit 1; }
tools="$PWD/target/tools"
bindgen="$tools/bin/wasm-bindgen"
if ! "$bindgen" --version 2>/dev/null | grep -q " $version\$"; then
    echo "== installing wasm-bindgen-cli $version (Cargo.lock's wasm-bindgen) into $tools"
    # --debug: it builds in half the time, and it handles the page's module in seconds anyway.
    cargo install --quiet --debug --root "$tools" wasm-bindgen-cli --version "$version"
fi
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true

target_dir="${CARGO_TARGET_DIR:-target}"
echo "== cargo build -p sfumato-wasm --release --target wasm32-unknown-unknown"
cargo build --release -p sfumato-wasm --target wasm32-unknown-unknown
rm -rf target/web
mkdir -p target/web
"$bindgen" --target web --no-typescript --out-dir target/web/pkg \
    "$target_dir/wasm32-unknown-unknown/release/sfumato_wasm.wasm"
cp wasm/www/* target/web/
echo "== the page is in target/web/ ($(du -sh target/web | cut -f1)); serve it on 127.0.0.1 only"
