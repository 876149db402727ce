#!/usr/bin/env bash
# Fails when a crate's dependency tree (what it links, not its
# dev-dependencies) holds what its layer must not: the core no async
# runtime, Wasm engine, broker or database client, web framework or chart
# library; the sandbox, RabbitMQ and Cassandra crates none of each other's
# clients. The core builds and tests in a fraction of the host's time, and
# each client crate in a fraction of the whole, only while these stay out.
# Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
heavy='tokio|wasmtime|wasmtime-wasi|lapin|scylla|axum|hyper|plotters|prometheus-client|indicatif'
web='axum|hyper|plotters|prometheus-client|sluice-host'
status=0
check() { # crate, forbidden (regex alternatives), why
    local tree found
    tree=$(cargo tree -p "$1" -e normal,build --prefix none --format '{p}')
    found=$(echo "$tree" | awk '{print $1}' | sort -u | grep -E "^($2)$" || true)
    if [ -n "$found" ]; then
        echo "$1 depends on what it must not ($3):" >&2
        echo "$found" | sed 's/^/  /' >&2
        status=1
    else
        echo "$1: none of $(echo "$2" | tr '|' ' ') in its tree"
    fi
}
check sluice-core "$heavy|sluice-sandbox|sluice-amqp|sluice-cassandra" "see host/core/Cargo.toml"
check sluice-sandbox "lapin|scylla|$web|sluice-amqp|sluice-cassandra" "the tenant runtime knows no I/O client"
check sluice-amqp "wasmtime|scylla|$web|sluice-sandbox|sluice-cassandra" "RabbitMQ only"
check sluice-cassandra "wasmtime|lapin|$web|sluice-sandbox|sluice-amqp" "Cassandra only"
exit $status
