#!/usr/bin/env bash
# Shows that scripts/check-includes.sh can fail: a small tree with known violations must be
# rejected with each one named, and the same tree without them accepted.
set -euo pipefail
script="$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-includes.sh"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree"/core/formats "$tree"/core/musc "$tree"/eval "$tree"/server/images
printf '#include <ATen/core/Tensor.h>\n' > "$tree"/core/formats/reader.cc
printf '#include "server/rpc/musc_service.h"\n' > "$tree"/core/engine.cc
printf '#include "core/musc_engine.h"\n' > "$tree"/core/musc/lnamd.h
printf '#include "client/musc_client.h"\n' > "$tree"/eval/metrics.cc
printf '#include <vector>\n#include "core/engine_types.h"\n' > "$tree"/server/images/decoder.h

if out=$("$script" "$tree"); then
  echo "FAIL: the check accepted a tree with violations:"; echo "$out"; exit 1
fi
for expected in core/formats/reader.cc:1 core/engine.cc:1 core/musc/lnamd.h:1 eval/metrics.cc:1; do
  grep -q "^$expected: " <<<"$out" || { echo "FAIL: $expected not reported:"; echo "$out"; exit 1; }
done
if grep -q "server/images/decoder.h" <<<"$out"; then
  echo "FAIL: an allowed include was reported:"; echo "$out"; exit 1
fi

rm "$tree"/core/formats/reader.cc "$tree"/core/engine.cc "$tree"/core/musc/lnamd.h "$tree"/eval/metrics.cc
"$script" "$tree" || { echo "FAIL: the clean tree was rejected"; exit 1; }
echo "check_includes_test: violations reported (4 of 4), clean tree accepted"
