#!/usr/bin/env bash
# Makes the README's console screenshot (docs/console.png): a `sluice serve`
# with the two BTS example tenants on their own queues, readings published
# at changing rates for a few minutes (so the sparklines have a shape),
# then the tenants page in headless Chromium through the console test's
# driver (host/tests/serve/console.py). Needs what scripts/test.sh installs
# and RabbitMQ running; the binary from `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target="${CARGO_TARGET_DIR:-$root/target}"
sluice="$target/release/sluice"
python="${SLUICE_PYTHON:-/var/cache/sluice/venv/bin/python}"
amqp="${SLUICE_AMQP_URL:-amqp://127.0.0.1:5672/%2f}"
minutes="${1:-4}"

work=$(mktemp -d)
serve_pid=
cleanup() {
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

token="console-screenshot-operator-token"
tag="screenshot.$$"
for m in sluice sessions; do
    sed -e "s|^module = .*|module = \"$root/target/components/bts_analytics.wasm\"|" \
        -e "s|^queue = \"\\([^\"]*\\)\"|queue = \"\\1.$tag\"|" \
        -e "s|^exchange = \"\\([^\"]*\\)\"|exchange = \"\\1.$tag\"|" \
        "examples/bts-analytics/$m.toml" >"$work/$m.toml"
done
cat >"$work/host.toml" <<EOF
listen = "127.0.0.1:0"
operator_token = "$token"
amqp = "$amqp"
state_dir = "state"
workers = 1

[[tenants]]
manifest = "$work/sluice.toml"

[[tenants]]
manifest = "$work/sessions.toml"
EOF
"$sluice" serve --config "$work/host.toml" 2>"$work/serve.log" &
serve_pid=$!
url=
for _ in $(seq 120); do
    url=$(grep -o 'admin API on http://[0-9.:]*' "$work/serve.log" | head -1 | sed 's/admin API on //' || true)
    [ -n "$url" ] && break
    sleep 1
done
[ -n "$url" ] || { cat "$work/serve.log" >&2; exit 1; }

"$sluice" gen-bts --events 600000 --dirty 0.01 --out-of-order 0.02 -o "$work/bts.csv" 2>/dev/null
# Rates that change every 20 s phase, so the sparklines are not flat;
# each phase publishes the next rows of the file (event time moves on).
end=$((SECONDS + minutes * 60))
phase=0
line=1
rates=(400 900 250 1200 600)
while [ "$SECONDS" -lt "$end" ]; do
    rate=${rates[$((phase % ${#rates[@]}))]}
    n=$((rate * 20))
    sed -n "${line},$((line + n - 1))p" "$work/bts.csv" >"$work/a.csv"
    head -n $((n / 3)) "$work/a.csv" >"$work/b.csv"
    "$sluice" publish --amqp "$amqp" --manifest "$work/sluice.toml" --rate "$rate" \
        --lines-per-message 10 "$work/a.csv" 2>/dev/null &
    a=$!
    "$sluice" publish --amqp "$amqp" --manifest "$work/sessions.toml" --rate $((rate / 3)) \
        --lines-per-message 10 "$work/b.csv" 2>/dev/null &
    b=$!
    wait "$a" "$b" || true
    line=$((line + n))
    phase=$((phase + 1))
done
mkdir -p docs
"$python" host/tests/serve/console.py \
    "{\"action\": \"sign-in\", \"url\": \"$url\", \"token\": \"$token\", \"screenshot\": \"$root/docs/console.png\"}" >/dev/null
echo "docs/console.png written"
