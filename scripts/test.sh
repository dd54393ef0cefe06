#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, openraft's storage suite and the
# cluster tests (real node processes on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
# ab, wrk and nginx: the benchmark test runs them at toy sizes.
scripts/setup.sh nginx apache2-utils wrk
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The cluster tests start the `tessera` binary itself.
cargo build --bins
# One test at a time: each cluster test runs several node processes on a 2-core machine.
cargo test --workspace -- --test-threads=1
