#!/usr/bin/env bash
# Installs the system packages Tessera's build and tests need, if they are missing.
#   clang, libclang-dev  bindgen (librocksdb-sys)
#   librocksdb-dev       RocksDB 7.8 shared library we link against (see .cargo/config.toml)
#   protobuf-compiler    protoc, for the internal RPC's generated code
#   ffmpeg, poppler-utils  video frames and PDF pages for imports (run time)
# Extra packages can be passed as arguments (the benchmark adds nginx, apache2-utils, wrk).
set -euo pipefail

packages=(clang libclang-dev librocksdb-dev protobuf-compiler pkg-config ffmpeg poppler-utils "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
