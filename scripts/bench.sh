#!/usr/bin/env bash
# Regenerates every benchmark figure of BENCHMARKS.md in one command:
#   1. release builds of the gateway and the load-run binaries,
#   2. the criterion microbenches of every crate (their reports land in target/criterion),
#   3. the end-to-end load run, whose Markdown section lands in target/bench/e2e.md.
#
# Usage: scripts/bench.sh [loadgen options]
#   e.g. scripts/bench.sh --duration 10 --cpus-loadgen 0 --cpus-proxy 1
# Environment: SKIP_CRITERION=1 runs only the load run (after the builds).
#
# Take figures on a quiet machine: the load generator, the upstream and the hop under test
# share its CPUs, and anything else running moves every row.
set -euo pipefail

cd "$(dirname "$0")/.."
out=target/bench/e2e.md

cargo build --release -p portcullis-gateway -p portcullis-loadgen

if [[ "${SKIP_CRITERION:-0}" != 1 ]]; then
    cargo bench --workspace -- --warm-up-time 1 --measurement-time 3
fi

mkdir -p "$(dirname "$out")"
status=0
PORTCULLIS_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" \
    target/release/loadgen --gateway-bin target/release/portcullis --out "$out" "$@" || status=$?
if [[ $status -eq 0 ]]; then
    echo "load-run section written to $out (paste it into BENCHMARKS.md)" >&2
else
    echo "load run reported failures (exit $status): see the notes in $out" >&2
fi
exit "$status"
