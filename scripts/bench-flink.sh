#!/usr/bin/env bash
# sluice against Flink on the seed's BTS job, side by side on one generated
# file: per (station, datapoint, alarm) a 60 s / 5 s sliding window and a
# global aggregate (bench/flink-bts is the idiomatic Flink 1.20 job for it).
# Checks that both give the same Windowed Analytic lines, then prints events
# per CPU-second (user + system time of the whole process, JVM start and JIT
# included for Flink, component compile included for sluice) and the ratio.
#
# usage: scripts/bench-flink.sh [EVENTS] [WORKERS...]
#   EVENTS   rows to generate (default 1000000; 1 % dirty, 5 % out of order)
#   WORKERS  sluice worker counts and Flink parallelisms (default: 1 2)
# Honours CARGO_TARGET_DIR. Needs Java 17 and Maven (Flink's jars come from
# Maven Central on the first run, cached in ~/.m2). Figures on a shared VM
# swing: compare within one run; the load average is printed with them.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
shift || true
workers=("$@")
[ ${#workers[@]} -gt 0 ] || workers=(1 2)

cargo xtask build-examples >&2
cargo build --release -p sluice-host --bin sluice >&2
bin="${CARGO_TARGET_DIR:-target}/release/sluice"
dir="${BENCH_DIR:-target/bench-flink}"
mkdir -p "$dir"
csv="$dir/bts-$events.csv"
[ -s "$csv" ] || "$bin" gen-bts --seed 7 --events "$events" --dirty 0.01 --out-of-order 0.05 -o "$csv"
rows=$(wc -l < "$csv")

# Runs a command under GNU time; prints "wall cpu" in seconds.
measured() {
    local times="$dir/time.txt"
    /usr/bin/time -f "%e %U %S" -o "$times" "$@" >/dev/null
    awk '{ printf "%s %.3f\n", $1, $2 + $3 }' "$times"
}

windowed() { grep -h '"type":"Windowed Analytic"' "$@" | LC_ALL=C sort; }

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== input: $csv ($rows rows)"
printf '%-28s %10s %10s %14s %10s\n' run "wall s" "cpu s" "events/cpu-s" "events/s"
declare -A per_cpu
for w in "${workers[@]}"; do
    read -r wall cpu < <(measured "$bin" run examples/bts-analytics/sluice.toml --input "$csv" \
        --output "$dir/sluice-$w.jsonl" --dead-letter "$dir/dead-$w.jsonl" --workers "$w" --quiet)
    per_cpu[sluice-$w]=$(awk -v r="$rows" -v c="$cpu" 'BEGIN { printf "%.0f", r / c }')
    printf '%-28s %10s %10s %14s %10.0f\n' "sluice, $w worker(s)" "$wall" "$cpu" \
        "${per_cpu[sluice-$w]}" "$(awk -v r="$rows" -v t="$wall" 'BEGIN { print r / t }')"
    read -r wall cpu < <(measured bench/flink-bts/run.sh "$csv" "$w" "$dir/flink-$w")
    per_cpu[flink-$w]=$(awk -v r="$rows" -v c="$cpu" 'BEGIN { printf "%.0f", r / c }')
    printf '%-28s %10s %10s %14s %10.0f\n' "flink, parallelism $w" "$wall" "$cpu" \
        "${per_cpu[flink-$w]}" "$(awk -v r="$rows" -v t="$wall" 'BEGIN { print r / t }')"
    if cmp -s <(windowed "$dir/sluice-$w.jsonl") <(windowed "$dir/flink-$w"/part-*); then
        echo "   Windowed Analytic lines equal: $(windowed "$dir/sluice-$w.jsonl" | wc -l)"
    else
        echo "   Windowed Analytic lines DIFFER (sluice $(windowed "$dir/sluice-$w.jsonl" | wc -l)," \
            "flink $(windowed "$dir/flink-$w"/part-* | wc -l))" >&2
        exit 1
    fi
done
echo "== events per CPU-second, sluice / flink"
for w in "${workers[@]}"; do
    awk -v s="${per_cpu[sluice-$w]}" -v f="${per_cpu[flink-$w]}" -v w="$w" \
        'BEGIN { printf "   %s worker(s): %.2fx\n", w, s / f }'
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
