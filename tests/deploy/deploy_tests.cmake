# Offline tests of the deployment material: Dockerfile(s), docker-compose.yml, deploy/docker,
# deploy/prometheus, deploy/grafana, deploy/k8s, docs/DEPLOYMENT.md (what each test checks:
# the header of its script). Included from tests/CMakeLists.txt; all carry the CTest label
# "deploy":   ctest --test-dir build -L deploy
#
# Tools: node + npm (the npm registry for `npm ci`, once per build tree), yamllint and promtool
# (Debian packages yamllint, prometheus), kubectl >= 1.21 (built-in kustomize). A missing kubectl
# skips deploy_k8s (exit 77); any other missing tool fails its tests with a message naming it.
# Without CMake: tests/deploy/run-all.sh.

get_filename_component(MUSC_DEPLOY_REPO ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)
set(MUSC_DEPLOY_DIR ${CMAKE_CURRENT_LIST_DIR})
# npm ci installs here (never into the source tree).
set(MUSC_DEPLOY_NODE_DIR ${CMAKE_CURRENT_BINARY_DIR}/deploy-node)

find_program(MUSC_NODE NAMES node nodejs)
find_program(MUSC_NPM npm)
find_program(MUSC_YAMLLINT yamllint)
find_program(MUSC_PROMTOOL promtool)
find_program(MUSC_KUBECTL kubectl)
find_program(MUSC_BASH bash REQUIRED)

# musc_deploy_test(NAME TOOL_VAR HINT COMMAND...): the test, or one that fails naming the tool.
function(musc_deploy_test name tool_var hint)
  if(${tool_var})
    add_test(NAME ${name} COMMAND ${ARGN} WORKING_DIRECTORY ${MUSC_DEPLOY_REPO})
  else()
    add_test(NAME ${name}
      COMMAND ${MUSC_BASH} -c "echo '${name}: ${hint}' >&2; exit 1")
  endif()
  set_tests_properties(${name} PROPERTIES LABELS deploy TIMEOUT 120)
endfunction()

# npm dependencies (tests/deploy/package-lock.json), a fixture for the node tests below.
musc_deploy_test(deploy_node_setup MUSC_NPM "npm not found (Debian: apt-get install nodejs npm)"
  ${MUSC_BASH} ${MUSC_DEPLOY_DIR}/npm-setup.sh ${MUSC_DEPLOY_NODE_DIR} ${MUSC_NPM})
set_tests_properties(deploy_node_setup PROPERTIES FIXTURES_SETUP deploy_node TIMEOUT 600)

set(_node_hint "node not found (Debian: apt-get install nodejs npm)")
musc_deploy_test(deploy_k8s MUSC_NODE "${_node_hint}"
  ${MUSC_NODE} ${MUSC_DEPLOY_DIR}/k8s_check.mjs)
set_tests_properties(deploy_k8s PROPERTIES SKIP_RETURN_CODE 77)
musc_deploy_test(deploy_compose MUSC_NODE "${_node_hint}"
  ${MUSC_NODE} ${MUSC_DEPLOY_DIR}/compose_check.mjs)
musc_deploy_test(deploy_dockerfile MUSC_NODE "${_node_hint}"
  ${MUSC_NODE} ${MUSC_DEPLOY_DIR}/dockerfile_check.mjs)
musc_deploy_test(deploy_monitoring MUSC_NODE "${_node_hint}"
  ${MUSC_NODE} ${MUSC_DEPLOY_DIR}/monitoring_check.mjs)
musc_deploy_test(deploy_dashboard_exprs MUSC_NODE "${_node_hint}"
  ${MUSC_NODE} ${MUSC_DEPLOY_DIR}/dashboard_exprs.mjs)
# Each check breaks one thing in a copy of the real files and expects the complaint (the
# kubectl-rendered cases skip without kubectl).
musc_deploy_test(deploy_checks_selftest MUSC_NODE "${_node_hint}"
  ${MUSC_NODE} --test ${MUSC_DEPLOY_DIR}/selftest.test.mjs)
# MUSC_KUBECTL empty: the scripts look on PATH at run time, and skip without it.
set(_kubectl "")
if(MUSC_KUBECTL)
  set(_kubectl ${MUSC_KUBECTL})
endif()
foreach(t deploy_k8s deploy_compose deploy_dockerfile deploy_monitoring deploy_checks_selftest)
  set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED deploy_node
    ENVIRONMENT "MUSC_DEPLOY_NODE_DIR=${MUSC_DEPLOY_NODE_DIR};MUSC_KUBECTL=${_kubectl}")
endforeach()

musc_deploy_test(deploy_yamllint MUSC_YAMLLINT "yamllint not found (apt-get install yamllint)"
  ${MUSC_YAMLLINT} --strict -c ${MUSC_DEPLOY_DIR}/.yamllint
  docker-compose.yml deploy/docker deploy/k8s deploy/prometheus deploy/grafana tests/deploy)

set(_promtool_hint "promtool not found (apt-get install prometheus)")
musc_deploy_test(deploy_promtool_rules MUSC_PROMTOOL "${_promtool_hint}"
  ${MUSC_PROMTOOL} check rules deploy/prometheus/musc-alerts.yml)
musc_deploy_test(deploy_promtool_config MUSC_PROMTOOL "${_promtool_hint}"
  ${MUSC_PROMTOOL} check config deploy/prometheus/prometheus.yml)
# Each alert fires on synthetic series where it should, and stays quiet nearby.
musc_deploy_test(deploy_promtool_alert_tests MUSC_PROMTOOL "${_promtool_hint}"
  ${MUSC_PROMTOOL} test rules tests/deploy/musc-alerts.test.yml)

musc_deploy_test(deploy_entrypoint MUSC_BASH "bash not found"
  ${MUSC_BASH} ${MUSC_DEPLOY_DIR}/entrypoint_test.sh)
