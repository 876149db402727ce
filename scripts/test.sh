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
cargo test --release --workspace "$@"
