#!/usr/bin/env bash
# The main job (README): installs dependencies, builds, starts musc-server on loopback with
# deploy/products.yaml, scores a real batch through gRPC with musc-client — the MVTec 3D-AD tire
# test split under ../shared/data (112 images) with the pretrained darknet-tiny backbone — prints
# every image's scores, writes heat-map overlays and raw maps to out/demo/, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"${MUSC_BUILD_JOBS:-2}" --target musc-server musc-client

data=${MUSC_DEMO_DATA:-../shared/data/mvtec3d-tire-rgb/test}
if [[ ! -d "$data" ]]; then
  echo "demo: no demo images at $data (set MUSC_DEMO_DATA to a folder of images)" >&2
  exit 2
fi
run_dir=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
./build/bin/musc-server --products deploy/products.yaml --listen 127.0.0.1:0 \
  --port_file "$run_dir/port" 2> "$run_dir/server.log" &
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
./build/bin/musc-client --server "$address" score --product tire --images "$data" --out out/demo
kill -TERM "$server_pid"
wait "$server_pid"
