// Self-tests of the deployment checks: each check must be able to fail. Every case starts from the
// real files (which pass), breaks one thing, and expects the matching complaint.
//
//   MUSC_DEPLOY_NODE_DIR=DIR node --test tests/deploy/selftest.test.mjs
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { load } from "./lib/deps.mjs";
import { checkDockerfile, repo } from "./dockerfile_check.mjs";
import { checkCompose } from "./compose_check.mjs";
import { crossCheck, schemaErrors, findKubectl, render, checkFetchJob } from "./k8s_check.mjs";
import { checkDashboard, checkAlerts, checkDocs } from "./monitoring_check.mjs";
import { substitute, dashboardExprs } from "./dashboard_exprs.mjs";

const YAML = load("yaml");
const read = (rel) => readFileSync(path.join(repo, rel), "utf8");
const clone = (x) => structuredClone(x);

/** Asserts that errors contains one matching re (and shows them all if not). */
function complains(errors, re) {
  assert.ok(errors.some((e) => re.test(e)), `expected a complaint matching ${re}, got:\n  ${errors.join("\n  ") || "(none)"}`);
}

// ---- Dockerfile -------------------------------------------------------------------------------
const dockerfile = read("Dockerfile");
const ignoreText = read("Dockerfile.dockerignore");
const df = (text, ignore = ignoreText) => checkDockerfile(text, { name: "Dockerfile", ignoreText: ignore });
const swap = (from, to) => {
  assert.ok(dockerfile.includes(from), `Dockerfile no longer contains: ${from}`);
  return dockerfile.replace(from, to);
};

test("Dockerfile: the real one passes", () => assert.deepEqual(df(dockerfile), []));
test("Dockerfile: no USER in the final stage", () => complains(df(swap("USER 10001:10001\n", "")), /no USER/));
test("Dockerfile: named USER (runAsNonRoot cannot verify it)", () => complains(df(swap("USER 10001:10001", "USER musc")), /numeric non-root/));
test("Dockerfile: USER root", () => complains(df(swap("USER 10001:10001", "USER 0")), /numeric non-root/));
test("Dockerfile: no HEALTHCHECK", () => {
  const text = dockerfile.replace(/HEALTHCHECK[^\n]*\\\n[^\n]*\n/, "");
  complains(df(text), /no HEALTHCHECK/);
});
test("Dockerfile: HEALTHCHECK on another port", () => complains(df(swap('"127.0.0.1:50051", "health"', '"127.0.0.1:8080", "health"')), /gRPC port/));
test("Dockerfile: unpinned base image", () => complains(df(swap("ARG DEBIAN_IMAGE=debian:bookworm-slim", "ARG DEBIAN_IMAGE=debian")), /not pinned/));
test("Dockerfile: base image :latest", () => complains(df(swap("ARG DEBIAN_IMAGE=debian:bookworm-slim", "ARG DEBIAN_IMAGE=debian:latest")), /not pinned/));
test("Dockerfile: COPY --from an unknown stage", () => complains(df(swap("COPY --from=build ", "COPY --from=builder ")), /no earlier stage/));
test("Dockerfile: duplicate stage names", () => complains(df(swap("AS runtime", "AS build")), /used twice/));
test("Dockerfile: apt-get install with recommends", () => complains(df(swap("install -y -qq --no-install-recommends curl", "install -y -qq curl")), /no-install-recommends/));
test("Dockerfile: apt lists left in the layer", () => {
  const text = dockerfile.replace(/(install-deps\.sh --runtime[\s\S]*?) && rm -rf \/var\/lib\/apt\/lists\/\* \\\n/, "$1 \\\n");
  assert.notEqual(text, dockerfile);
  complains(df(text), /\/var\/lib\/apt\/lists/);
});
test("Dockerfile: install without update", () => complains(df(swap(" && apt-get update -qq \\\n && apt-get install -y -qq --no-install-recommends curl", " && apt-get install -y -qq --no-install-recommends curl")), /without apt-get update/));
test("Dockerfile: build tools in the runtime stage", () => complains(df(swap("/opt/musc/scripts/install-deps.sh --runtime", "/opt/musc/scripts/install-deps.sh")), /without --runtime/));
test("Dockerfile: metrics port not exposed", () => complains(df(swap("EXPOSE 50051 9464", "EXPOSE 50051")), /EXPOSE 9464/));
test("Dockerfile: shell-form ENTRYPOINT", () => complains(df(swap('ENTRYPOINT ["/opt/musc/bin/entrypoint.sh"]', "ENTRYPOINT /opt/musc/bin/entrypoint.sh")), /exec form/));
test("Dockerfile: entry point not in the image", () => complains(df(swap("COPY --chmod=0755 deploy/docker/entrypoint.sh /opt/musc/bin/entrypoint.sh", "COPY --chmod=0755 deploy/docker/entrypoint.sh /opt/musc/bin/start.sh")), /not copied into the image/));
test("Dockerfile: CMD's products file not in the image", () => complains(df(swap("COPY deploy/products.offline.yaml /etc/musc/products.yaml", "COPY deploy/products.offline.yaml /etc/musc/other.yaml")), /--products file is not in the image/));
test("Dockerfile: fetch-weights.sh without its registry", () => complains(df(swap("COPY core/models.tsv /opt/musc/core/models.tsv", "COPY core/models.tsv /opt/musc/models.tsv")), /models\.tsv/));
test("Dockerfile: COPY of a missing file", () => complains(df(swap("COPY core/models.tsv", "COPY core/modelz.tsv")), /does not exist/));
test("Dockerfile: .dockerignore keeps build trees", () => complains(df(dockerfile, ignoreText.replace("build*\n", "")), /does not exclude build/));
test("Dockerfile: .dockerignore excludes what COPY needs", () => complains(df(dockerfile, `${ignoreText}scripts\n`), /excluded by/));
test("Dockerfile: missing .dockerignore", () => complains(df(dockerfile, null), /dockerignore missing/));
test("Dockerfile: dockerfile-utils catches a bad instruction", () => complains(df(swap("EXPOSE 50051 9464", "EXPOSE 50051 9464 abc")), /dockerfile-utils/));
test("Dockerfile.cuda: the real one passes", () => assert.deepEqual(checkDockerfile(read("Dockerfile.cuda"), { name: "Dockerfile.cuda", ignoreText: read("Dockerfile.cuda.dockerignore") }), []));

