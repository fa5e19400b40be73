#!/usr/bin/env bash
# Installs everything musc-serve needs to build, test and run on Debian 12 (bookworm).
# Idempotent: safe to run again; it only installs what is missing and re-selects the BLAS.
# Used by the README, by .ci/run and by the Dockerfile so the three cannot drift apart.
#
# Usage: scripts/install-deps.sh [--runtime]
#   --runtime  install only the shared libraries the binaries need at run time (Docker runtime stage).
set -euo pipefail

mode=build
if [[ "${1:-}" == "--runtime" ]]; then mode=runtime; fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# Build-time packages. Pinned by name to Debian 12's archive; versions come from the release.
build_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev
  libopencv-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  prometheus-cpp-dev
  libssl-dev openssl
  clang libfuzzer-14-dev libclang-rt-14-dev
  # Real peers for the tests: a Prometheus server + promtool, nginx as the gRPC proxy,
  # yamllint and Node.js's npm for the deployment manifests.
  prometheus nginx-light yamllint
)

# Run-time packages: the shared libraries the binaries link against.
runtime_packages=(
  ca-certificates libopenblas0-openmp
  libtorch1.13 libgrpc++1.51 libprotobuf32
  libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406
  libyaml-cpp0.7 libabsl20220623 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0
  libssl3
)

if [[ "$mode" == runtime ]]; then
  wanted=("${runtime_packages[@]}")
else
  wanted=("${build_packages[@]}")
fi

missing=()
for p in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#wanted[@]} packages already installed"
fi

# The deployment checks run on Node.js (kubernetes-models, yaml). Machines of this kind ship
# NodeSource's nodejs (with its own npm); Debian's npm package would conflict with it, so Debian's
# nodejs + npm are installed only where no node exists at all.
if [[ "$mode" == build ]] && ! command -v node >/dev/null 2>&1; then
  echo "install-deps: installing Debian's nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

# LibTorch's GEMMs go through the system libblas.so.3. Debian's default alternative may be the
# reference BLAS (~25x slower), and libopenblas0-pthread (if present) fights LibTorch's OpenMP
# threads. Select the OpenMP OpenBLAS explicitly for both BLAS and LAPACK.
arch_triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  target="/usr/lib/${arch_triplet}/openblas-openmp/${lib}"
  if [[ -e "$target" ]]; then
    $SUDO update-alternatives --set "${lib}-${arch_triplet}" "$target" >/dev/null
  else
    echo "install-deps: warning: $target not found; LibTorch will use a slower BLAS" >&2
  fi
done
echo "install-deps: BLAS -> $(readlink -f /usr/lib/${arch_triplet}/libblas.so.3)"
