#!/usr/bin/env bash
# Instructions per request of the gateway's fixed path, measured with callgrind: a count that
# does not move with the machine's load, unlike wall-clock or CPU time.
#
#   scripts/callgrind-gateway.sh                  # the `single` and `all` configs
#   scripts/callgrind-gateway.sh single all every cached cache-miss bare
#   REQUESTS=500 MODE=stream scripts/callgrind-gateway.sh single
#
# For each config (named as in scripts/lib/profiling.sh: `single`, `all`, `every`,
# `every-tree`, `every-cache`, `every-guard`, `every-budget`, `cached`, `cache-miss`;
# `bare` is the bare hyper proxy of the load run instead of the gateway, the floor of one hop,
# reading each body whole; `bare-stream` the same proxy streaming the body on) it starts the
# fake upstream, then the `portcullis` binary under `valgrind --tool=callgrind` with the
# default log level (`info`: the request log line is part of the path), sends WARMUP requests
# (`loadgen count`), zeroes the counters, sends REQUESTS more, dumps, and stops the gateway.
# The counts are of the gateway process alone (every thread: workers, the log writer); the
# load generator and the upstream run natively in their own processes.
#
# Printed per config: Ir per request, allocations per request (calls into mimalloc's
# allocation functions from outside mimalloc) and the files kept in OUT:
#   NAME.callgrind      the dump of the measured requests (callgrind_annotate, kcachegrind)
#   NAME.inclusive.txt  callgrind_annotate --inclusive=yes: functions by inclusive count
#   NAME.self.txt       functions by their own instructions per request, with calls per
#                       request (callgrind_annotate's own listing of these dumps names
#                       only the thread entry, so the script sums them itself)
#
# Environment: REQUESTS (2000), WARMUP (200), CONCURRENCY (1), MODE (json|stream),
# GATEWAY_LOG (info), OUT (target/callgrind-out), CARGO_TARGET_DIR (target/callgrind: a
# release build with line tables, kept apart from target/release), NO_BUILD=1 to skip the
# build, BIN (the directory of the binaries; default $CARGO_TARGET_DIR/release), HEADERS
# (extra `NAME:VALUE` request headers, separated by `;`), UPSTREAM_TLS (h2|http1: the upstream
# over TLS, see scripts/lib/profiling.sh; the bare proxy speaks plain HTTP only).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
CONCURRENCY=${CONCURRENCY:-1}
MODE=${MODE:-json}
GATEWAY_LOG=${GATEWAY_LOG:-info}
OUT=${OUT:-target/callgrind-out}
TARGET_DIR=${CARGO_TARGET_DIR:-target/callgrind}
CONFIGS=("$@")
[ ${#CONFIGS[@]} -eq 0 ] && CONFIGS=(single all)

command -v valgrind >/dev/null || { echo "needs valgrind (callgrind)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "needs python3 (free ports, the per-request figures)" >&2; exit 2; }
# shellcheck source=lib/profiling.sh
. scripts/lib/profiling.sh
build_binaries
BIN=${BIN:-$TARGET_DIR/release}
mkdir -p "$OUT"

HEADER_ARGS=()
if [ -n "${HEADERS:-}" ]; then
  IFS=';' read -ra hs <<<"$HEADERS"
  for h in "${hs[@]}"; do HEADER_ARGS+=(--header "$h"); done
fi

drive() { # ADDR N [flags]
  "$BIN/loadgen" count --addr "$1" --requests "$2" --mode "$MODE" \
    --concurrency "$CONCURRENCY" "${HEADER_ARGS[@]}" "${@:3}"
}

UPSTREAM_PORT=$(free_port)
refuse_bare_over_tls "${CONFIGS[@]}"
upstream_flags "$OUT"
"$BIN/fake-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" "${upstream_tls[@]}" >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
wait_for_upstream_ca

printf '%-12s %14s %10s %12s\n' config Ir Ir/req allocs/req
for name in "${CONFIGS[@]}"; do
  vary=()
  port=$(free_port)
  rm -f "$OUT/$name.callgrind"*
  if [ "$name" = bare ] || [ "$name" = bare-stream ]; then
    # The floor: the bare hyper proxy of the load run, measured the same way (`bare` reads
    # each request body whole, `bare-stream` hands it on as it comes).
    stream=()
    [ "$name" = bare-stream ] && stream=(--stream-body)
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.callgrind" \
      "$BIN/bare-proxy" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$UPSTREAM_PORT" \
      "${stream[@]}" >"$OUT/$name.log" 2>&1 &
  else
    render_config "$name" "$UPSTREAM_PORT" "$OUT/$name.json"
    RUST_LOG=$GATEWAY_LOG valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.callgrind" \
      "$BIN/portcullis" --config "$OUT/$name.json" --listen "127.0.0.1:$port" \
      >"$OUT/$name.log" 2>&1 &
  fi
  gw=$!
  PIDS+=("$gw")
  for _ in $(seq 120); do
    drive "127.0.0.1:$port" 1 2>/dev/null && break
    sleep 0.5
  done
  drive "127.0.0.1:$port" "$WARMUP" "${vary[@]}" 2>/dev/null
  callgrind_control -z "$gw" >/dev/null
  drive "127.0.0.1:$port" "$REQUESTS" "${vary[@]}" 2>"$OUT/$name.count.log" ||
    { cat "$OUT/$name.count.log" >&2; exit 1; }
  callgrind_control -d "$gw" >/dev/null
  kill "$gw"
  wait "$gw" 2>/dev/null || true
  dump=$(ls "$OUT/$name.callgrind".* | head -1)
  mv "$dump" "$OUT/$name.callgrind"
  rm -f "$OUT/$name.callgrind".*
  callgrind_annotate --inclusive=yes "$OUT/$name.callgrind" >"$OUT/$name.inclusive.txt" 2>/dev/null || true
  python3 - "$OUT/$name.callgrind" "$REQUESTS" "$name" "$OUT/$name.self.txt" <<'EOF'
import collections, re, sys
path, n, name, self_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
names, fn, cfn, total, allocs = {}, "", "", 0, 0
own, calls, after_call = collections.Counter(), collections.Counter(), False
alloc = re.compile(r"^(mi_(malloc|zalloc|calloc|realloc|rezalloc)\w*)\b")
def named(value):
    m = re.match(r"\((\d+)\)(?: (.*))?", value)
    if not m:
        return value
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "")
for line in open(path, errors="replace"):
    if line.startswith("fn="):
        fn = named(line[3:].strip())
    elif line.startswith("cfn="):
        cfn = named(line[4:].strip())
    elif line.startswith("calls="):
        count = int(line[6:].split()[0])
        calls[cfn] += count
        after_call = True
        if alloc.match(cfn) and not re.match(r"_?mi_", fn):
            allocs += count
    elif line[:1].isdigit() or line[:1] in "+-*":
        # A cost line: the callee's inclusive cost right after `calls=`, else `fn`'s own.
        if after_call:
            after_call = False
        elif len(line.split()) > 1:
            own[fn] += int(line.split()[1])
    elif line.startswith(("summary:", "totals:")):
        total = int(line.split()[1])
with open(self_path, "w") as out:
    out.write(f"{name}: own instructions per request (of {total / n:,.0f}), calls per request\n")
    for f, v in own.most_common(80):
        out.write(f"{v / n:10,.0f} {100 * v / max(total, 1):5.1f}%  {calls[f] / n:8.2f}  {f}\n")
print(f"{name:<12} {total:>14,} {total / n:>10,.0f} {allocs / n:>12.1f}")
EOF
done
echo "dumps and annotations in $OUT"
