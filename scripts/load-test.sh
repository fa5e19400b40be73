#!/usr/bin/env bash
# Issue 7's load check: `musc-client bench` against a real musc-server — K workers running
# sessions of small batches for a fixed time while control RPCs are probed — then the server's
# peak resident memory (VmHWM) and its own metrics. Figures go to docs/RELIABILITY.md.
#
# Usage: scripts/load-test.sh [SECONDS] [WORKERS] [BATCH]     (defaults: 60 50 6)
# Needs a build (build/bin) and, for the real backbone, ../shared/models/darknet-tiny-tfjs.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60}
workers=${2:-50}
batch=${3:-6}

products=deploy/products.yaml
product=tire
if [[ ! -f ../shared/models/darknet-tiny-tfjs/model.json ]]; then
  products=deploy/products.offline.yaml
  product=demo-random-vit
fi
images=../shared/data/mvtec3d-tire-rgb/test
run_dir=$(mktemp -d)
if [[ ! -d "$images" ]]; then
  ./build/bin/musc-synth --out "$run_dir/synth" --category flange --kind object --good 20 \
    --defective 6 > /dev/null
  images="$run_dir/synth/flange/test"
fi
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
./build/bin/musc-server --products "$products" --listen 127.0.0.1:0 --port_file "$run_dir/port" \
  --metrics_listen 127.0.0.1:0 --metrics_port_file "$run_dir/metrics_port" \
  --max_sessions_per_product 100000 2> "$run_dir/server.log" &
server_pid=$!
until [[ -s "$run_dir/port" && -s "$run_dir/metrics_port" ]]; do
  kill -0 "$server_pid" 2>/dev/null || { cat "$run_dir/server.log" >&2; exit 1; }
  sleep 0.1
done
address="127.0.0.1:$(cat "$run_dir/port")"
until ./build/bin/musc-client --server "$address" health > /dev/null 2>&1; do sleep 0.2; done
rss_start=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
echo "load-test: $workers workers × sessions of $batch images of '$product' for $duration s"
status=0
./build/bin/musc-client --server "$address" bench --product "$product" --images "$images" \
  --sessions "$workers" --batch "$batch" --duration "$duration" || status=$?
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
echo "server resident memory: $((rss_start / 1024)) MiB after start, peak $((peak_kib / 1024)) MiB"
curl -s "127.0.0.1:$(cat "$run_dir/metrics_port")/metrics" |
  grep -E '^musc_(sessions_finished_total|images_rejected_total|limit_refusals_total)' || true
kill -TERM "$server_pid"
wait "$server_pid" || true
echo "load-test: peak_rss_mib=$((peak_kib / 1024)) bench_exit=$status"
exit "$status"
