#!/usr/bin/env bash
# A flame graph of the gateway's process under load: `perf record` (the kernel's `cpu-clock`
# timer, which needs no hardware counters) with DWARF call stacks, folded and drawn with
# inferno (`cargo install inferno`).
#
#   scripts/flamegraph-gateway.sh                  # every, then bare (the floor)
#   scripts/flamegraph-gateway.sh single every bare
#   REQUESTS=20000 WARMUP=2000 CONCURRENCY=1 scripts/flamegraph-gateway.sh single
#
# For each config (named as in scripts/lib/profiling.sh: `single`, `all`, `every`,
# `every-tree`..., `cached`, `cache-miss`; or `bare`, `bare-stream`) it starts the fake
# upstream and the gateway (or the bare hyper proxy, the floor of one hop) pinned to CPU 0,
# as the load run pins them, warms it up (WARMUP requests: enough for the `every` config's
# cache to reach its memory bound, past which its memory is reused instead of faulted in),
# then records the gateway's process while `loadgen count` drives it from CPU 1 (`perf`
# itself runs there too), at the default log level (`info`: a line per request). The
# gateway's own threads (workers, the log writer) and the kernel's work on their behalf
# (socket reads and writes, wake-ups) are all in the samples; the upstream and the load
# generator are not.
#
# Written to OUT per config:
#   NAME.svg      the flame graph (open it in a browser: it zooms and searches)
#   NAME.folded   the folded stacks it is drawn from (`grep`, or `inferno-flamegraph`)
#   NAME.top.txt  CPU time per request: the kernel's by system call, user space's by crate,
#                 and the leaf frames that hold the most
#
# Environment: CONFIGS as arguments; REQUESTS (60000), WARMUP (60000), CONCURRENCY (32),
# MODE (json|stream), FREQ (sampling Hz, 1999), GATEWAY_LOG (info), OUT (target/flamegraph),
# CARGO_TARGET_DIR (target/callgrind: the release build with line tables that
# callgrind-gateway.sh builds), NO_BUILD=1, BIN (the directory of the binaries), UPSTREAM_TLS
# (h2|http1: the upstream over TLS, see scripts/lib/profiling.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-60000}
WARMUP=${WARMUP:-60000}
CONCURRENCY=${CONCURRENCY:-32}
MODE=${MODE:-json}
FREQ=${FREQ:-1999}
OUT=${OUT:-target/flamegraph}
TARGET_DIR=${CARGO_TARGET_DIR:-target/callgrind}
CONFIGS=("$@")
[ ${#CONFIGS[@]} -eq 0 ] && CONFIGS=(every bare)

for tool in perf taskset python3 inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || {
    echo "needs $tool (perf: apt-get install linux-perf; inferno: cargo install inferno)" >&2
    exit 2
  }
done
# shellcheck source=lib/profiling.sh
. scripts/lib/profiling.sh
build_binaries
BIN=${BIN:-$TARGET_DIR/release}
mkdir -p "$OUT"

drive() { # ADDR N [flags]
  taskset -c 1 "$BIN/loadgen" count --addr "$1" --requests "$2" --mode "$MODE" \
    --concurrency "$CONCURRENCY" "${@:3}"
}

UPSTREAM_PORT=$(free_port)
refuse_bare_over_tls "${CONFIGS[@]}"
upstream_flags "$OUT"
taskset -c 0 "$BIN/fake-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" "${upstream_tls[@]}" \
  >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
wait_for_upstream_ca

for name in "${CONFIGS[@]}"; do
  vary=()
  port=$(free_port)
  if [ "$name" = bare ] || [ "$name" = bare-stream ]; then
    stream=()
    [ "$name" = bare-stream ] && stream=(--stream-body)
    taskset -c 0 "$BIN/bare-proxy" --listen "127.0.0.1:$port" \
      --upstream "127.0.0.1:$UPSTREAM_PORT" "${stream[@]}" >"$OUT/$name.log" 2>&1 &
  else
    render_config "$name" "$UPSTREAM_PORT" "$OUT/$name.json"
    RUST_LOG=${GATEWAY_LOG:-info} taskset -c 0 "$BIN/portcullis" --config "$OUT/$name.json" \
      --listen "127.0.0.1:$port" >"$OUT/$name.log" 2>&1 &
  fi
  gw=$!
  PIDS+=("$gw")
  for _ in $(seq 60); do
    drive "127.0.0.1:$port" 1 2>/dev/null && break
    sleep 0.2
  done
  drive "127.0.0.1:$port" "$WARMUP" "${vary[@]}" 2>"$OUT/$name.warmup.log" ||
    { cat "$OUT/$name.warmup.log" >&2; exit 1; }
  taskset -c 1 perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,16384 -p "$gw" \
    -o "$OUT/$name.perf.data" 2>"$OUT/$name.perf.log" &
  perf_pid=$!
  PIDS+=("$perf_pid")
  sleep 0.5
  drive "127.0.0.1:$port" "$REQUESTS" "${vary[@]}" 2>"$OUT/$name.count.log" ||
    { cat "$OUT/$name.count.log" >&2; exit 1; }
  kill -INT "$perf_pid"
  wait "$perf_pid" 2>/dev/null || true
  kill "$gw"
  wait "$gw" 2>/dev/null || true
  perf script -i "$OUT/$name.perf.data" 2>/dev/null | inferno-collapse-perf >"$OUT/$name.folded"
  inferno-flamegraph --title "$name, $MODE, c=$CONCURRENCY, pinned (perf cpu-clock)" \
    --minwidth 0.5 <"$OUT/$name.folded" >"$OUT/$name.svg"
  python3 - "$OUT/$name.folded" "$REQUESTS" >"$OUT/$name.top.txt" <<'EOF'
# Where each request's CPU time went. Each sample weighs the nanoseconds of CPU its timer
# stands for, so the folded totals are CPU time. A sample inside a system call or a page fault
# is the kernel's, by the call; any other goes to the crate of its innermost frame that names
# one (the allocator's frames are `alloc (mimalloc)`; core, alloc and std inlined into a
# crate's function count as that crate's).
import collections, re, sys
path, requests = sys.argv[1], int(sys.argv[2])
crate = re.compile(r"^<?([a-z][a-z0-9_]*)::")
plain = {"core", "alloc", "std"}
total, kernel, user, frames = 0, collections.Counter(), collections.Counter(), collections.Counter()
for line in open(path):
    stack, _, count = line.rstrip().rpartition(" ")
    count, fr = int(count), stack.split(";")
    total += count
    frames[fr[-1]] += count
    if "do_syscall_64" in fr:
        at = fr.index("do_syscall_64")
        kernel[fr[at + 1] if at + 1 < len(fr) else "?"] += count
        continue
    if "asm_exc_page_fault" in fr:
        kernel["page fault"] += count
        continue
    owner = "other"
    for f in reversed(fr):
        if f.startswith(("mi_", "_mi_")):
            owner = "alloc (mimalloc)"
            break
        m = crate.match(f)
        if m and m.group(1) not in plain:
            owner = m.group(1)
            break
    user[owner] += count
def us(ns):
    return ns / requests / 1000
print(f"{us(total):.1f} us of CPU per request ({requests} requests)")
print(f"\nkernel, by system call: {us(sum(kernel.values())):.1f} us")
for k, v in kernel.most_common(8):
    print(f"{us(v):8.2f} us  {k}")
print(f"\nuser space, by crate: {us(sum(user.values())):.1f} us")
for k, v in user.most_common(30):
    print(f"{us(v):8.2f} us  {k}")
print("\nleaf frames")
for k, v in frames.most_common(30):
    print(f"{us(v):8.2f} us  {k[:150]}")
EOF
  echo "$name: $(head -1 "$OUT/$name.top.txt"); $OUT/$name.svg"
  rm -f "$OUT/$name.perf.data"
done
