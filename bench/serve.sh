#!/usr/bin/env bash
# The serving benchmark: Tessera against nginx serving the same files, in the same run.
#   bench/serve.sh            full table (c up to 10000, 2000 images)
#   bench/serve.sh --quick    c up to 1000, shorter wrk runs (a few minutes)
# Installs ab (apache2-utils), wrk and nginx if missing; results also go to target/bench/serve.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh nginx apache2-utils wrk
ulimit -n "$(ulimit -Hn)"
cargo build --release --bin tessera --bin tessera-bench
exec target/release/tessera-bench serve "$@"