// ---- docker-compose.yml -----------------------------------------------------------------------
const compose = YAML.parse(read("docker-compose.yml"));
const withFile = (rel, text) => ({
  readText: (p) => {
    if (path.normalize(p) === path.normalize(rel)) return text;
    try { return read(p); } catch { return null; }
  },
});

test("compose: the real one passes", () => assert.deepEqual(checkCompose(compose), []));
test("compose: a published port the Dockerfile does not expose", () => {
  const c = clone(compose);
  c.services["musc-server"].ports.push("8080:8080");
  complains(checkCompose(c), /differ from EXPOSE/);
});
test("compose: metrics port not published", () => {
  const c = clone(compose);
  c.services["musc-server"].ports = ["50051:50051"];
  complains(checkCompose(c), /--metrics_listen port/);
});
test("compose: stop grace shorter than the drain", () => {
  const c = clone(compose);
  c.services["musc-server"].stop_grace_period = "30s";
  complains(checkCompose(c), /stop_grace_period/);
});
test("compose: products file that does not exist", () => {
  const c = clone(compose);
  c.services["musc-server"].volumes[0] = "./deploy/docker/nope.yaml:/etc/musc/products.yaml:ro";
  complains(checkCompose(c), /does not exist/);
});
test("compose: products mounted elsewhere than --products", () => {
  const c = clone(compose);
  c.services["musc-server"].volumes[0] = "./deploy/docker/products.yaml:/etc/products.yaml:ro";
  complains(checkCompose(c), /nothing is mounted at --products/);
});
test("compose: undeclared named volume", () => {
  const c = clone(compose);
  delete c.volumes["musc-models"];
  complains(checkCompose(c), /not declared/);
});
test("compose: interpolation without a default", () => {
  const c = clone(compose);
  c.services["musc-server"].volumes[0] = "${PRODUCTS}:/etc/musc/products.yaml:ro";
  complains(checkCompose(c), /has no default/);
});
test("compose: Prometheus scrapes the wrong port", () => {
  const text = read("deploy/prometheus/prometheus.yml").replace("musc-server:9464", "musc-server:9100");
  complains(checkCompose(compose, withFile("deploy/prometheus/prometheus.yml", text)), /no scrape target musc-server:9464/);
});
test("compose: Prometheus job renamed", () => {
  const text = read("deploy/prometheus/prometheus.yml").replace("job_name: musc-server", "job_name: musc");
  complains(checkCompose(compose, withFile("deploy/prometheus/prometheus.yml", text)), /alerts select/);
});
test("compose: rule file not mounted", () => {
  const text = read("deploy/prometheus/prometheus.yml").replace("- musc-alerts.yml", "- rules/musc-alerts.yml");
  complains(checkCompose(compose, withFile("deploy/prometheus/prometheus.yml", text)), /rule file/);
});
test("compose: Grafana provider path not mounted", () => {
  const rel = "deploy/grafana/provisioning/dashboards/musc.yml";
  complains(checkCompose(compose, withFile(rel, read(rel).replace("path: /etc/grafana/dashboards", "path: /var/lib/grafana/dashboards"))), /holds no mounted dashboard/);
});
test("compose: Grafana datasource host is no service", () => {
  const rel = "deploy/grafana/provisioning/datasources/prometheus.yml";
  complains(checkCompose(compose, withFile(rel, read(rel).replace("http://prometheus:9090", "http://prom:9090"))), /no compose service/);
});
test("compose: Grafana datasource uid differs from the dashboard's", () => {
  const rel = "deploy/grafana/provisioning/datasources/prometheus.yml";
  complains(checkCompose(compose, withFile(rel, read(rel).replace("uid: prometheus", "uid: prom"))), /provisioned uid/);
});

