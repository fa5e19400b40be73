#!/usr/bin/env bash
# Tests deploy/docker/entrypoint.sh (the image's entry point) with stand-in binaries: what it
# fetches, what it execs, with which arguments, and that a failed fetch stops the start. One case
# uses the real scripts/fetch-weights.sh (a model with nothing to download).
#
#   tests/deploy/entrypoint_test.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
entry="$repo/deploy/docker/entrypoint.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
ok() { passed=$((passed + 1)); }
expect() {  # expect DESCRIPTION COMMAND...: COMMAND succeeds.
  local what="$1"; shift
  if "$@"; then ok; else fail "$what"; fi
}
absent() { [[ ! -e "$1" ]]; }

# Stand-ins: the server records its argv; fetch records its argv and fails for "broken".
cat >"$tmp/server" <<'STUB'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$STUB_LOG.server"
STUB
cat >"$tmp/fetch" <<'STUB'
#!/usr/bin/env bash
echo "$*" >>"$STUB_LOG.fetch"
[[ "$1" != broken ]]
STUB
chmod +x "$tmp/server" "$tmp/fetch"

run() {  # run CASE [ENV=VALUE...] -- ARGS...: runs the entrypoint, exit status in $status.
  local case="$1"; shift
  local envs=()
  while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  rm -f "$tmp/$case".*
  status=0
  env -i PATH="$PATH" HOME="$tmp" STUB_LOG="$tmp/$case" MUSC_SERVER_BIN="$tmp/server" \
    MUSC_FETCH_WEIGHTS_SCRIPT="$tmp/fetch" MUSC_WEIGHTS_DIR="$tmp/models" "${envs[@]}" \
    "$entry" "$@" >"$tmp/$case.out" 2>&1 || status=$?
}
expect_file() {  # expect_file CASE SUFFIX EXPECTED-CONTENT
  local got
  got="$(cat "$tmp/$1.$2" 2>/dev/null || echo "<none>")"
  if [[ "$got" == "$3" ]]; then ok; else fail "$1: $2 was '$got', expected '$3'"; fi
}
expect_status() {
  if [[ "$status" == "$2" ]]; then ok; else fail "$1: exit $status, expected $2 ($(cat "$tmp/$1.out"))"; fi
}

# 1. Flags only, nothing to fetch: the server gets exactly the flags; nothing is fetched.
run flags -- --products /etc/musc/products.yaml --listen 0.0.0.0:50051
expect_status flags 0
expect_file flags server $'--products\n/etc/musc/products.yaml\n--listen\n0.0.0.0:50051'
expect "flags: fetched without MUSC_FETCH_WEIGHTS" absent "$tmp/flags.fetch"

# 2. No arguments at all (CMD overridden with nothing): still the server.
run noargs --
expect_status noargs 0
expect_file noargs server ""

# 3. MUSC_FETCH_WEIGHTS with commas and spaces: each model fetched into MUSC_WEIGHTS_DIR, in
#    order, then the server starts.
run fetch "MUSC_FETCH_WEIGHTS=darknet-tiny, clip-vit-b-16" -- --products p.yaml
expect_status fetch 0
expect_file fetch fetch "darknet-tiny $tmp/models"$'\n'"clip-vit-b-16 $tmp/models"
expect_file fetch server $'--products\np.yaml'

# 4. A failed fetch stops the start: non-zero, server never runs, the message says what to do.
run broken "MUSC_FETCH_WEIGHTS=darknet-tiny broken clip-vit-b-16" -- --products p.yaml
expect_status broken 1
expect_file broken fetch "darknet-tiny $tmp/models"$'\n'"broken $tmp/models"
expect "broken: server started after a failed fetch" absent "$tmp/broken.server"
expect "broken: no hint in $(cat "$tmp/broken.out")" grep -q "Mount the weights" "$tmp/broken.out"

# 5. fetch-weights subcommand: fetches the named models (or MUSC_FETCH_WEIGHTS), never the server.
run sub -- fetch-weights a b
expect_status sub 0
expect_file sub fetch "a $tmp/models"$'\n'"b $tmp/models"
expect "sub: started the server" absent "$tmp/sub.server"
run subenv MUSC_FETCH_WEIGHTS=c -- fetch-weights
expect_file subenv fetch "c $tmp/models"
run subnone -- fetch-weights
expect_status subnone 2

# 6. Any other command is exec'd as given.
run other -- printf '%s|' one "two words"
expect_status other 0
expect "other: got '$(cat "$tmp/other.out")'" test "$(cat "$tmp/other.out")" = "one|two words|"

# 7. The real fetch-weights.sh: a model with seeded random weights needs no download.
status=0
env -i PATH="$PATH" HOME="$tmp" MUSC_SERVER_BIN="$tmp/server" STUB_LOG="$tmp/real" \
  MUSC_FETCH_WEIGHTS_SCRIPT="$repo/scripts/fetch-weights.sh" MUSC_WEIGHTS_DIR="$tmp/models" \
  MUSC_FETCH_WEIGHTS=vit-tiny-random "$entry" --products x.yaml >"$tmp/real.out" 2>&1 || status=$?
expect_status real 0
expect "real: $(cat "$tmp/real.out")" grep -q "nothing to fetch" "$tmp/real.out"
expect_file real server $'--products\nx.yaml'

# 8. Static: bash syntax, and shellcheck where installed.
expect "bash -n $entry" bash -n "$entry"
if command -v shellcheck >/dev/null; then
  expect "shellcheck $entry" shellcheck "$entry"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
