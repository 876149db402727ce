#!/usr/bin/env bash
# sluice against Flink on the seed's BTS job, side by side on one generated
# file: per (station, datapoint, alarm) a 60 s / 5 s sliding window and a
# global aggregate (bench/flink-bts is the idiomatic Flink 1.20 job for it).
# Checks that both give the same Windowed Analytic lines (numbers equal to
# 1e-12 relative: sluice sums a window's panes, Flink its events, so a mean
# can differ in its last digit), then prints events
# per CPU-second (user + system time of the whole process, JVM start and JIT
# included for Flink, component compile included for sluice) and the ratio.
#
# usage: scripts/bench-flink.sh [EVENTS] [WORKERS...]
#   EVENTS   rows to generate (default 1000000; 1 % dirty, 5 % out of order)
#   WORKERS  sluice worker counts and Flink parallelisms (default: 1 2)
# Honours CARGO_TARGET_DIR; SLUICE_BIN names a built sluice binary and skips
# the build. Needs Java 17 and Maven (Flink's jars come from
# Maven Central on the first run, cached in ~/.m2). Figures on a shared VM
# swing: compare within one run; the load average is printed with them.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
shift || true
workers=("$@")
[ ${#workers[@]} -gt 0 ] || workers=(1 2)

if [ -z "${SLUICE_BIN:-}" ]; then
    cargo xtask build-examples >&2
    cargo build --release -p sluice-host --bin sluice >&2
fi
bin="${SLUICE_BIN:-${CARGO_TARGET_DIR:-target}/release/sluice}"
dir="${BENCH_DIR:-target/bench-flink}"
mkdir -p "$dir"
csv="$dir/bts-$events.csv"
[ -s "$csv" ] || "$bin" gen-bts --seed 7 --events "$events" --dirty 0.01 --out-of-order 0.05 -o "$csv"
rows=$(wc -l < "$csv")

# Runs a command under GNU time (its output to LOG); prints "wall cpu" in
# seconds.
measured() {
    local log=$1 times="$dir/time.txt"
    shift
    /usr/bin/time -f "%e %U %S" -o "$times" "$@" >"$log" 2>&1
    awk '{ printf "%s %.3f\n", $1, $2 + $3 }' "$times"
}

windowed() { grep -h '"type":"Windowed Analytic"' "$@" | LC_ALL=C sort; }

# Compares two sorted files of JSON lines: equal, or equal but for numbers
# within 1e-12 relative. Prints what it found; fails on a real difference.
same_lines() {
    python3 - "$1" "$2" <<'PY'
import json, math, sys
def close(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b
n = last_digit = 0
with open(sys.argv[1]) as s, open(sys.argv[2]) as f:
    for a, b in zip(s, f, strict=True):
        n += 1
        if a != b:
            if not close(json.loads(a), json.loads(b)):
                sys.exit(f"differ at line {n}:\n  sluice {a.strip()}\n  flink  {b.strip()}")
            last_digit += 1
print(f"{n} lines equal ({last_digit} of them with a mean differing in its last digits)")
PY
}

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== input: $csv ($rows rows)"
printf '%-28s %10s %10s %14s %10s\n' run "wall s" "cpu s" "events/cpu-s" "events/s"
declare -A per_cpu
for w in "${workers[@]}"; do
    read -r wall cpu < <(measured "$dir/sluice-$w.log" "$bin" run examples/bts-analytics/sluice.toml --input "$csv" \
        --output "$dir/sluice-$w.jsonl" --dead-letter "$dir/dead-$w.jsonl" --workers "$w" --quiet)
    per_cpu[sluice-$w]=$(awk -v r="$rows" -v c="$cpu" 'BEGIN { printf "%.0f", r / c }')
    printf '%-28s %10s %10s %14s %10.0f\n' "sluice, $w worker(s)" "$wall" "$cpu" \
        "${per_cpu[sluice-$w]}" "$(awk -v r="$rows" -v t="$wall" 'BEGIN { print r / t }')"
    read -r wall cpu < <(measured "$dir/flink-$w.log" bench/flink-bts/run.sh "$csv" "$w" "$dir/flink-$w")
    per_cpu[flink-$w]=$(awk -v r="$rows" -v c="$cpu" 'BEGIN { printf "%.0f", r / c }')
    printf '%-28s %10s %10s %14s %10.0f\n' "flink, parallelism $w" "$wall" "$cpu" \
        "${per_cpu[flink-$w]}" "$(awk -v r="$rows" -v t="$wall" 'BEGIN { print r / t }')"
    windowed "$dir/sluice-$w.jsonl" >"$dir/sluice-$w.windowed"
    windowed "$dir/flink-$w"/part-* >"$dir/flink-$w.windowed"
    if ! agreed=$(same_lines "$dir/sluice-$w.windowed" "$dir/flink-$w.windowed"); then
        echo "   Windowed Analytic lines DIFFER" >&2
        exit 1
    fi
    echo "   Windowed Analytic: $agreed"
done
echo "== events per CPU-second, sluice / flink"
for w in "${workers[@]}"; do
    awk -v s="${per_cpu[sluice-$w]}" -v f="${per_cpu[flink-$w]}" -v w="$w" \
        'BEGIN { printf "   %s worker(s): %.2fx\n", w, s / f }'
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
