#!/usr/bin/env bash
# The soak of issue 15 (not part of CI): release builds, then `loadgen soak`, which starts the
# fake upstream (with injected faults: 503s, slow answers, bodies broken mid-stream, streams cut
# short) and the gateway with every layer (crates/loadgen/configs/soak.json), drives mixed load
# with client drops for SOAK_SECS seconds, samples the gateway's RSS and open fds from /proc
# and prints a table and a verdict (flat or not). The Markdown report lands in
# target/soak/soak.md.
#
# Usage: scripts/soak.sh [loadgen soak options]
#   e.g. SOAK_SECS=120 scripts/soak.sh --concurrency 32 --drop-share 0.3
# Environment: SOAK_SECS (default 600), SOAK_SAMPLE_SECS (default 5).
# Exit status: 0 flat and every stream ended properly, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
out=target/soak/soak.md

cargo build --release -p portcullis-gateway -p portcullis-loadgen

mkdir -p "$(dirname "$out")"
exec target/release/loadgen soak \
    --duration "${SOAK_SECS:-600}" \
    --sample "${SOAK_SAMPLE_SECS:-5}" \
    --gateway-bin target/release/portcullis \
    --out "$out" "$@"
