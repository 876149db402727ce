#!/usr/bin/env bash
# Runs every test from a fresh clone: installs what the tests need (the
# wasm32-wasip2 target), builds the guest components, then the test suite.
# Honours CARGO_TARGET_DIR (CI keeps it in a cache outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with rustup first" >&2
    exit 1
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

cargo xtask build-examples

# cargo prints one "test result" line per test binary, the last often a
# doc-test run with 0 tests; close with the total so the outcome is plain.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --workspace "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
