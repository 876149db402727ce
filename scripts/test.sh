#!/usr/bin/env bash
# Runs every test from a fresh clone: installs and starts what the tests
# need (the wasm32-wasip2 target, headless Chromium, RabbitMQ and Cassandra
# on loopback via scripts/services.sh, a Python venv with the standard
# clients the tests compare against and pytest, componentize-py for the
# Python tenants, componentize-js for the JavaScript tenants), builds the
# guest components (Rust, Python and JS), runs the Python SDK's pytest
# tests and the JS SDK's `node --test` tests, then the test suite.
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

# Node.js and npm (the JS tenants' toolchain runs on them) from Debian when
# missing, also before the services start.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends nodejs npm || {
        apt-get update -q
        apt-get install -y -q --no-install-recommends nodejs npm
    }
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
# pytest runs the Python SDK's unit tests (guest-sdk/python/tests).
if ! "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
    "$venv/bin/pip" install --quiet pytest
fi

# The Python tenants' toolchain: componentize-py pinned as `sluice build`
# pins it, in the cache `sluice build` and `cargo xtask build-examples`
# read (SLUICE_TOOLCHAINS), outside the clone. The stamp, written last,
# marks a finished install.
export SLUICE_TOOLCHAINS="${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}"
componentize="$SLUICE_TOOLCHAINS/componentize-py-0.25.1"
if [ ! -f "$componentize/sluice-installed" ]; then
    rm -rf "$componentize"
    python3 -m venv "$componentize"
    "$componentize/bin/pip" install --quiet --disable-pip-version-check componentize-py==0.25.1
    echo "componentize-py==0.25.1" >"$componentize/sluice-installed"
fi

# The JS tenants' toolchain: componentize-js (and the jco it depends on)
# pinned as `sluice build` pins them, from npm, in the same cache.
componentize_js="$SLUICE_TOOLCHAINS/componentize-js-0.23.0"
if [ ! -f "$componentize_js/sluice-installed" ]; then
    rm -rf "$componentize_js"
    mkdir -p "$componentize_js"
    echo '{ "name": "sluice-js-toolchain", "private": true }' >"$componentize_js/package.json"
    npm install --no-audit --no-fund --prefix "$componentize_js" \
        @bytecodealliance/componentize-js@0.23.0 @bytecodealliance/jco@1.35.0
    echo "componentize-js 0.23.0, jco 1.35.0" >"$componentize_js/sluice-installed"
fi

# The layering holds: the core crate links none of the heavy dependencies.
scripts/check-layers.sh

cargo xtask build-examples

# The Python SDK's own unit tests (packing, params, the BTS example's rules).
"$venv/bin/python" -m pytest -q guest-sdk/python

# The JS SDK's and the JS example's unit tests, in node's own runner. The
# example links the SDK as `@sluice/guest` (a `file:` dependency: npm
# fetches nothing).
npm install --no-audit --no-fund --offline --prefix examples/bts-analytics-js >/dev/null
node --test guest-sdk/js/test/ examples/bts-analytics-js/test/

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
