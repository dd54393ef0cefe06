#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, openraft's storage suite and the
# cluster tests (real node processes on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
# ab, wrk and nginx: the benchmark test runs them at toy sizes. zstd and python3-venv: the
# import/export tests make fixtures and read exports back with datumaro and pycocotools.
# chromium: the browser test (driven by playwright-core, which needs node and npm).
# iptables and iproute2: the chaos campaign's network partitions.
scripts/setup.sh nginx apache2-utils wrk zstd python3-venv chromium iptables iproute2
command -v npm >/dev/null || scripts/setup.sh nodejs npm
venv=target/formats-venv
if ! cmp -s tests/formats/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tests/formats/requirements.txt
  cp tests/formats/requirements.txt "$venv/requirements.txt"
fi
# schemathesis for the API fuzz run (tests/cluster/api_fuzz.rs), in a venv of its own so its
# pins and datumaro's cannot conflict.
venv=target/api-fuzz-venv
if ! cmp -s tests/api/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tests/api/requirements.txt
  cp tests/api/requirements.txt "$venv/requirements.txt"
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The cluster tests start the `tessera` binary itself.
cargo build --bins
# In-process tests (domain transitions and properties, formats, storage, the openraft suite,
# the API's socket tests) run in parallel; cluster tests one at a time, since each runs several
# node processes on a 2-core machine.
cargo test --workspace --exclude tessera-cluster-tests
cargo test -p tessera-cluster-tests -- --test-threads=1
# An old data dir (written by the tree before the domain crate) starts and serves everything.
scripts/upgrade-check.sh
# A short seeded fault campaign (about 2 minutes): 5 nodes, kills, pauses and partitions; exits
# non-zero on any safety violation. Disk faults are left out to keep it short: they have their
# own cluster tests (volumes::*, failures::a_node_with_a_corrupt_database_*, disk_full), and
# docs/reliability.md has the 200-cycle runs with every fault.
target/debug/chaos --seed 7 --cycles 24 --hold-ms 1500-3500 --quiet-ms 300 --out target/chaos/ci \
  --faults kill-node,kill-shard-leader,kill-catalogue-leader,pause,isolate,split,bridge
