#!/usr/bin/env node
// Offline checks of deploy/k8s: renders overlays/cpu and overlays/gpu with `kubectl kustomize`,
// validates every object against the Kubernetes schemas of kubernetes-models (types, required
// fields) and @kubernetes-models/prometheus-operator (ServiceMonitor), rejects unknown fields
// (lib/strict_fields.mjs), and cross-checks what must agree between objects: probes, ports,
// selectors, the HPA's target, the drain timing, the security context, where the products
// ConfigMap is mounted, the GPU request. Also checks jobs/fetch-weights.yaml.
//
//   MUSC_DEPLOY_NODE_DIR=DIR node tests/deploy/k8s_check.mjs [--kubectl PATH]
//
// kubectl: --kubectl, else $MUSC_KUBECTL, else the first on PATH.
// Exit 0: all good; 1: problems (listed); 77: kubectl absent (SKIP, CTest's SKIP_RETURN_CODE).
import { execFileSync } from "node:child_process";
import { readFileSync, accessSync, constants } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "./lib/deps.mjs";
import { unknownFields } from "./lib/strict_fields.mjs";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const OVERLAYS = ["cpu", "gpu"];
const SERVER_CONTAINER = "musc-server";

// ---- schema validation ------------------------------------------------------------------------

/** The kubernetes-models class for an object's apiVersion and kind, or null. */
export function modelClass(obj) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  try {
    const mod = group === "monitoring.coreos.com"
      ? load(`@kubernetes-models/prometheus-operator/${obj.apiVersion}`)
      : load(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`);
    return mod[obj.kind] ?? null;
  } catch {
    return null;
  }
}

/** Schema errors of one object: kubernetes-models' validate() plus unknown fields. */
export function schemaErrors(obj) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  const Model = modelClass(obj);
  if (!Model) return [`${name}: no model for ${obj.apiVersion} ${obj.kind}`];
  const errors = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    errors.push(`${name}: ${e.message}`);
  }
  return errors.concat(unknownFields(obj));
}

// ---- helpers ----------------------------------------------------------------------------------

/** `--name=value` and `--name value` arguments as a Map (flags without value: ""). */
export function parseArgs(args = []) {
  const out = new Map();
  for (let i = 0; i < args.length; i++) {
    const a = String(args[i]);
    if (!a.startsWith("--")) continue;
    const eq = a.indexOf("=");
    if (eq >= 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < args.length && !String(args[i + 1]).startsWith("--")) out.set(a.slice(2), String(args[++i]));
    else out.set(a.slice(2), "");
  }
  return out;
}

const portOf = (hostPort) => Number(String(hostPort).split(":").pop());
const isSubset = (sub = {}, sup = {}) =>
  Object.keys(sub).length > 0 && Object.entries(sub).every(([k, v]) => sup[k] === v);

/** CPU quantity in cores ("4", "500m", 2). */
export function cpuCores(q) {
  if (q === undefined) return NaN;
  const s = String(q);
  return s.endsWith("m") ? Number(s.slice(0, -1)) / 1000 : Number(s);
}

/** Seconds the preStop hook waits: exec `sleep N` or the native sleep action. */
export function preStopSeconds(container) {
  const pre = container.lifecycle?.preStop;
  if (!pre) return null;
  if (pre.sleep?.seconds !== undefined) return Number(pre.sleep.seconds);
  const cmd = pre.exec?.command ?? [];
  const i = cmd.indexOf("sleep");
  if (i >= 0 && cmd[i + 1] !== undefined) return Number(cmd[i + 1]);
  const sh = cmd.join(" ").match(/sleep\s+(\d+)/);
  return sh ? Number(sh[1]) : null;
}

function only(objects, kind, errors) {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) errors.push(`expected exactly one ${kind}, found ${found.length}`);
  return found[0];
}

// ---- cross-checks -----------------------------------------------------------------------------

/** Consistency of a rendered overlay. overlay: "cpu" | "gpu". Returns a list of problems. */
export function crossCheck(objects, overlay) {
  const errors = [];
  const err = (m) => errors.push(`${overlay}: ${m}`);
  const wrap = { push: err };
  const dep = only(objects, "Deployment", wrap);
  const svc = only(objects, "Service", wrap);
  const cm = only(objects, "ConfigMap", wrap);
  const pdb = only(objects, "PodDisruptionBudget", wrap);
  const hpa = only(objects, "HorizontalPodAutoscaler", wrap);
  const sm = only(objects, "ServiceMonitor", wrap);
  const ing = only(objects, "Ingress", wrap);
  const pvc = only(objects, "PersistentVolumeClaim", wrap);
  if (!dep) return errors;

  const pod = dep.spec?.template?.spec ?? {};
  const podLabels = dep.spec?.template?.metadata?.labels ?? {};
  const c = (pod.containers ?? []).find((x) => x.name === SERVER_CONTAINER);
  if (!c) {
    err(`Deployment has no container '${SERVER_CONTAINER}'`);
    return errors;
  }
  const args = parseArgs(c.args);
  const ports = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));

  // Deployment selector selects its own pods.
  if (!isSubset(dep.spec?.selector?.matchLabels, podLabels)) {
    err("Deployment selector does not match its pod template labels");
  }

  // Ports: named grpc 50051 and metrics 9464, agreeing with the server's flags.
  if (ports.get("grpc") !== 50051) err("container port 'grpc' must be 50051");
  if (ports.get("metrics") !== 9464) err("container port 'metrics' must be 9464");
  if (!args.has("listen") || portOf(args.get("listen")) !== ports.get("grpc")) {
    err(`--listen (${args.get("listen")}) does not listen on the grpc container port`);
  }
  if (!args.has("metrics_listen") || portOf(args.get("metrics_listen")) !== ports.get("metrics")) {
    err(`--metrics_listen (${args.get("metrics_listen")}) does not listen on the metrics port`);
  }

  // Probes: native gRPC health checks on the gRPC port; a startup budget for loading backbones.
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const p = c[probe];
    if (!p) err(`${probe} missing`);
    else if (p.grpc?.port !== 50051) err(`${probe} must be a grpc probe on port 50051`);
  }
  const sp = c.startupProbe ?? {};
  const startupBudget = (sp.periodSeconds ?? 10) * (sp.failureThreshold ?? 3);
  if (startupBudget < 300) err(`startupProbe allows only ${startupBudget} s for loading backbones (< 300)`);

  // Drain: grace period > preStop sleep + --shutdown_grace.
  const grace = Number(args.get("shutdown_grace") ?? 60);
  const sleep = preStopSeconds(c);
  if (sleep === null || !(sleep > 0)) err("preStop must sleep before SIGTERM (endpoint removal first)");
  const tgps = pod.terminationGracePeriodSeconds ?? 30;
  if (!(tgps > grace + (sleep ?? 0))) {
    err(`terminationGracePeriodSeconds ${tgps} must exceed preStop ${sleep} s + --shutdown_grace ${grace} s`);
  }

  // Security context.
  const psc = pod.securityContext ?? {};
  const csc = c.securityContext ?? {};
  if (psc.runAsNonRoot !== true && csc.runAsNonRoot !== true) err("runAsNonRoot must be true");
  const uid = csc.runAsUser ?? psc.runAsUser;
  if (uid !== 10001) err(`runAsUser must be 10001 (the image's user), not ${uid}`);
  if ((csc.seccompProfile ?? psc.seccompProfile)?.type !== "RuntimeDefault") err("seccompProfile must be RuntimeDefault");
  if (csc.allowPrivilegeEscalation !== false) err("allowPrivilegeEscalation must be false");
  if (csc.readOnlyRootFilesystem !== true) err("readOnlyRootFilesystem must be true");
  if (!(csc.capabilities?.drop ?? []).includes("ALL")) err("capabilities must drop ALL");
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const mounts = c.volumeMounts ?? [];
  const tmp = mounts.find((m) => m.mountPath === "/tmp");
  if (!tmp || !volumes.get(tmp.name)?.emptyDir) err("a writable emptyDir must be mounted at /tmp (read-only root)");

  // The products ConfigMap is mounted where --products points, and holds that key.
  const products = args.get("products");
  if (!products) err("--products missing");
  else if (cm) {
    const mount = mounts.find((m) => products.startsWith(m.mountPath.replace(/\/?$/, "/")));
    const vol = mount && volumes.get(mount.name);
    if (!vol?.configMap) err(`no ConfigMap volume mounted over ${products}`);
    else {
      if (vol.configMap.name !== cm.metadata.name) {
        err(`products volume names ConfigMap '${vol.configMap.name}', rendered is '${cm.metadata.name}'`);
      }
      const rel = products.slice(mount.mountPath.replace(/\/?$/, "/").length);
      const item = (vol.configMap.items ?? []).find((it) => it.path === rel);
      const key = vol.configMap.items ? item?.key : rel;
      if (!key || !(key in (cm.data ?? {}))) err(`ConfigMap has no key for ${products}`);
      else errors.push(...productsWeights(cm.data[key], mounts, volumes).map((m) => `${overlay}: ${m}`));
    }
  }

  // Weights: the PVC the Deployment mounts exists.
  const claims = [...volumes.values()].filter((v) => v.persistentVolumeClaim).map((v) => v.persistentVolumeClaim.claimName);
  if (pvc && !claims.includes(pvc.metadata.name)) err(`no volume uses the PVC '${pvc.metadata.name}'`);
  for (const claim of claims) {
    if (!objects.some((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === claim)) {
      err(`PVC '${claim}' is mounted but not part of the manifests`);
    }
  }

  // Prometheus annotations point at the metrics port.
  const ann = dep.spec?.template?.metadata?.annotations ?? {};
  if (ann["prometheus.io/scrape"] !== "true") err("pod annotation prometheus.io/scrape must be \"true\"");
  if (Number(ann["prometheus.io/port"]) !== ports.get("metrics")) err("prometheus.io/port is not the metrics port");
  if (ann["prometheus.io/path"] !== "/metrics") err("prometheus.io/path must be /metrics");

  // Resources: requests and limits for CPU and memory; --threads within the CPU limit.
  const res = c.resources ?? {};
  for (const kind of ["requests", "limits"]) {
    for (const r of ["cpu", "memory"]) if (res[kind]?.[r] === undefined) err(`resources.${kind}.${r} missing`);
  }
  const threads = Number(args.get("threads") ?? 0);
  if (!(threads > 0) || threads > cpuCores(res.limits?.cpu)) {
    err(`--threads (${args.get("threads")}) must be set and at most the CPU limit (${res.limits?.cpu})`);
  }

  // GPU overlay asks for a GPU and runs the CUDA image on GPU nodes; the CPU overlay does neither.
  const gpus = Number(res.limits?.["nvidia.com/gpu"] ?? 0);
  const anyGpu = gpus > 0 || res.requests?.["nvidia.com/gpu"] !== undefined;
  const tag = String(c.image).split(":").pop();
  if (!String(c.image).includes("/")) err(`image '${c.image}' has no registry (overlay images: missing?)`);
  if (overlay === "gpu") {
    if (gpus < 1) err("gpu overlay must limit nvidia.com/gpu to at least 1");
    if (!tag.endsWith("-cuda")) err(`gpu overlay image tag '${tag}' must end in -cuda`);
    if (!pod.nodeSelector && !pod.affinity) err("gpu overlay must select GPU nodes (nodeSelector/affinity)");
    if (!(pod.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu")) err("gpu overlay must tolerate nvidia.com/gpu taints");
  } else {
    if (anyGpu) err("cpu overlay must not request nvidia.com/gpu");
    if (tag.endsWith("-cuda")) err(`cpu overlay image tag '${tag}' must not be -cuda`);
  }

  // Service: selects the pods; its ports reach named container ports.
  if (svc) {
    if (!isSubset(svc.spec?.selector, podLabels)) err("Service selector does not match the pod labels");
    const byName = new Map((svc.spec?.ports ?? []).map((p) => [p.name, p]));
    for (const name of ["grpc", "metrics"]) {
      const p = byName.get(name);
      if (!p) { err(`Service has no port named ${name}`); continue; }
      const target = p.targetPort ?? p.port;
      const reaches = typeof target === "number" ? [...ports.values()].includes(target) : ports.has(target);
      if (!reaches) err(`Service port ${name} targets ${target}, which is no container port`);
      const containerPort = typeof target === "number" ? target : ports.get(target);
      if (containerPort !== ports.get(name)) err(`Service port ${name} reaches container port ${containerPort}, not ${name}'s`);
    }
  }

  // PDB selects the pods and leaves room to disrupt one.
  if (pdb) {
    if (!isSubset(pdb.spec?.selector?.matchLabels, podLabels)) err("PDB selector does not match the pod labels");
    const min = hpa?.spec?.minReplicas ?? dep.spec?.replicas ?? 1;
    if (pdb.spec?.minAvailable !== undefined && !(Number(pdb.spec.minAvailable) < min)) {
      err(`PDB minAvailable ${pdb.spec.minAvailable} blocks every voluntary disruption at ${min} replicas`);
    }
  }

  // HPA scales this Deployment on the queue depth.
  if (hpa) {
    const ref = hpa.spec?.scaleTargetRef ?? {};
    if (ref.kind !== "Deployment" || ref.name !== dep.metadata.name || ref.apiVersion !== "apps/v1") {
      err(`HPA targets ${ref.apiVersion} ${ref.kind} '${ref.name}', not the Deployment '${dep.metadata.name}'`);
    }
    const m = (hpa.spec?.metrics ?? []).find((x) => x.type === "Pods");
    if (m?.pods?.metric?.name !== "musc_queue_depth") err("HPA must scale on the Pods metric musc_queue_depth");
    if (!(hpa.spec.minReplicas <= hpa.spec.maxReplicas)) err("HPA minReplicas > maxReplicas");
  }

  // ServiceMonitor (a CRD: required fields checked here too) scrapes the Service's metrics port.
  if (sm) {
    if (!sm.spec?.selector) err("ServiceMonitor spec.selector is required");
    if (!(sm.spec?.endpoints?.length > 0)) err("ServiceMonitor needs at least one endpoint");
    if (svc && !isSubset(sm.spec?.selector?.matchLabels, svc.metadata?.labels)) {
      err("ServiceMonitor selector does not match the Service's labels");
    }
    for (const ep of sm.spec?.endpoints ?? []) {
      if (!(svc?.spec?.ports ?? []).some((p) => p.name === ep.port)) err(`ServiceMonitor endpoint port '${ep.port}' is no Service port`);
      if ((ep.path ?? "/metrics") !== "/metrics") err("ServiceMonitor path must be /metrics");
    }
  }

  // Ingress: gRPC to the backend, consistent hashing on the product header.
  if (ing) {
    const a = ing.metadata?.annotations ?? {};
    if (a["nginx.ingress.kubernetes.io/backend-protocol"] !== "GRPC") err("Ingress backend-protocol must be GRPC");
    if (a["nginx.ingress.kubernetes.io/upstream-hash-by"] !== "$http_x_musc_product") {
      err("Ingress upstream-hash-by must be $http_x_musc_product (affinity by x-musc-product)");
    }
    for (const rule of ing.spec?.rules ?? []) {
      for (const p of rule.http?.paths ?? []) {
        const b = p.backend?.service ?? {};
        const sp = (svc?.spec?.ports ?? []).find((x) => x.name === b.port?.name || x.port === b.port?.number);
        if (b.name !== svc?.metadata?.name || sp?.name !== "grpc") err("Ingress backend must be the Service's grpc port");
      }
    }
  }
  return errors;
}

/** Weight paths of a products file must be absolute and lie on a mounted volume. */
export function productsWeights(text, mounts, volumes) {
  const errors = [];
  let doc;
  try {
    doc = load("yaml").parse(text);
  } catch (e) {
    return [`products file is not YAML: ${e.message}`];
  }
  if (!Array.isArray(doc?.products) || doc.products.length === 0) return ["products file lists no products"];
  for (const p of doc.products) {
    const w = p.backbone?.weights;
    if (w === undefined) continue;
    if (!w.startsWith("/")) errors.push(`product ${p.name}: weights '${w}' must be absolute (relative resolves against the ConfigMap mount)`);
    else if (!mounts.some((m) => w.startsWith(m.mountPath.replace(/\/?$/, "/")) && volumes.get(m.name)?.persistentVolumeClaim)) {
      errors.push(`product ${p.name}: weights '${w}' are on no mounted weights volume`);
    }
  }
  return errors;
}

/** jobs/fetch-weights.yaml: valid, hardened, and filling the claim the Deployment reads. */
export function checkFetchJob(job, deployObjects) {
  const errors = schemaErrors(job);
  const pod = job.spec?.template?.spec ?? {};
  const c = pod.containers?.[0] ?? {};
  if (pod.securityContext?.runAsNonRoot !== true) errors.push("fetch-weights Job: runAsNonRoot must be true");
  if (c.securityContext?.allowPrivilegeEscalation !== false) errors.push("fetch-weights Job: allowPrivilegeEscalation must be false");
  if (c.args?.[0] !== "fetch-weights") errors.push("fetch-weights Job: must run the entrypoint's fetch-weights command");
  const claims = (pod.volumes ?? []).filter((v) => v.persistentVolumeClaim).map((v) => v.persistentVolumeClaim.claimName);
  const pvc = deployObjects.find((o) => o.kind === "PersistentVolumeClaim");
  if (!pvc || !claims.includes(pvc.metadata.name)) errors.push("fetch-weights Job: does not mount the weights PVC");
  const env = new Map((c.env ?? []).map((e) => [e.name, e.value]));
  const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === env.get("MUSC_WEIGHTS_DIR"));
  if (!mount || mount.readOnly) errors.push("fetch-weights Job: MUSC_WEIGHTS_DIR must be the writable PVC mount");
  return errors;
}

// ---- main -------------------------------------------------------------------------------------

export function render(kubectl, overlay) {
  const out = execFileSync(kubectl, ["kustomize", path.join(repo, "deploy", "k8s", "overlays", overlay)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return load("yaml").parseAllDocuments(out).map((d) => d.toJS()).filter(Boolean);
}

export function findKubectl(argv) {
  const i = argv.indexOf("--kubectl");
  const candidates = i >= 0 && argv[i + 1] ? [argv[i + 1]] : [];
  if (process.env.MUSC_KUBECTL) candidates.push(process.env.MUSC_KUBECTL);
  candidates.push(...(process.env.PATH ?? "").split(":").map((d) => path.join(d, "kubectl")));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return null;
}

function main() {
  const kubectl = findKubectl(process.argv);
  if (!kubectl) {
    console.log("SKIP: kubectl not found (kubectl 1.32 with built-in kustomize renders the overlays)");
    process.exit(77);
  }
  const problems = [];
  let cpuObjects = [];
  for (const overlay of OVERLAYS) {
    let objects;
    try {
      objects = render(kubectl, overlay);
    } catch (e) {
      problems.push(`${overlay}: kubectl kustomize failed: ${e.stderr || e.message}`);
      continue;
    }
    if (overlay === "cpu") cpuObjects = objects;
    for (const o of objects) problems.push(...schemaErrors(o).map((m) => `${overlay}: ${m}`));
    problems.push(...crossCheck(objects, overlay));
    console.log(`${overlay}: ${objects.length} objects (${objects.map((o) => o.kind).join(", ")})`);
  }
  const job = load("yaml").parse(readFileSync(path.join(repo, "deploy", "k8s", "jobs", "fetch-weights.yaml"), "utf8"));
  problems.push(...checkFetchJob(job, cpuObjects));
  if (problems.length) {
    console.error(problems.map((p) => `FAIL ${p}`).join("\n"));
    process.exit(1);
  }
  console.log("deploy/k8s: overlays cpu and gpu and jobs/fetch-weights.yaml are consistent");
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
