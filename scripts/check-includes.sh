#!/usr/bin/env bash
# Fails when a source file includes across a forbidden boundary (docs/ARCHITECTURE.md, "What may
# include what"). Reads only `#include` lines, so it runs in a second on any machine (bash, grep).
#
# Usage: scripts/check-includes.sh [ROOT]   (ROOT: the checkout, default: this script's parent)
# Exit 0: no violation. Exit 1: every violation printed as FILE:LINE: RULE: THE INCLUDE.
set -euo pipefail

root=${1:-"$(cd "$(dirname "$0")/.." && pwd)"}
cd "$root"

# One rule a line: FOLDER|FORBIDDEN (an extended regex matched against the included path)|WHY.
# A folder's rules also apply to its subfolders; a subfolder may add stricter ones.
heavy='^(torch/|ATen/|c10/)'  # LibTorch.
rpc='^(grpc|grpcpp)/|^musc/v1/|\.grpc\.pb\.h$|\.pb\.h$'  # gRPC and the generated protocol.
rules=(
  "base|^(core|server|client|eval|synth|bench|tests)/|base/ is the bottom layer"
  "base|${heavy}|^opencv2/|${rpc}|base/ needs Abseil and the standard library only"
  "core|^(server|client|eval|synth|bench|tests)/|the core knows nothing of its frontends"
  "core|^opencv2/|^yaml-cpp/|^prometheus/|${rpc}|the core needs LibTorch and Abseil only"
  "core/formats|${heavy}|file-format readers stay LibTorch-free (sanitised and fuzzed)"
  "core/formats|^core/(backbones|musc)/|^core/[a-z_]+\.h$|formats depend on nothing else in core"
  "core/backbones|^core/(musc_engine|line_scorer|engine_internal)\.h$|building blocks depend on values (core/engine_types.h), not on the facades"
  "core/musc|^core/(musc_engine|line_scorer|engine_internal)\.h$|building blocks depend on values (core/engine_types.h), not on the facades"
  "core/musc|^core/backbones/|the algorithm works on features, whatever network made them"
  "eval|^(core|server|client|bench|synth)/|${heavy}|${rpc}|eval/ is LibTorch- and gRPC-free; client and bench use it, not the reverse"
  "synth|^(core|server|client|eval|bench)/|${heavy}|${rpc}|synth/ stands alone"
  "client|^(core|server|bench|synth)/|${heavy}|the client speaks the protocol, never links the server or the engine"
  "bench|^client/|^server/([a-z_]+\.h$|(rpc|batch|line|store|results)/)|bench/ uses the core, eval/ and the image library (server/images/), not the frontends"
  "server|^(client|bench|synth)/|the server does not depend on the client or the tools"
  "server/images|${heavy}|^core/(backbones|musc|formats)/|^core/(musc_engine|line_scorer|engine_internal)\.h$|^server/(rpc|batch|line|store|results)/|the image library is LibTorch-free and depends on values only"
  "server/results|^server/(rpc|batch|line|store)/|results are built from scores, for batch and line alike"
  "server/store|^server/(rpc|line)/|the store knows sessions' records, not the RPCs"
  "server/batch|^server/(rpc|line)/|batch sessions do not know the RPC layer or line mode"
  "server/line|^server/(rpc|batch)/|line mode does not know the RPC layer or batch sessions"
)

# Every include of the tree once, as FILE<TAB>LINE<TAB>PATH<TAB>TEXT.
includes=$(grep -rnE --include='*.h' --include='*.cc' --include='*.hpp' --include='*.cpp' \
             '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' \
             base core server client eval synth bench 2>/dev/null |
           sed -E 's/^([^:]+):([0-9]+):(.*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"].*)$/\1\t\2\t\4\t\3/' ||
           true)

violations=0
for rule in "${rules[@]}"; do
  folder=${rule%%|*}
  rest=${rule#*|}
  why=${rest##*|}
  pattern=${rest%|*}
  found=$(awk -F'\t' -v folder="$folder/" -v pattern="$pattern" -v why="$why" \
            'index($1, folder) == 1 && $3 ~ pattern { print $1 ":" $2 ": " why ": " $4 }' \
            <<<"$includes")
  if [[ -n "$found" ]]; then
    echo "$found"
    violations=$((violations + $(wc -l <<<"$found")))
  fi
done

if [[ $violations -gt 0 ]]; then
  echo "check-includes: $violations include(s) across a forbidden boundary (docs/ARCHITECTURE.md)"
  exit 1
fi
echo "check-includes: no include crosses a forbidden boundary"
