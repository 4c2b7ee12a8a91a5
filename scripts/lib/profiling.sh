# Sourced by scripts/callgrind-gateway.sh and scripts/flamegraph-gateway.sh (from the
# repository's root, after they set TARGET_DIR): what both do before and around measuring.
#
#   build_binaries       the release build with line tables both measure (in TARGET_DIR),
#                        unless NO_BUILD is set
#   free_port            a free TCP port on 127.0.0.1
#   PIDS+=(PID)          a process to stop when the script exits (the trap is set here)
#   render_config NAME UPSTREAM_PORT OUT_FILE
#
# writes the gateway's config for NAME (crates/loadgen/configs/NAME.json, the upstream's port
# filled in) to OUT_FILE and sets the array `vary` to the `loadgen count` flags the config
# needs. Names: `single`, `cached` and `soak` are their files; `all` is all-layers.json;
# `cache-miss` is cached.json with a cache namespace per request, so every request misses;
# `every` is every-layer.json (the all-layers tree, cache, guardrails, budgets), every request
# a miss; `every-tree`, `every-cache`, `every-guard` and `every-budget` are that file with no
# family of layers or only that one left in, every request a miss, to see what each family
# adds. (`bare` and `bare-stream`, the bare hyper proxy, have no config: the scripts start
# that proxy instead of the gateway.)

build_binaries() {
  if [ -z "${NO_BUILD:-}" ]; then
    CARGO_TARGET_DIR=$TARGET_DIR CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_INCREMENTAL=0 \
      cargo build --release -p portcullis-gateway -p portcullis-loadgen
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

render_config() {
  local name=$1 port=$2 out=$3 file=$1.json
  vary=()
  case $name in
    all) file=all-layers.json ;;
    cache-miss) file=cached.json && vary=(--vary-cache-namespace) ;;
    every | every-*) file=every-layer.json && vary=(--vary-cache-namespace) ;;
  esac
  sed "s/\${UPSTREAM_PORT}/$port/g" "crates/loadgen/configs/$file" >"$out"
  case $name in every-*) python3 - "$out" "${name#every-}" <<'EOF_KEEP'
import json, sys
path, keep = sys.argv[1], sys.argv[2]
if keep not in ("tree", "cache", "guard", "budget"):
    sys.exit(f"every-{keep}: not a family of layers (tree, cache, guard, budget)")
doc = json.load(open(path))
config = doc["config"]
if keep != "cache":
    config.pop("cache")
if keep != "guard":
    config.pop("input_guardrails")
    config.pop("output_guardrails")
    doc.pop("guardrails")
if keep != "budget":
    doc["server"].pop("limits")
    for provider in doc["providers"].values():
        provider.pop("usage_limits")
        provider.pop("rate_limits")
json.dump(doc, open(path, "w"), indent=2)
EOF_KEEP
  esac
}
