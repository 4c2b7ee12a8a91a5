#!/usr/bin/env bash
# CPU per request of two or more builds of the gateway under the same load, run in turns: the
# quick A/B of a change smaller than what the load run can tell apart between sittings (its
# rows move by 20-40% on a shared VM; runs taken in turns share the same noise).
#
#   scripts/ab-gateway.sh single /tmp/before /tmp/after
#   ROUNDS=8 WARMUP=60000 scripts/ab-gateway.sh every /tmp/before /tmp/after
#
# Each BUILD is a directory holding a `portcullis` binary (copy `target/release/portcullis`
# aside before rebuilding). CONFIG is named as in scripts/lib/profiling.sh (`single`, `all`,
# `every`, `cached`, ...). Round by round, each build in turn (the order reversed every other
# round) serves the config on CPU 0 beside the fake upstream, as the load run pins them, and
# `loadgen count` drives it from CPU 1 at CONCURRENCY: WARMUP requests first (enough for
# `every` to fill its cache to its bound), then REQUESTS measured. The CPU is the gateway
# process's user and system time over the measured requests, read from /proc (in clock
# ticks: 10 ms, under 1% of a measurement of 40,000 requests); the peak RSS is its VmHWM.
#
# Printed: a line per run, then per build the median and the range.
#
# Environment: ROUNDS (6), WARMUP (20000), REQUESTS (40000), CONCURRENCY (32), MODE
# (json|stream), GATEWAY_LOG (info), TOOLS (where `fake-upstream` and `loadgen` are; default
# target/callgrind/release, which scripts/callgrind-gateway.sh builds), UPSTREAM_TLS (h2|http1:
# the upstream over TLS, see scripts/lib/profiling.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 3 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
CONFIG=$1
shift
BUILDS=("$@")
ROUNDS=${ROUNDS:-6}
WARMUP=${WARMUP:-20000}
REQUESTS=${REQUESTS:-40000}
CONCURRENCY=${CONCURRENCY:-32}
MODE=${MODE:-json}
TOOLS=${TOOLS:-target/callgrind/release}
for b in "${BUILDS[@]}"; do
  [ -x "$b/portcullis" ] || { echo "no portcullis binary in $b" >&2; exit 2; }
done
for t in fake-upstream loadgen; do
  [ -x "$TOOLS/$t" ] || { echo "no $t in $TOOLS (build: cargo build --release -p portcullis-loadgen)" >&2; exit 2; }
done
command -v taskset >/dev/null || { echo "needs taskset" >&2; exit 2; }
# shellcheck source=lib/profiling.sh
. scripts/lib/profiling.sh
TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d)
RESULTS=$WORK/results
trap 'stop_all; rm -rf "$WORK"' EXIT

drive() { # ADDR N
  taskset -c 1 "$TOOLS/loadgen" count --addr "$1" --requests "$2" --mode "$MODE" \
    --concurrency "$CONCURRENCY" "${vary[@]}"
}
cpu_ticks() { # PID: user + system time, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

UPSTREAM_PORT=$(free_port)
upstream_flags "$WORK"
taskset -c 0 "$TOOLS/fake-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" "${upstream_tls[@]}" \
  >"$WORK/upstream.log" 2>&1 &
UPSTREAM=$!
PIDS=("$UPSTREAM")
wait_for_upstream_ca
failed() { # LOG: the load generator's and the gateway's output, then stop
  cat "$1" "$WORK/gateway.log" >&2
  exit 1
}

for round in $(seq "$ROUNDS"); do
  order=("${!BUILDS[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#BUILDS[@]} - 1; i >= 0; i--)); do order+=("$i"); done
  fi
  for i in "${order[@]}"; do
    build=${BUILDS[$i]}
    # Named by position too, so that a build given twice (an A/A check) stays two rows.
    label="$((i + 1)):$build"
    port=$(free_port)
    render_config "$CONFIG" "$UPSTREAM_PORT" "$WORK/$CONFIG.json"
    RUST_LOG=${GATEWAY_LOG:-info} taskset -c 0 "$build/portcullis" --config "$WORK/$CONFIG.json" \
      --listen "127.0.0.1:$port" >"$WORK/gateway.log" 2>&1 &
    gw=$!
    PIDS=("$UPSTREAM" "$gw")
    for _ in $(seq 60); do
      drive "127.0.0.1:$port" 1 2>/dev/null && break
      sleep 0.2
    done
    drive "127.0.0.1:$port" "$WARMUP" 2>"$WORK/warmup.log" || failed "$WORK/warmup.log"
    before=$(cpu_ticks "$gw")
    drive "127.0.0.1:$port" "$REQUESTS" 2>"$WORK/count.log" || failed "$WORK/count.log"
    after=$(cpu_ticks "$gw")
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$gw/status")
    kill "$gw"
    wait "$gw" 2>/dev/null || true
    PIDS=("$UPSTREAM")
    python3 - "$round" "$label" "$before" "$after" "$TICK" "$REQUESTS" "$rss" "$RESULTS" <<'EOF'
import sys
rnd, label, before, after, tick, n, rss, results = sys.argv[1:]
us = (int(after) - int(before)) / int(tick) * 1e6 / int(n)
print(f"round {rnd}  {label}  {us:.2f} us/request  peak RSS {int(rss) / 1024:.1f} MiB")
with open(results, "a") as out:
    out.write(f"{label}\t{us}\n")
EOF
  done
done

python3 - "$RESULTS" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, us = line.rstrip("\n").split("\t")
    runs[label].append(float(us))
print()
for build, us in runs.items():
    print(f"{build}: median {statistics.median(us):.2f} us/request, "
          f"range {min(us):.2f}-{max(us):.2f} ({len(us)} runs)")
EOF
