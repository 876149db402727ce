#!/usr/bin/env bash
# The per-language cost of a tenant (issue 21): the BTS tenant in Rust
# (examples/bts-analytics), Python (examples/bts-analytics-py) and
# JavaScript (examples/bts-analytics-js) over the same generated file, under the same manifest (the Rust example's,
# only `module` changed), one worker. Prints, per language: component
# size, compile time and peak RSS (no cache), load from the artifact cache,
# events/s, CPU per event, and the ratio to Rust; then checks the two
# result files are identical. A benchmark: it prints figures, it does not
# pass or fail on time.
#
#   scripts/bench-languages.sh [ROWS] [LANG...]   # default 1000000 rust python js
# Needs `cargo xtask build-examples` to have built the components.
# SLUICE names a built `sluice` binary (else it is built).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
shift || true
langs=("$@")
[ "${#langs[@]}" -eq 0 ] && langs=(rust python js)
target="${CARGO_TARGET_DIR:-target}"
sluice="${SLUICE:-}"
if [ -z "$sluice" ]; then
    cargo build --release -q -p sluice-host --bin sluice
    sluice="$target/release/sluice"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$sluice" gen-bts --events "$rows" --dirty 0.01 --out-of-order 0.05 --ramp 3 -o "$work/bts.csv" 2>/dev/null

printf '%-7s %9s %10s %10s %9s %11s %10s %10s %7s\n' lang size_MB compile_s compile_MB cached_ms events/s cpu_us/ev rss_MB ratio
rust_rate=""
for lang in "${langs[@]}"; do
    case $lang in
        rust) module="$PWD/target/components/bts_analytics.wasm" ;;
        python) module="$PWD/target/components/bts_analytics_py.wasm" ;;
        js) module="$PWD/target/components/bts_analytics_js.wasm" ;;
        *) echo "unknown language $lang (rust, python, js)" >&2; exit 2 ;;
    esac
    mkdir -p "$work/$lang"
    sed "s|^module = .*|module = \"$module\"|" examples/bts-analytics/sluice.toml >"$work/$lang/sluice.toml"
    size=$(stat -c %s "$module")
    # Compile with no cache (`inspect` loads and validates as a deploy does).
    /usr/bin/time -f '%e %M' -o "$work/$lang/compile.time" \
        "$sluice" inspect "$module" --cache-dir "$work/$lang/cold" >/dev/null
    read -r compile_s compile_kb <"$work/$lang/compile.time"
    # A second load from the now warm cache.
    /usr/bin/time -f '%e' -o "$work/$lang/cached.time" \
        "$sluice" inspect "$module" --cache-dir "$work/$lang/cold" >/dev/null
    cached_ms=$(awk '{ printf "%.0f", $1 * 1000 }' "$work/$lang/cached.time")
    /usr/bin/time -f '%U %S %M' -o "$work/$lang/run.time" \
        "$sluice" run "$work/$lang/sluice.toml" --input "$work/bts.csv" --workers 1 --quiet \
        --cache-dir "$work/$lang/cold" --output "$work/$lang/out.jsonl" 2>"$work/$lang/run.err"
    read -r user sys rss_kb <"$work/$lang/run.time"
    rate=$(grep -o '[0-9]* events/s' "$work/$lang/run.err" | awk '{ print $1 }')
    [ -z "$rust_rate" ] && rust_rate=$rate
    awk -v l="$lang" -v size="$size" -v cs="$compile_s" -v ck="$compile_kb" -v cm="$cached_ms" \
        -v rate="$rate" -v u="$user" -v s="$sys" -v n="$rows" -v rss="$rss_kb" -v r0="$rust_rate" \
        'BEGIN { printf "%-7s %9.1f %10.1f %10.0f %9d %11d %10.2f %10.0f %7.2f\n",
                 l, size / 1e6, cs, ck / 1024, cm, rate, (u + s) / n * 1e6, rss / 1024, rate / r0 }'
    grep "events/s" "$work/$lang/run.err" >&2
done
status=0
for lang in "${langs[@]}"; do
    [ "$lang" = rust ] || [ ! -f "$work/rust/out.jsonl" ] && continue
    # Sorted: where the coordinator's keyless `Global Metric` lines fall
    # among the worker's depends on timing (each line is deterministic).
    if cmp -s <(sort "$work/rust/out.jsonl") <(sort "$work/$lang/out.jsonl"); then
        echo "results of $lang: identical to rust's ($(wc -l <"$work/rust/out.jsonl") lines)"
    else
        echo "results of $lang: DIFFERENT from rust's"
        status=1
    fi
done
exit "$status"
