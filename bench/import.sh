#!/usr/bin/env bash
# Import memory: a zip of the serving benchmark's 2000 JPEGs (about 300 MB), then a zip of 4000
# different ones (about 600 MB), imported through node 1 of a fresh 3-node cluster while its RSS
# is sampled. The claim: an import streams through disk, so memory does not grow with the upload.
#   bench/import.sh            (run bench/serve.sh once first: it generates the JPEG corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${TMPDIR:-/tmp}/tessera-bench-corpus-1
[ -d "$corpus" ] || { echo "no corpus at $corpus: run bench/serve.sh --quick first"; exit 1; }
cargo build --release --bin tessera
work=$(mktemp -d)
trap 'kill -INT "$up" 2>/dev/null; wait "$up" 2>/dev/null; rm -rf "$work"' EXIT
python3 - "$corpus" "$work" <<'PY'
import os, sys, zipfile
corpus, work = sys.argv[1], sys.argv[2]
files = sorted(os.listdir(corpus))
with zipfile.ZipFile(f"{work}/a.zip", "w", zipfile.ZIP_STORED) as z:
    for f in files:
        z.write(os.path.join(corpus, f), "a/" + f)
with zipfile.ZipFile(f"{work}/b.zip", "w", zipfile.ZIP_STORED) as z:
    for k in range(2):
        for f in files:  # trailing bytes after the JPEG end marker: new objects, same pictures
            z.writestr(f"b{k}/{f}", open(os.path.join(corpus, f), "rb").read() + os.urandom(16))
PY
sed 's/808\([123]\)/718\1/; s/908\([123]\)/728\1/' cluster.toml > "$work/cluster.toml"
TESSERA_ADMIN_PASSWORD=bench-password target/release/tessera up --config "$work/cluster.toml" > "$work/up.log" 2>&1 &
up=$!
until grep -q "Tessera is ready" "$work/up.log"; do kill -0 "$up"; sleep 0.5; done
base=http://127.0.0.1:7181
token=$(curl -sf -d grant_type=password -d username=admin -d password=bench-password "$base/oauth/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
pid=$(pgrep -f "tessera run --id 1 --config $work/cluster.toml")
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status"; }
for archive in a b; do
  id=$(curl -sf -H "Authorization: Bearer $token" -d "{\"name\":\"$archive\"}" "$base/api/v1/datasets" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  before=$(rss); peak=$before; start=$(date +%s.%N)
  job=$(curl -sf -H "Authorization: Bearer $token" --data-binary "@$work/$archive.zip" \
    "$base/api/v1/datasets/$id/imports?filename=$archive.zip" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  while :; do
    now=$(rss); [ "$now" -gt "$peak" ] && peak=$now
    state=$(curl -sf -H "Authorization: Bearer $token" "$base/api/v1/jobs/$job" |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["state"], j["progress"]["images_added"])')
    case $state in running*) sleep 0.2 ;; *) break ;; esac
  done
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  mb=$(( $(stat -c %s "$work/$archive.zip") / 1000000 ))
  echo "$archive.zip: $mb MB, $state images, ${secs%.*} s; node 1 RSS $before MiB before, peak $peak MiB"
done
