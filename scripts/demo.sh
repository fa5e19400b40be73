#!/usr/bin/env bash
# The main job (README): installs dependencies, builds, starts musc-server on loopback, scores a
# demo batch through gRPC with musc-client, prints every image's scores, writes heat-map overlays
# and raw maps to out/demo/, and stops the server.
#
# Images: the MVTec 3D-AD tire test split under ../shared/data when present (112 real images),
# else a synthetic MVTec-layout set made by musc-synth. Backbone: the pretrained darknet-tiny
# under ../shared/models when present, else a seeded random tiny ViT (near-chance scores).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"${MUSC_BUILD_JOBS:-2}" --target musc-server musc-client musc-synth

products=deploy/products.yaml
product=tire
line_product=tire-line
if [[ ! -f ../shared/models/darknet-tiny-tfjs/model.json ]]; then
  echo "demo: no darknet-tiny weights under ../shared/models; using a random tiny ViT" >&2
  products=deploy/products.offline.yaml
  product=demo-random-vit
  line_product=demo-random-vit-line
fi
data=${MUSC_DEMO_DATA:-../shared/data/mvtec3d-tire-rgb/test}
if [[ ! -d "$data" ]]; then
  echo "demo: no images at $data; generating a synthetic set (musc-synth)" >&2
  ./build/bin/musc-synth --out out/synth --category flange --kind object --good 20 --defective 6 \
    --overwrite
  data=out/synth/flange/test
fi

run_dir=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
./build/bin/musc-server --products "$products" --listen 127.0.0.1:0 \
  --port_file "$run_dir/port" --metrics_listen 127.0.0.1:0 2> "$run_dir/server.log" &
server_pid=$!
for _ in $(seq 1 600); do
  [[ -s "$run_dir/port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$run_dir/server.log" >&2; exit 1; }
  sleep 0.1
done
address="127.0.0.1:$(cat "$run_dir/port")"
until ./build/bin/musc-client --server "$address" health > /dev/null 2>&1; do
  kill -0 "$server_pid" 2>/dev/null || { cat "$run_dir/server.log" >&2; exit 1; }
  sleep 0.2
done
echo "musc-server is SERVING on $address"
./build/bin/musc-client --server "$address" products
echo
./build/bin/musc-client --server "$address" score --product "$product" --images "$data" \
  --out out/demo
echo "overlays (*_overlay.png) and raw maps (*_map.tiff) are in $(pwd)/out/demo"
echo
# Line mode: the same parts as a production line, a verdict for each as it arrives (the first
# ones are scored together as the line's warm-up batch). 24 parts keep the demo short.
line_dir="$run_dir/line"
mkdir -p "$line_dir"
find "$data" -type f \( -name '*.png' -o -name '*.jpg' \) | sort | awk 'NR % 4 == 1' | head -24 |
  while read -r f; do cp "$f" "$line_dir/$(basename "$(dirname "$f")")_$(basename "$f")"; done
echo "line mode ($line_product): each part scored on arrival against the previous parts"
./build/bin/musc-client --server "$address" line --product "$line_product" --images "$line_dir" \
  --rate 2
kill -TERM "$server_pid"
wait "$server_pid"
