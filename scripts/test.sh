#!/usr/bin/env bash
# Runs every test from a fresh clone: installs and starts what the tests
# need (the wasm32-wasip2 target, headless Chromium, RabbitMQ and Cassandra
# on loopback via scripts/services.sh, a Python venv with the standard
# clients the tests compare against), builds the guest components, then the
# test suite.
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

# Headless Chromium: the report test (host/tests/report) screenshots the
# HTML report with it; the console test (host/tests/serve/console.rs) drives
# the operator console in it. Installed before the services start, since their
# script may run apt-get too and dpkg takes one installer at a time.
if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -q
    fi
    # A stale package list can name files the mirror no longer has: refresh once.
    if ! apt-get install -y -q --no-install-recommends chromium; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends chromium
    fi
fi

# Services start in the background while the guests build.
services_log=$(mktemp)
scripts/services.sh start all >"$services_log" 2>&1 &
services_pid=$!

# Standard clients the tests use as independent witnesses.
venv="${SLUICE_VENV:-/var/cache/sluice/venv}"
# pika (broker tests), the DataStax driver (Cassandra tests), prometheus_client
# (the serve tests parse `/metrics` with it), playwright (the console test
# drives the system's /usr/bin/chromium with it: no browser is downloaded).
if ! "$venv/bin/python" -c 'import pika, cassandra, prometheus_client, playwright' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet pika 'cassandra-driver>=3.29' prometheus_client playwright
fi
export SLUICE_PYTHON="$venv/bin/python"

# The layering holds: the core crate links none of the heavy dependencies.
scripts/check-layers.sh

cargo xtask build-examples

if ! wait "$services_pid"; then
    cat "$services_log" >&2
    echo "starting the services failed" >&2
    exit 1
fi
cat "$services_log" >&2

# cargo prints one "test result" line per test binary, the last often a
# doc-test run with 0 tests; close with the total so the outcome is plain.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
