#!/usr/bin/env bash
# The one prepared GPU check (issue 8). Run from the repository root on a machine with an NVIDIA
# GPU and a PyTorch installation (its LibTorch is what the core builds against):
#
#   bench/gpu_check.sh            # whole check: agreement + ViT-L/14-336 @518, N = 200
#   bench/gpu_check.sh --quick    # minutes less: tiny model, small batches (plumbing only)
#
# Builds only the core and musc-gpu-check (-DMUSC_CORE_ONLY=ON: no gRPC, OpenCV or Protobuf
# needed) into build-gpu/, then runs it on cuda. It needs: cmake, a C++17 compiler, python3 with
# torch (CUDA build), Abseil and nlohmann-json headers (Debian: libabsl-dev nlohmann-json3-dev).
# Prints what it measured; its last line is machine-readable:
#   gpu_check: device=cuda max_abs_diff_cpu=... ms_per_image_fp32=... ms_per_image_fp16=...
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "gpu_check: $*" >&2; exit 2; }

command -v cmake >/dev/null || fail "cmake is not installed"
command -v python3 >/dev/null || fail "python3 is not installed"
torch_info=$(python3 - <<'EOF' 2>/dev/null
import torch
print(torch.utils.cmake_prefix_path)
print(torch.__version__)
print(int(torch.cuda.is_available()))
print(int(torch.compiled_with_cxx11_abi()))
EOF
) || fail "python3 cannot import torch: install a CUDA build of PyTorch"
torch_prefix=$(sed -n 1p <<<"$torch_info")
torch_version=$(sed -n 2p <<<"$torch_info")
cuda_ok=$(sed -n 3p <<<"$torch_info")
cxx11_abi=$(sed -n 4p <<<"$torch_info")
echo "gpu_check: PyTorch $torch_version at $torch_prefix (cuda available: $cuda_ok, cxx11 ABI: $cxx11_abi)"
[[ "$cuda_ok" == 1 ]] || fail "torch.cuda.is_available() is false: no GPU or a CPU-only PyTorch"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [[ "$cxx11_abi" == 0 ]]; then
  echo "gpu_check: warning: this PyTorch uses the pre-C++11 string ABI; Abseil must be built the" \
       "same way or linking fails on std::string symbols" >&2
fi

jobs=$(nproc)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMUSC_CORE_ONLY=ON -DMUSC_CUDA=ON \
  -DMUSC_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$torch_prefix"
cmake --build build-gpu -j"$jobs" --target musc-gpu-check

if [[ "${1:-}" == "--quick" ]]; then
  exec build-gpu/bin/musc-gpu-check --device cuda --quick
fi
exec build-gpu/bin/musc-gpu-check --device cuda
