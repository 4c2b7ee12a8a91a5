# Sourced by scripts/callgrind-gateway.sh and scripts/flamegraph-gateway.sh: the configs they
# measure, by name.
#
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
