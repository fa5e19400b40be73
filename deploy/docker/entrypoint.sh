#!/usr/bin/env bash
# Entry point of the musc-serve image (Dockerfile, Dockerfile.cuda).
#
#   entrypoint.sh [musc-server flags...]   fetch the weights MUSC_FETCH_WEIGHTS names, then exec
#                                           musc-server with the flags (the image's CMD by default)
#   entrypoint.sh fetch-weights [NAME...]  only fetch (NAMEs, else MUSC_FETCH_WEIGHTS), e.g. to fill
#                                           a weights volume from a one-off Job
#   entrypoint.sh COMMAND [ARGS...]        exec COMMAND (musc-client, musc-synth, bash, ...)
#
# Environment:
#   MUSC_FETCH_WEIGHTS   models of core/models.tsv to fetch before the server starts, separated by
#                        spaces or commas (e.g. "darknet-tiny clip-vit-b-16"); empty: fetch nothing
#                        (weights are mounted, e.g. at /models). Already-present weights are kept.
#   MUSC_WEIGHTS_DIR     where fetched weights go (default /models): the folder the products file's
#                        weight paths point into.
#   MUSC_WEIGHTS_MIRROR  a local folder fetch-weights.sh copies from before downloading
#                        (default /models-mirror; mount one to avoid downloads).
#   MUSC_SERVER_BIN, MUSC_FETCH_WEIGHTS_SCRIPT: overrides for tests (tests/deploy/entrypoint_test.sh).
#
# The server is exec'd, not run as a child: it is PID 1 and receives SIGTERM directly, which starts
# its drain (health NOT_SERVING, queued batches finish within --shutdown_grace).
set -euo pipefail

server="${MUSC_SERVER_BIN:-/opt/musc/bin/musc-server}"
fetch="${MUSC_FETCH_WEIGHTS_SCRIPT:-/opt/musc/scripts/fetch-weights.sh}"
weights_dir="${MUSC_WEIGHTS_DIR:-/models}"

log() { echo "entrypoint: $*" >&2; }

fetch_models() {  # fetch_models NAME... — each into $weights_dir, stop at the first failure.
  local name
  for name in "$@"; do
    log "fetching weights '$name' into $weights_dir"
    if ! "$fetch" "$name" "$weights_dir"; then
      log "fetching '$name' failed (see above); not starting. Mount the weights at $weights_dir" \
        "or a mirror at ${MUSC_WEIGHTS_MIRROR:-/models-mirror} instead."
      exit 1
    fi
  done
}

requested_models() {  # The names of MUSC_FETCH_WEIGHTS, one per line (commas count as spaces).
  local list="${MUSC_FETCH_WEIGHTS:-}"
  list="${list//,/ }"
  local name
  for name in $list; do echo "$name"; done
}

if [[ $# -eq 0 || "$1" == -* ]]; then
  mapfile -t models < <(requested_models)
  if ((${#models[@]})); then fetch_models "${models[@]}"; fi
  exec "$server" "$@"
fi

if [[ "$1" == fetch-weights ]]; then
  shift
  if [[ $# -eq 0 ]]; then mapfile -t models < <(requested_models); else models=("$@"); fi
  if ((${#models[@]} == 0)); then
    log "fetch-weights: no model named (arguments or MUSC_FETCH_WEIGHTS)"
    exit 2
  fi
  fetch_models "${models[@]}"
  exit 0
fi

exec "$@"
