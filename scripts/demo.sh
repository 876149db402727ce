#!/usr/bin/env bash
# The embedded demo: builds the example tenant, generates realistic BTS data
# (with dirty and out-of-order rows), runs it through `sluice run` with the
# example manifest, and shows the first result of each type, a dead letter
# and the run's summary; then the batch summaries of examples/bts-batch over
# the same file, with an HTML report. No broker, no database. Honours
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo xtask build-examples
cargo build --release -p sluice-host --bin sluice
bin="${CARGO_TARGET_DIR:-target}/release/sluice"
out="${DEMO_DIR:-target/demo}"
mkdir -p "$out"

echo "== generating 200000 BTS rows (1% dirty, 5% out of order, 3 keys ramping to their threshold)"
"$bin" gen-bts --events 200000 --dirty 0.01 --out-of-order 0.05 --ramp 3 -o "$out/bts.csv"

echo "== sluice run examples/bts-analytics/sluice.toml --input $out/bts.csv"
"$bin" run examples/bts-analytics/sluice.toml --input "$out/bts.csv" \
    --output "$out/results.jsonl" --dead-letter "$out/dead-letter.jsonl"

for type in "Windowed Analytic" "Global Analytic" "Windowed Metric" "Global Metric" "Alert"; do
    echo "== first \"$type\" (of $(grep -c "\"type\":\"$type\"" "$out/results.jsonl" || true))"
    # Per-key results first (the tenant-level metric is shown below).
    { grep "\"type\":\"$type\"" "$out/results.jsonl" | grep -m1 -v '"key":{}'; } || true
done
echo "== a tenant-level Global Metric (bad rows without a readable key)"
grep -m1 '"key":{}' "$out/results.jsonl" || true
echo "== first dead letter (of $(wc -l < "$out/dead-letter.jsonl"))"
head -n 1 "$out/dead-letter.jsonl"
echo "== all results: $out/results.jsonl, dead letters: $out/dead-letter.jsonl"

echo "== sluice batch examples/bts-batch/sluice.toml: the origin notes' summaries over the same file"
"$bin" batch examples/bts-batch/sluice.toml \
    --job station_rates --job temperature_histogram --job alarms_per_day \
    --job breaches_by_alarm --job alarm_hours \
    --from 2017-02-18 --to 2017-02-20 --input "$out/bts.csv" \
    --output "$out/batch.jsonl" --report "$out/report.html"
echo "== first batch result (of $(wc -l < "$out/batch.jsonl")); charts: $out/report.html"
head -n 1 "$out/batch.jsonl"
