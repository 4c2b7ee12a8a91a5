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
#
#   upstream_flags DIR   sets the array `upstream_tls` to fake-upstream's TLS flags: with
#                        UPSTREAM_TLS=h2 (HTTP/2 by ALPN) or UPSTREAM_TLS=http1 the upstream
#                        serves over TLS, its CA written to DIR/upstream-ca.pem, and
#                        render_config points the gateway there (`https://`,
#                        `server.upstream_ca_file`): the path real providers are reached by.
#                        Unset: plain HTTP. wait_for_upstream_ca, once fake-upstream is
#                        started, waits until that file is written; refuse_bare_over_tls
#                        NAME... stops a run that asks for the bare proxy over TLS.

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

UPSTREAM_CA=
upstream_flags() {
  upstream_tls=()
  case ${UPSTREAM_TLS:-} in
    '') return ;;
    h2 | http1) ;;
    *) echo "UPSTREAM_TLS is h2 or http1" >&2; exit 2 ;;
  esac
  UPSTREAM_CA=$(realpath "$1")/upstream-ca.pem
  # A CA of an earlier run is no use: this upstream makes its own.
  rm -f "$UPSTREAM_CA"
  upstream_tls=(--tls "$UPSTREAM_TLS" --ca-out "$UPSTREAM_CA")
}

# With UPSTREAM_TLS, refuses the bare proxy among CONFIG...: it speaks plain HTTP upstream.
refuse_bare_over_tls() {
  [ -z "${UPSTREAM_TLS:-}" ] && return
  local name
  for name in "$@"; do
    case $name in bare | bare-stream)
      echo "$name: the bare proxy speaks plain HTTP to its upstream; measure it without UPSTREAM_TLS" >&2
      exit 2 ;;
    esac
  done
}

# After fake-upstream started: waits for the CA it writes (with UPSTREAM_TLS).
wait_for_upstream_ca() {
  [ -z "$UPSTREAM_CA" ] && return
  for _ in $(seq 200); do
    [ -s "$UPSTREAM_CA" ] && return
    sleep 0.05
  done
  echo "fake-upstream wrote no CA to $UPSTREAM_CA" >&2
  exit 1
}

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
  if [ -n "$UPSTREAM_CA" ]; then
    python3 - "$out" "$UPSTREAM_CA" <<'EOF_TLS'
import json, sys
path, ca = sys.argv[1], sys.argv[2]
doc = json.load(open(path))
for provider in doc["providers"].values():
    if provider.get("base_url", "").startswith("http://127.0.0.1:"):
        provider["base_url"] = "https://" + provider["base_url"][len("http://"):]
doc.setdefault("server", {})["upstream_ca_file"] = ca
json.dump(doc, open(path, "w"), indent=2)
EOF_TLS
  fi
}
