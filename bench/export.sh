#!/usr/bin/env bash
# Export memory at scale: 1 000 000 shapes over 100 000 images exported as COCO, CVAT, YOLO
# segment and VOC while the exporting node's RSS is sampled (claim: bounded growth, < 200 MB).
#   bench/export.sh [--images N] [--shapes K]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin tessera --bin tessera-bench
exec target/release/tessera-bench export "$@"
