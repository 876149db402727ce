#!/usr/bin/env bash
# The embedded demo: builds the example tenants and shows what the sandbox
# makes of them (validation + describe). No broker, no database.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo xtask build-examples
cargo build --release -p sluice-host --bin sluice
bin="${CARGO_TARGET_DIR:-target}/release/sluice"
for tenant in bts_analytics spike_filter; do
    echo "== $tenant"
    "$bin" inspect "target/components/$tenant.wasm" --tenant "$tenant"
done
echo "== a hostile component that opens files is refused:"
"$bin" inspect target/components/fs_import.wasm --tenant fs-import || true
