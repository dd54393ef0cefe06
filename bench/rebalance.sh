#!/usr/bin/env bash
# Adding a node to a loaded cluster: 3 nodes (32 shards, RF 3) hold the corpus (14 500 JPEGs,
# ~2.05 GB); a reader GETs random objects at a fixed rate (200/s, open loop) while a 4th node is
# added. Prints bytes moved, time to converge, GET p50/p99 before/during/after and failed GETs,
# once per snapshot rate limit (64 and 16 MiB/s).
#   bench/rebalance.sh                                   the full run
#   bench/rebalance.sh --images 3000 --limits 64         a smaller one
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
cargo build --release --bin tessera --bin tessera-bench
exec target/release/tessera-bench rebalance "$@"
