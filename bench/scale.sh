#!/usr/bin/env bash
# Random reads against the number of stored objects: one node (replication 1, 16 shards) stores
# 10 000 small objects (2 KB PNGs, uploaded 64 at a time), wrk reads random ones at c = 100;
# then up to 1 000 000 and the same reads again. Prints req/s, p99, CPU per request and RSS at
# each step, and the ratio to the first step (target >= 0.9).
#   bench/scale.sh                       10 000 and 1 000 000 objects
#   bench/scale.sh --steps 10000,100000  other steps (ascending)
# Results also go to target/bench/scale.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh wrk
ulimit -n "$(ulimit -Hn)"
cargo build --release --bin tessera --bin tessera-bench
exec target/release/tessera-bench scale "$@"
