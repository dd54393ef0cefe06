#!/usr/bin/env bash
# CPU per object GET of one node, for comparing two builds on the same machine in one sitting:
#   bench/cpu_ab.sh <tessera binary> [port]      (CONCURRENCY=1000 for more connections than 20)
# Starts a one-node cluster (replication 1) from the binary, uploads one image of the serving
# benchmark's corpus (run bench/serve.sh once first), and runs ab against it: keep-alive and a
# new connection per request, with a bearer token and with a presigned URL. Prints req/s and the
# node's CPU (utime + stime from /proc, 10 ms ticks) per request. Run both builds back to back,
# twice in alternating order: a shared machine drifts. CACHE_MB sets the node's object cache
# (default 128; 0 sends every body from its volume file with sendfile).
set -euo pipefail
BIN=$(realpath "$1")
PORT=${2:-19100}
C=${CONCURRENCY:-20}
CORPUS=${TMPDIR:-/tmp}/tessera-bench-corpus-1
DIR=$(mktemp -d)
cd "$DIR"
cat > cluster.toml <<TOML
[cluster]
shards = 8
replication = 1
cache_mb = ${CACHE_MB:-128}

[raft]
heartbeat_ms = 100
election_timeout_ms = 800

[[node]]
id = 1
http = "127.0.0.1:$PORT"
rpc = "127.0.0.1:$((PORT + 1))"
data = "node-1"
TOML
# The internal RPC's certificates (mutual TLS under the cluster's own CA; builds before it have
# no `ca` command and need none).
"$BIN" ca --config cluster.toml >/dev/null 2>&1 || true
TESSERA_ADMIN_PASSWORD=bench RUST_LOG=warn "$BIN" run --id 1 --config cluster.toml >node.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
BASE="http://127.0.0.1:$PORT"
json() { python3 -c "import sys, json; print(json.load(sys.stdin)['$1'])"; }
for _ in $(seq 1 150); do
    # The node's init token (a file in its data dir) authorises initialisation; older builds
    # need none and ignore the header.
    INIT=$(cat node-1/init-token 2>/dev/null || true)
    curl -s -XPOST "$BASE/api/v1/cluster/init" -H "Authorization: Bearer $INIT" | grep -q initialized && break
    sleep 0.2
done
TOKEN=$(curl -s -XPOST "$BASE/oauth/token" -d 'grant_type=password&username=admin&password=bench' | json access_token)
IMAGE=$(ls "$CORPUS"/*.jpg | sed -n 1000p)
SHA=$(curl -s -XPOST "$BASE/api/v1/objects" -H "Authorization: Bearer $TOKEN" --data-binary @"$IMAGE" | json sha256)
URL=$(curl -s "$BASE/api/v1/objects/$SHA" -H "Authorization: Bearer $TOKEN" | json url)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
run() {
    local name=$1
    shift
    local before after out
    before=$(cpu_ticks)
    out=$(ab "$@" 2>&1)
    after=$(cpu_ticks)
    local n rps failed
    n=$(awk '/Complete requests/ {print $3}' <<<"$out")
    rps=$(awk '/Requests per second/ {print $4}' <<<"$out")
    failed=$(awk '/Failed requests/ {print $3}' <<<"$out")
    printf '%-22s %9s req/s %5d us cpu/req  failed %s\n' "$name" "$rps" $(((after - before) * 10000 / n)) "$failed"
}
run "ab -k c=$C bearer" -k -n 40000 -c "$C" -H "Authorization: Bearer $TOKEN" "$BASE/objects/$SHA"
run "ab -k c=$C presigned" -k -n 40000 -c "$C" "$BASE$URL"
run "ab c=$C bearer" -n 20000 -c "$C" -H "Authorization: Bearer $TOKEN" "$BASE/objects/$SHA"
run "ab c=$C presigned" -n 20000 -c "$C" "$BASE$URL"