// ---- Kubernetes -------------------------------------------------------------------------------
const kubectl = findKubectl([]);
const rendered = kubectl ? { cpu: render(kubectl, "cpu"), gpu: render(kubectl, "gpu") } : null;
const k8sTest = (name, fn) => test(`k8s: ${name}`, { skip: kubectl ? false : "kubectl not found" }, fn);
/** The cpu (or gpu) objects with a mutation applied to a clone; returns crossCheck's errors. */
function mutated(overlay, fn) {
  const objs = clone(rendered[overlay]);
  const get = (kind) => objs.find((o) => o.kind === kind);
  const dep = get("Deployment");
  fn({ get, dep, pod: dep.spec.template.spec, c: dep.spec.template.spec.containers[0], objs });
  return crossCheck(objs, overlay).concat(...objs.map(schemaErrors));
}

k8sTest("the real overlays pass", () => {
  for (const o of ["cpu", "gpu"]) {
    assert.deepEqual(crossCheck(rendered[o], o), []);
    assert.deepEqual(rendered[o].flatMap(schemaErrors), []);
  }
});
k8sTest("readiness probe on another port", () => complains(mutated("cpu", ({ c }) => { c.readinessProbe.grpc.port = 8080; }), /readinessProbe must be a grpc probe/));
k8sTest("HTTP liveness probe", () => complains(mutated("cpu", ({ c }) => { c.livenessProbe = { httpGet: { port: 9464, path: "/metrics" } }; }), /livenessProbe must be a grpc probe/));
k8sTest("no startup probe", () => complains(mutated("cpu", ({ c }) => { delete c.startupProbe; }), /startupProbe missing/));
k8sTest("startup budget too short for loading", () => complains(mutated("cpu", ({ c }) => { c.startupProbe.failureThreshold = 6; }), /loading backbones/));
k8sTest("grace period shorter than preStop + drain", () => complains(mutated("cpu", ({ pod }) => { pod.terminationGracePeriodSeconds = 65; }), /terminationGracePeriodSeconds/));
k8sTest("longer --shutdown_grace than the grace period allows", () => complains(mutated("cpu", ({ c }) => { c.args = c.args.map((a) => a.replace("--shutdown_grace=60", "--shutdown_grace=120")); }), /terminationGracePeriodSeconds/));
k8sTest("no preStop sleep", () => complains(mutated("cpu", ({ c }) => { delete c.lifecycle; }), /preStop must sleep/));
k8sTest("--listen on another port", () => complains(mutated("cpu", ({ c }) => { c.args = c.args.map((a) => a.replace("--listen=0.0.0.0:50051", "--listen=0.0.0.0:50052")); }), /--listen/));
k8sTest("root filesystem writable", () => complains(mutated("cpu", ({ c }) => { c.securityContext.readOnlyRootFilesystem = false; }), /readOnlyRootFilesystem/));
k8sTest("runs as root", () => complains(mutated("cpu", ({ pod }) => { pod.securityContext.runAsUser = 0; }), /runAsUser/));
k8sTest("privilege escalation allowed", () => complains(mutated("cpu", ({ c }) => { c.securityContext.allowPrivilegeEscalation = true; }), /allowPrivilegeEscalation/));
k8sTest("capabilities kept", () => complains(mutated("cpu", ({ c }) => { c.securityContext.capabilities.drop = ["NET_RAW"]; }), /drop ALL/));
k8sTest("no seccomp profile", () => complains(mutated("cpu", ({ pod }) => { delete pod.securityContext.seccompProfile; }), /seccompProfile/));
k8sTest("no scratch emptyDir", () => complains(mutated("cpu", ({ c }) => { c.volumeMounts = c.volumeMounts.filter((m) => m.mountPath !== "/tmp"); }), /emptyDir/));
k8sTest("products ConfigMap mounted elsewhere", () => complains(mutated("cpu", ({ c }) => { c.volumeMounts.find((m) => m.name === "products").mountPath = "/etc/products"; }), /no ConfigMap volume mounted over/));
k8sTest("products volume names a stale ConfigMap", () => complains(mutated("cpu", ({ pod }) => { pod.volumes.find((v) => v.configMap).configMap.name = "musc-products"; }), /rendered is/));
k8sTest("relative weights path in the products", () => complains(mutated("cpu", ({ get }) => { const cm = get("ConfigMap"); cm.data["products.yaml"] = cm.data["products.yaml"].replace("/models/darknet-tiny-tfjs", "darknet-tiny-tfjs"); }), /must be absolute/));
k8sTest("weights outside the weights volume", () => complains(mutated("cpu", ({ get }) => { const cm = get("ConfigMap"); cm.data["products.yaml"] = cm.data["products.yaml"].replace("/models/darknet-tiny-tfjs", "/weights/darknet-tiny-tfjs"); }), /no mounted weights volume/));
k8sTest("Service port targets no container port", () => complains(mutated("cpu", ({ get }) => { get("Service").spec.ports[1].targetPort = "metric"; }), /no container port/));
k8sTest("Service ports swapped", () => complains(mutated("cpu", ({ get }) => { get("Service").spec.ports[0].targetPort = "metrics"; }), /reaches container port/));
k8sTest("Service selects other pods", () => complains(mutated("cpu", ({ get }) => { get("Service").spec.selector["app.kubernetes.io/component"] = "worker"; }), /Service selector/));
k8sTest("HPA targets another Deployment", () => complains(mutated("cpu", ({ get }) => { get("HorizontalPodAutoscaler").spec.scaleTargetRef.name = "musc"; }), /HPA targets/));
k8sTest("HPA on CPU instead of the queue", () => complains(mutated("cpu", ({ get }) => { get("HorizontalPodAutoscaler").spec.metrics = [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 80 } } }]; }), /musc_queue_depth/));
k8sTest("PDB selects other pods", () => complains(mutated("cpu", ({ get }) => { get("PodDisruptionBudget").spec.selector.matchLabels.app = "x"; }), /PDB selector/));
k8sTest("PDB blocks every drain", () => complains(mutated("cpu", ({ get }) => { const p = get("PodDisruptionBudget"); delete p.spec.maxUnavailable; p.spec.minAvailable = 2; }), /blocks every voluntary disruption/));
k8sTest("cpu overlay asks for a GPU", () => complains(mutated("cpu", ({ c }) => { c.resources.limits["nvidia.com/gpu"] = 1; }), /cpu overlay must not request nvidia.com\/gpu/));
k8sTest("the gpu rendering fails the cpu rules", () => complains(crossCheck(rendered.gpu, "cpu"), /must not request nvidia.com\/gpu/));
k8sTest("gpu overlay without a GPU", () => complains(mutated("gpu", ({ c }) => { delete c.resources.limits["nvidia.com/gpu"]; delete c.resources.requests["nvidia.com/gpu"]; }), /nvidia.com\/gpu to at least 1/));
k8sTest("gpu overlay with the CPU image", () => complains(mutated("gpu", ({ c }) => { c.image = "registry.example.com/musc-serve:0.1.0"; }), /must end in -cuda/));
k8sTest("gpu overlay without toleration", () => complains(mutated("gpu", ({ pod }) => { delete pod.tolerations; }), /tolerate/));
k8sTest("more threads than the CPU limit", () => complains(mutated("cpu", ({ c }) => { c.args = c.args.map((a) => a.replace("--threads=4", "--threads=16")); }), /--threads/));
k8sTest("no memory limit", () => complains(mutated("cpu", ({ c }) => { delete c.resources.limits.memory; }), /resources.limits.memory/));
k8sTest("prometheus.io/port not the metrics port", () => complains(mutated("cpu", ({ dep }) => { dep.spec.template.metadata.annotations["prometheus.io/port"] = "50051"; }), /prometheus.io\/port/));
k8sTest("ServiceMonitor scrapes a missing port", () => complains(mutated("cpu", ({ get }) => { get("ServiceMonitor").spec.endpoints[0].port = "web"; }), /no Service port/));
k8sTest("ServiceMonitor without selector (CRD schema)", () => complains(mutated("cpu", ({ get }) => { delete get("ServiceMonitor").spec.selector; }), /selector/));
k8sTest("Ingress without product affinity", () => complains(mutated("cpu", ({ get }) => { get("Ingress").metadata.annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] = "$remote_addr"; }), /upstream-hash-by/));
k8sTest("Ingress speaking HTTP/1 to the backend", () => complains(mutated("cpu", ({ get }) => { delete get("Ingress").metadata.annotations["nginx.ingress.kubernetes.io/backend-protocol"]; }), /backend-protocol/));
k8sTest("Ingress to the metrics port", () => complains(mutated("cpu", ({ get }) => { get("Ingress").spec.rules[0].http.paths[0].backend.service.port.name = "metrics"; }), /grpc port/));
k8sTest("unknown field (typo)", () => complains(mutated("cpu", ({ c }) => { c.readinesProbe = c.readinessProbe; }), /readinesProbe: unknown field/));
k8sTest("wrong type (schema)", () => complains(mutated("cpu", ({ c }) => { c.ports[0].containerPort = "50051"; }), /must be integer/));
k8sTest("missing required field (schema)", () => complains(mutated("cpu", ({ dep }) => { delete dep.spec.selector; }), /selector/));
k8sTest("fetch-weights Job mounts another claim", () => {
  const job = YAML.parse(read("deploy/k8s/jobs/fetch-weights.yaml"));
  assert.deepEqual(checkFetchJob(job, rendered.cpu), []);
  job.spec.template.spec.volumes[0].persistentVolumeClaim.claimName = "weights";
  complains(checkFetchJob(job, rendered.cpu), /does not mount the weights PVC/);
});

