#!/usr/bin/env bash
# Installs the npm dependencies of the deployment tests (package.json + package-lock.json of this
# folder) into DEST with `npm ci`, never into the source tree. Skips the install when DEST already
# holds exactly this lock file's packages. CTest runs it as the deploy_node_setup fixture.
#
#   tests/deploy/npm-setup.sh DEST [NPM]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:?usage: npm-setup.sh DEST [NPM]}"
npm="${2:-npm}"

if ! command -v "$npm" >/dev/null 2>&1; then
  echo "npm-setup: npm not found ('$npm'); install Node.js and npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi

mkdir -p "$dest"
stamp="$dest/node_modules/.musc-deploy-lock.json"
if [[ -f "$stamp" ]] && cmp -s "$here/package-lock.json" "$stamp"; then
  echo "npm-setup: $dest is up to date"
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$dest/"
# --ignore-scripts: the checks need no package's install scripts.
"$npm" ci --prefix "$dest" --no-audit --no-fund --ignore-scripts --loglevel=error
cp "$here/package-lock.json" "$stamp"
echo "npm-setup: installed into $dest"
