#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, openraft's storage suite and the
# cluster tests (real node processes on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
# ab, wrk and nginx: the benchmark test runs them at toy sizes. zstd and python3-venv: the
# import/export tests make fixtures and read exports back with datumaro and pycocotools.
# chromium: the browser test (driven by playwright-core, which needs node and npm).
scripts/setup.sh nginx apache2-utils wrk zstd python3-venv chromium
command -v npm >/dev/null || scripts/setup.sh nodejs npm
venv=target/formats-venv
if ! cmp -s tests/formats/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tests/formats/requirements.txt
  cp tests/formats/requirements.txt "$venv/requirements.txt"
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The cluster tests start the `tessera` binary itself.
cargo build --bins
# One test at a time: each cluster test runs several node processes on a 2-core machine.
cargo test --workspace -- --test-threads=1
