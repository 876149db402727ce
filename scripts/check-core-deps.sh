#!/usr/bin/env bash
# Fails when sluice-core's dependency tree (what it links, not its
# dev-dependencies) holds a heavy dependency again: an async runtime, the
# Wasm engine, the broker or database clients, the web framework or the
# chart library. The core builds and tests in a fraction of the host's
# time only while they stay out. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(tokio|wasmtime|wasmtime-wasi|lapin|scylla|axum|hyper|plotters|prometheus-client|indicatif)$'
found=$(cargo tree -p sluice-core -e normal,build --prefix none --format '{p}' |
    awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
if [ -n "$found" ]; then
    echo "sluice-core depends on what it must not (see host/core/Cargo.toml):" >&2
    echo "$found" >&2
    exit 1
fi
echo "sluice-core: none of the heavy dependencies in its tree"