// ---- monitoring -------------------------------------------------------------------------------
const dash = JSON.parse(read("deploy/grafana/dashboards/musc-serve.json"));
const rules = YAML.parse(read("deploy/prometheus/musc-alerts.yml"));
const firstExpr = (d, re) => d.panels.flatMap((p) => p.targets ?? []).find((t) => re.test(t.expr));

test("dashboard: the real one passes", () => assert.deepEqual(checkDashboard(dash), []));
test("dashboard: fixed rate window", () => {
  const d = clone(dash);
  const t = firstExpr(d, /rate\(/);
  t.expr = t.expr.replace("$__rate_interval", "5m");
  complains(checkDashboard(d), /must use \$__rate_interval/);
});
test("dashboard: misspelt metric", () => {
  const d = clone(dash);
  const t = firstExpr(d, /musc_queue_depth/);
  t.expr = t.expr.replace("musc_queue_depth", "musc_queue_length");
  complains(checkDashboard(d), /unknown series musc_queue_length/);
});
test("dashboard: product filter missing", () => {
  const d = clone(dash);
  const t = firstExpr(d, /musc_images_received_total/);
  t.expr = t.expr.replace('{product=~"$product"}', "");
  complains(checkDashboard(d), /must be filtered with product/);
});
test("dashboard: histogram_quantile not by le", () => {
  const d = clone(dash);
  const t = firstExpr(d, /musc_stage_seconds_bucket/);
  t.expr = t.expr.replace("by (le, stage)", "by (stage)");
  complains(checkDashboard(d), /aggregated by \(le/);
});
test("dashboard: memory panel removed", () => {
  const d = clone(dash);
  d.panels = d.panels.filter((p) => !(p.targets ?? []).some((t) => /process_resident_memory_bytes/.test(t.expr)));
  complains(checkDashboard(d), /no panel shows process_resident_memory_bytes/);
});
test("dashboard: overlapping panels", () => {
  const d = clone(dash);
  const [a, b] = d.panels.filter((p) => p.type === "timeseries");
  b.gridPos = { ...a.gridPos };
  complains(checkDashboard(d), /overlap/);
});
test("dashboard: duplicate panel ids", () => {
  const d = clone(dash);
  d.panels[2].id = d.panels[1].id;
  complains(checkDashboard(d), /unique/);
});
test("dashboard: hard-coded datasource", () => {
  const d = clone(dash);
  d.panels.find((p) => p.type === "timeseries").datasource = { type: "prometheus", uid: "abc" };
  complains(checkDashboard(d), /datasource must be/);
});
test("dashboard: product variable from another metric", () => {
  const d = clone(dash);
  d.templating.list.find((v) => v.name === "product").query.query = "label_values(up, job)";
  complains(checkDashboard(d), /variable product/);
});
test("alerts: unknown series", () => {
  const r = clone(rules);
  r.groups[0].rules[0].expr = "musc_up == 0";
  complains(checkAlerts(r), /unknown series musc_up/);
});
test("docs: an alert not described", () => {
  const doc = read("docs/DEPLOYMENT.md");
  assert.deepEqual(checkDocs(doc, dash, rules), []);
  complains(checkDocs(doc.replaceAll("MuscQueueFull", "QueueFull"), dash, rules), /MuscQueueFull/);
  complains(checkDocs(doc.replaceAll("musc_running_batches", "running"), dash, rules), /musc_running_batches/);
});

// ---- dashboard_exprs.mjs ----------------------------------------------------------------------
test("dashboard_exprs: substitutions", () => {
  const vars = new Set(["product"]);
  assert.equal(substitute('rate(x{product=~"$product"}[$__rate_interval])', vars), 'rate(x{product=~".*"}[1m])');
  assert.equal(substitute('x{product=~"${product:regex}"}[${__interval}]', vars), 'x{product=~".*"}[1m]');
  assert.equal(substitute('x{product=~"[[product]]"}\n  / y', vars), 'x{product=~".*"} / y');
  assert.throws(() => substitute("x[$__foo]", vars), /unknown Grafana built-in/);
  assert.throws(() => substitute('x{a="$other"}', vars), /not a variable/);
});
test("dashboard_exprs: one line per expression, no variable left", () => {
  const exprs = dashboardExprs(dash);
  assert.ok(exprs.length >= 20);
  for (const e of exprs) {
    assert.ok(!/[$\n]|\[\[/.test(e), `left over: ${e}`);
  }
});
