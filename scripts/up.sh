#!/usr/bin/env bash
# Builds Tessera (release) and starts the default local cluster from cluster.toml.
# Extra arguments go to `tessera up` (e.g. --config other.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin tessera
exec target/release/tessera up --config cluster.toml "$@"
