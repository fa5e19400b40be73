#!/usr/bin/env bash
# Scores the demo set through a real server and writes what it answered to OUT, so that two builds
# can be compared byte for byte (a refactoring must leave every score and map bit-identical):
#   OUT/batch.jsonl   `musc-client score --json` (raw and final score of every image): exact
#   OUT/maps.sha256   the SHA-256 of every raw map (float TIFF) of the batch: exact
#   OUT/line.txt      `musc-client line --rate 0` over the same images: image, raw score rounded
#                     to 5 decimals and verdict, sorted. Line mode's warm-up images are in flight
#                     together, so the bank's order, and with it the last bits of some scores,
#                     changes from run to run of the same build: this file is compared rounded.
# Usage: scripts/score-snapshot.sh BUILD_DIR OUT [IMAGES]
#   e.g. scripts/score-snapshot.sh build /tmp/before && (change, rebuild) &&
#        scripts/score-snapshot.sh build /tmp/after && diff -r /tmp/before /tmp/after
# IMAGES defaults to the tire test split under ../shared (the pretrained darknet-tiny product);
# without ../shared, the offline random-ViT products score a musc-synth set.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: score-snapshot.sh BUILD_DIR OUT [IMAGES]}
out=${2:?usage: score-snapshot.sh BUILD_DIR OUT [IMAGES]}
images=${3:-../shared/data/mvtec3d-tire-rgb/test}

products=deploy/products.yaml
product=tire
line_product=tire-line
if [[ ! -f ../shared/models/darknet-tiny-tfjs/model.json ]]; then
  products=deploy/products.offline.yaml
  product=demo-random-vit
  line_product=demo-random-vit-line
fi
run_dir=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
if [[ ! -d "$images" ]]; then
  "$build"/bin/musc-synth --out "$run_dir/synth" --category flange --kind object --good 12 \
    --defective 4 --overwrite > /dev/null
  images="$run_dir/synth/flange/test"
fi

"$build"/bin/musc-server --products "$products" --listen 127.0.0.1:0 \
  --port_file "$run_dir/port" --metrics_listen 127.0.0.1:0 2> "$run_dir/server.log" &
server_pid=$!
for _ in $(seq 1 1200); do
  [[ -s "$run_dir/port" ]] && break
  kill -0 "$server_pid" 2> /dev/null || { cat "$run_dir/server.log" >&2; exit 1; }
  sleep 0.1
done
address="127.0.0.1:$(cat "$run_dir/port")"
until "$build"/bin/musc-client --server "$address" health > /dev/null 2>&1; do
  kill -0 "$server_pid" 2> /dev/null || { cat "$run_dir/server.log" >&2; exit 1; }
  sleep 0.2
done

rm -rf "$out"
mkdir -p "$out"
"$build"/bin/musc-client --server "$address" score --product "$product" --images "$images" \
  --json --quiet --out "$run_dir/batch_maps" > "$out/batch.jsonl"
"$build"/bin/musc-client --server "$address" line --product "$line_product" --images "$images" \
  --rate 0 --json > "$run_dir/line.jsonl"
awk '{
  image = $0; sub(/.*"image":"/, "", image); sub(/".*/, "", image)
  raw = $0; sub(/.*"raw_score":/, "", raw); sub(/[,}].*/, "", raw)
  verdict = $0 ~ /"is_anomalous":true/ ? "anomalous" : "ok"
  printf "%s %.5f %s\n", image, raw, verdict
}' "$run_dir/line.jsonl" | sort > "$out/line.txt"
(cd "$run_dir" && find batch_maps -name '*.tiff' -print0 | sort -z | xargs -0 sha256sum) \
  > "$out/maps.sha256"
kill -TERM "$server_pid"
wait "$server_pid" || true
echo "score-snapshot: $(wc -l < "$out/batch.jsonl") batch results, $(wc -l < "$out/line.txt")" \
  "line results, $(wc -l < "$out/maps.sha256") maps in $out"
