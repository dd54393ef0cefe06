#!/bin/bash
# Write amplification of ingest: bytes the nodes write (write_bytes of /proc/<pid>/io) per
# uploaded byte per replica. Starts 3 nodes (8 shards, replication 3, production Raft timing)
# from BINARY, uploads a corpus of 2000 incompressible 150 KB PNG-framed files with
# `tessera put` (4 processes), waits 5 s for flushes, and prints the figure.
#
#   bench/write-amplification.sh target/debug/tessera [LABEL]
set -euo pipefail
BIN=$(realpath "$1")
LABEL=${2:-$1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera-wa-XXXX")
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export RUST_BACKTRACE=0

python3 - "$WORK/corpus" <<'PY'
import os, struct, sys, zlib
out = sys.argv[1]
os.makedirs(out)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
for i in range(2000):
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 640, 480, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", os.urandom(150000)) + chunk(b"IEND", b"")
    open(os.path.join(out, f"img{i:05}.png"), "wb").write(png)
PY

base=$((20000 + RANDOM % 20000))
printf '[cluster]\nshards = 8\nreplication = 3\n' > "$WORK/cluster.toml"
for i in 1 2 3; do
  printf '[[node]]\nid = %d\nhttp = "127.0.0.1:%d"\nrpc = "127.0.0.1:%d"\ndata = "node-%d"\n' \
    "$i" $((base + i)) $((base + 10 + i)) "$i" >> "$WORK/cluster.toml"
done
export TESSERA_ADMIN_PASSWORD=write-amplification
# The internal RPC's certificates (mutual TLS under the cluster's own CA).
"$BIN" ca --config "$WORK/cluster.toml" > /dev/null
pids=()
for i in 1 2 3; do
  "$BIN" run --id "$i" --config "$WORK/cluster.toml" > "$WORK/node-$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 60); do
  # The node's init token (a file in its data dir, relative to the config) authorises it.
  init=$(cat "$WORK/node-1/init-token" 2>/dev/null || true)
  curl -sf -XPOST "http://127.0.0.1:$((base + 1))/api/v1/cluster/init" \
    -H "Authorization: Bearer $init" > /dev/null && break
  sleep 1
done
for i in 1 2 3; do
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$((base + i))/readyz" > /dev/null && break; sleep 1; done
done
written() { local s=0; for p in "${pids[@]}"; do s=$((s + $(awk '/^write_bytes/{print $2}' "/proc/$p/io"))); done; echo $s; }
before=$(written)
bytes=$(du -sb "$WORK/corpus" | cut -f1)
start=$(date +%s.%N)
ls "$WORK"/corpus/*.png | xargs -n 100 -P 4 "$BIN" put --config "$WORK/cluster.toml" > /dev/null 2>&1
end=$(date +%s.%N)
sleep 5
after=$(written)
python3 -c "
b, w, t = $bytes, $after - $before, $end - $start
print('$LABEL: %.0f MB uploaded in %.1f s (%.1f MB/s); nodes wrote %.0f MB: %.2f bytes per byte per replica'
      % (b / 1e6, t, b / 1e6 / t, w / 1e6, w / b / 3))"
# Where the bytes went, per byte uploaded per replica: volume files as they are now, the log's
# blob files (full entries flushed before their apply rewrote them as stubs) and SST files of
# every column family, from each node's metrics; the rest of what was written is WAL.
volumes=$(find "$WORK" -type d -name volumes -exec du -sb {} + | awk '{s += $1} END {print s}')
metric() { for i in 1 2 3; do curl -sf "http://127.0.0.1:$((base + i))/metrics"; done | awk -v m="$1" 'index($0, m) == 1 {s += $2} END {print s + 0}'; }
python3 -c "
b, w = $bytes * 3, $after - $before
v, blob, sst = $volumes, $(metric 'tessera_rocksdb_blob_bytes{cf="log"}'), $(metric tessera_rocksdb_sst_bytes)
print('per byte per replica: volumes %.3f, log blob files %.3f, SST files %.3f, the rest (WAL, rewritten pages) %.3f'
      % (v / b, blob / b, sst / b, (w - v - blob - sst) / b))"
