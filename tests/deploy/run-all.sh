#!/usr/bin/env bash
# Runs every deployment check without CMake (the same commands as deploy_tests.cmake registers).
#
#   tests/deploy/run-all.sh [NODE_DIR]     NODE_DIR: where npm ci installs (default /tmp/musc-deploy-node)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export MUSC_DEPLOY_NODE_DIR="${1:-/tmp/musc-deploy-node}"
cd "$repo" || exit 1

passed=0 failed=0 skipped=0
check() {  # check NAME COMMAND...
  local name="$1" rc
  shift
  echo "== $name"
  "$@"
  rc=$?
  if [[ $rc -eq 0 ]]; then passed=$((passed + 1));
  elif [[ $rc -eq 77 ]]; then skipped=$((skipped + 1)); echo "   (skipped)";
  else failed=$((failed + 1)); echo "   FAILED (exit $rc)"; fi
}

check deploy_node_setup bash "$here/npm-setup.sh" "$MUSC_DEPLOY_NODE_DIR"
check deploy_yamllint yamllint --strict -c "$here/.yamllint" \
  docker-compose.yml deploy/docker deploy/k8s deploy/prometheus deploy/grafana tests/deploy
check deploy_promtool_rules promtool check rules deploy/prometheus/musc-alerts.yml
check deploy_promtool_config promtool check config deploy/prometheus/prometheus.yml
check deploy_promtool_alert_tests promtool test rules tests/deploy/musc-alerts.test.yml
check deploy_entrypoint bash "$here/entrypoint_test.sh"
check deploy_k8s node "$here/k8s_check.mjs"
check deploy_compose node "$here/compose_check.mjs"
check deploy_dockerfile node "$here/dockerfile_check.mjs"
check deploy_monitoring node "$here/monitoring_check.mjs"
check deploy_dashboard_exprs bash -c "node '$here/dashboard_exprs.mjs' >/dev/null"
check deploy_checks_selftest node --test "$here/selftest.test.mjs"

echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
