#!/usr/bin/env bash
# The main job (README): installs dependencies, builds, and scores a real batch — the MVTec 3D-AD
# tire test split from ../shared/data — with the pretrained darknet-tiny backbone, printing each
# image's scores, the image AUROC and the stage timings, and writing heat maps to out/demo/.
#
# Until the gRPC server lands this runs the engine in-process (musc-bench demo); the server-based
# main job replaces it when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"${MUSC_BUILD_JOBS:-2}" --target musc-bench

data=${MUSC_DEMO_DATA:-../shared/data/mvtec3d-tire-rgb}
weights=${MUSC_DARKNET_DIR:-../shared/models/darknet-tiny-tfjs}
if [[ ! -d "$data/test" ]]; then
  echo "demo: no demo data at $data (set MUSC_DEMO_DATA to an MVTec-layout category)" >&2
  exit 2
fi
model=darknet-tiny
if [[ ! -f "$weights/model.json" ]]; then
  echo "demo: darknet-tiny weights not found at $weights; using the random tiny ViT instead" \
       "(scores will be near chance)" >&2
  model=vit-tiny-random
fi
./build/bin/musc-bench demo --data "$data" --model "$model" --weights "$weights" --size 224 \
  --limit "${MUSC_DEMO_LIMIT:-0}" --out out/demo
