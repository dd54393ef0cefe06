#!/usr/bin/env bash
# Does a data dir written by an older Tessera start and serve everything under this tree's
# binary? Builds the `tessera` binary of commit $OLD (the last one before the domain crate and
# the internal RPC's mutual TLS, so the check crosses both) from this repository's history, then
# runs `target/debug/upgrade` (tests/src/bin/upgrade) against it. Needs `cargo build --bins`
# first. The old tree is built in target/upgrade-old with this tree's compiled dependencies
# hard-linked in (a crate built from another path gets other file names, so nothing is shared
# that either build rewrites): a few minutes the first time, nothing after.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=4cc13ea
dir=target/upgrade-old
if ! git cat-file -e "$OLD^{commit}" 2>/dev/null; then
  echo "upgrade check skipped: commit $OLD is not in this clone's history (shallow clone?)" >&2
  exit 0
fi
if [ "$(cat "$dir/commit" 2>/dev/null)" != "$OLD" ]; then
  rm -rf "$dir"
  mkdir -p "$dir/src/target/debug"
  git archive "$OLD" | tar -x -C "$dir/src"
  for d in deps build .fingerprint; do
    [ -d "target/debug/$d" ] && cp -al "target/debug/$d" "$dir/src/target/debug/"
  done
  echo "$OLD" > "$dir/commit.building"
fi
(cd "$dir/src" && cargo build --locked --bin tessera)
[ -f "$dir/commit.building" ] && mv "$dir/commit.building" "$dir/commit"
target/debug/upgrade --old "$dir/src/target/debug/tessera"
