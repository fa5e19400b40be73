#!/usr/bin/env node
// Offline checks of docker-compose.yml against what it refers to (no Docker engine here):
//   * musc-server: built from a Dockerfile that exists; its published container ports are exactly
//     the Dockerfile's EXPOSEd ports, and the server's --listen/--metrics_listen use them; the
//     products file it mounts exists and is mounted where --products points; weights paths of that
//     file lie on the /models volume (the image's MUSC_WEIGHTS_DIR); stop_grace_period exceeds
//     --shutdown_grace;
//   * prometheus: its config (deploy/prometheus/prometheus.yml) is mounted where --config.file
//     points, scrapes musc-server at the metrics port, and its rule files are mounted with it;
//   * grafana: the provisioning and dashboard folders exist; the dashboard provider's path is
//     where the dashboards are mounted; the datasource URL names the prometheus service and the
//     uid the dashboard defaults to;
//   * every bind-mount source exists and every named volume is declared.
//
//   MUSC_DEPLOY_NODE_DIR=DIR node tests/deploy/compose_check.mjs
import { readFileSync, existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "./lib/deps.mjs";
import { instructions, stages } from "./lib/dockerfile.mjs";
import { parseArgs } from "./k8s_check.mjs";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Compose variable interpolation with defaults only: ${VAR:-default}, ${VAR-default}. */
export function interpolate(s, errors) {
  return String(s).replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (whole, name, def) => {
    if (def === undefined) errors.push(`${whole} has no default: the file needs an environment`);
    return def ?? "";
  });
}

/** Parses "SRC:TARGET[:MODE]" or the long form into {source, target, readOnly, bind}. */
export function parseVolume(v, errors) {
  if (typeof v === "object") {
    return { source: interpolate(v.source ?? "", errors), target: v.target, readOnly: !!v.read_only, bind: v.type === "bind" };
  }
  const parts = interpolate(v, errors).split(":");
  const [source, target, mode] = parts.length === 1 ? ["", parts[0], ""] : parts;
  return { source, target, readOnly: (mode ?? "").split(",").includes("ro"), bind: /^[./~]/.test(source) };
}

/** Published container ports of a service ("HOST:CONTAINER", numbers, long form). */
export function containerPorts(svc) {
  return (svc.ports ?? []).map((p) => String(typeof p === "object" ? p.target : String(p).split("/")[0].split(":").pop()));
}

/** Seconds of a compose duration ("75s", "1m30s", "2m"). */
export function seconds(d) {
  if (d === undefined) return 10;  // Docker's default
  let total = 0;
  for (const m of String(d).matchAll(/(\d+(?:\.\d+)?)(h|m|s|ms)/g)) {
    total += Number(m[1]) * { h: 3600, m: 60, s: 1, ms: 0.001 }[m[2]];
  }
  return total;
}

/** The bind mount whose container target holds containerPath; returns [mount, host path]. */
function hostPathOf(mounts, containerPath) {
  for (const m of mounts) {
    if (!m.bind) continue;
    if (containerPath === m.target) return [m, m.source];
    if (containerPath.startsWith(m.target.replace(/\/?$/, "/"))) {
      return [m, path.join(m.source, containerPath.slice(m.target.replace(/\/?$/, "/").length))];
    }
  }
  return [null, null];
}

/**
 * Problems of a compose document. ctx: {readText(rel) -> string|null, isDir(rel), listDir(rel)};
 * defaults read the repository.
 */
export function checkCompose(compose, ctx = {}) {
  const isDir = ctx.isDir ?? ((rel) => existsSync(path.join(repo, rel)) && statSync(path.join(repo, rel)).isDirectory());
  const readText = ctx.readText ??
    ((rel) => (existsSync(path.join(repo, rel)) && !isDir(rel) ? readFileSync(path.join(repo, rel), "utf8") : null));
  const listDir = ctx.listDir ?? ((rel) => (isDir(rel) ? readdirSync(path.join(repo, rel)) : []));
  const YAML = load("yaml");
  const errors = [];
  const services = compose.services ?? {};
  for (const name of ["musc-server", "prometheus", "grafana"]) {
    if (!services[name]) errors.push(`service '${name}' missing`);
  }
  const mountsOf = (name) => (services[name]?.volumes ?? []).map((v) => parseVolume(v, errors));

  // Bind sources exist; named volumes are declared.
  for (const [name, svc] of Object.entries(services)) {
    for (const m of mountsOf(name)) {
      if (m.bind) {
        if (readText(m.source) === null && !isDir(m.source)) errors.push(`${name}: bind source '${m.source}' does not exist`);
      } else if (m.source && !(m.source in (compose.volumes ?? {}))) {
        errors.push(`${name}: named volume '${m.source}' is not declared under volumes:`);
      }
    }
    void svc;
  }

  // ---- musc-server against its Dockerfile --------------------------------------------------
  const server = services["musc-server"];
  let metricsPort = null;
  if (server) {
    const dockerfile = path.join(server.build?.context ?? ".", server.build?.dockerfile ?? "Dockerfile");
    const text = readText(dockerfile);
    if (text === null) errors.push(`musc-server: build file '${dockerfile}' does not exist`);
    const st = text === null ? [] : stages(instructions(text)).stages;
    const final = st[st.length - 1];
    const exposed = (final?.body ?? []).filter((x) => x.keyword === "EXPOSE").flatMap((x) => x.args.map((p) => p.split("/")[0]));
    const published = containerPorts(server);
    if ([...exposed].sort().join() !== [...published].sort().join()) {
      errors.push(`musc-server: published container ports [${published}] differ from EXPOSE [${exposed}]`);
    }
    const cmd = Array.isArray(server.command) ? server.command : String(server.command ?? "").split(/\s+/);
    const args = parseArgs(cmd);
    const listen = (args.get("listen") ?? "").split(":").pop();
    metricsPort = (args.get("metrics_listen") ?? "").split(":").pop();
    if (!published.includes(listen)) errors.push(`musc-server: --listen port '${listen}' is not published`);
    if (!published.includes(metricsPort)) errors.push(`musc-server: --metrics_listen port '${metricsPort}' is not published`);
    const grace = Number(args.get("shutdown_grace") ?? 60);
    if (!(seconds(server.stop_grace_period) > grace)) {
      errors.push(`musc-server: stop_grace_period (${server.stop_grace_period ?? "10s"}) must exceed --shutdown_grace ${grace}`);
    }
    const mounts = mountsOf("musc-server");
    const products = args.get("products");
    const [pm, productsHost] = products ? hostPathOf(mounts, products) : [null, null];
    if (!pm) errors.push(`musc-server: nothing is mounted at --products (${products})`);
    else {
      const ptext = readText(productsHost);
      if (ptext === null) errors.push(`musc-server: products file '${productsHost}' does not exist`);
      else {
        const weightsVolume = mounts.find((m) => m.target === "/models");
        if (!weightsVolume) errors.push("musc-server: no volume at /models (the image's MUSC_WEIGHTS_DIR)");
        for (const p of YAML.parse(ptext)?.products ?? []) {
          const w = p.backbone?.weights;
          if (w !== undefined && !w.startsWith("/models/")) {
            errors.push(`musc-server: product ${p.name}: weights '${w}' are not under /models`);
          }
        }
      }
    }
  }

  // ---- prometheus ----------------------------------------------------------------------------
  const prom = services.prometheus;
  let promPort = "9090";
  if (prom) {
    const args = parseArgs(prom.command ?? []);
    const configPath = args.get("config.file") ?? "/etc/prometheus/prometheus.yml";
    promPort = (args.get("web.listen-address") ?? ":9090").split(":").pop();
    const [, configHost] = hostPathOf(mountsOf("prometheus"), configPath);
    const ctext = configHost && readText(configHost);
    if (!ctext) errors.push(`prometheus: --config.file ${configPath} is not a mounted file of the repository`);
    else {
      if (path.normalize(configHost) !== path.normalize("deploy/prometheus/prometheus.yml")) {
        errors.push(`prometheus: mounts ${configHost}, not deploy/prometheus/prometheus.yml`);
      }
      const config = YAML.parse(ctext);
      const targets = (config.scrape_configs ?? []).flatMap((j) => (j.static_configs ?? []).flatMap((s) => s.targets ?? []));
      if (!targets.includes(`musc-server:${metricsPort}`)) {
        errors.push(`prometheus: no scrape target musc-server:${metricsPort} (has ${targets.join(", ")})`);
      }
      const job = (config.scrape_configs ?? []).find((j) => (j.static_configs ?? []).some((s) => (s.targets ?? []).includes(`musc-server:${metricsPort}`)));
      if (job && job.job_name !== "musc-server") errors.push(`prometheus: the server's job is '${job.job_name}', alerts select job="musc-server"`);
      for (const rf of config.rule_files ?? []) {
        const inContainer = path.posix.resolve(path.posix.dirname(configPath), rf);
        const [, host] = hostPathOf(mountsOf("prometheus"), inContainer);
        if (!host || readText(host) === null) errors.push(`prometheus: rule file ${rf} (${inContainer}) is not mounted`);
      }
    }
  }

  // ---- grafana -------------------------------------------------------------------------------
  const graf = services.grafana;
  if (graf) {
    const mounts = mountsOf("grafana");
    const [prov, provHost] = hostPathOf(mounts, "/etc/grafana/provisioning");
    if (!prov || !isDir(provHost)) errors.push("grafana: no provisioning folder mounted at /etc/grafana/provisioning");
    else {
      const dsFiles = listDir(path.join(provHost, "datasources")).filter((f) => /\.ya?ml$/.test(f));
      const dbFiles = listDir(path.join(provHost, "dashboards")).filter((f) => /\.ya?ml$/.test(f));
      if (dsFiles.length === 0) errors.push("grafana: no datasource provisioning file");
      if (dbFiles.length === 0) errors.push("grafana: no dashboard provisioning file");
      const dashboardUids = new Set();
      for (const f of dbFiles) {
        for (const p of YAML.parse(readText(path.join(provHost, "dashboards", f)))?.providers ?? []) {
          const dir = p.options?.path;
          const [, host] = dir ? hostPathOf(mounts, dir) : [null, null];
          const jsons = host ? listDir(host).filter((x) => x.endsWith(".json")) : [];
          if (jsons.length === 0) errors.push(`grafana: provider '${p.name}' path ${dir} holds no mounted dashboard JSON`);
          for (const j of jsons) {
            const dash = JSON.parse(readText(path.join(host, j)));
            const ds = (dash.templating?.list ?? []).find((v) => v.type === "datasource");
            if (ds) dashboardUids.add(ds.current?.value);
          }
        }
      }
      for (const f of dsFiles) {
        for (const ds of YAML.parse(readText(path.join(provHost, "datasources", f)))?.datasources ?? []) {
          if (ds.type !== "prometheus") continue;
          let url;
          try { url = new URL(ds.url); } catch { errors.push(`grafana: datasource URL '${ds.url}' is invalid`); continue; }
          if (!services[url.hostname]) errors.push(`grafana: datasource host '${url.hostname}' is no compose service`);
          if (url.port !== promPort) errors.push(`grafana: datasource port ${url.port} is not Prometheus' ${promPort}`);
          for (const uid of dashboardUids) {
            if (uid !== ds.uid) errors.push(`grafana: dashboard datasource default '${uid}' is not the provisioned uid '${ds.uid}'`);
          }
        }
      }
    }
    const home = graf.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    if (home) {
      const [, host] = hostPathOf(mounts, home);
      if (!host || readText(host) === null) errors.push(`grafana: home dashboard ${home} is not mounted`);
    }
  }
  return errors;
}

function main() {
  const compose = load("yaml").parse(readFileSync(path.join(repo, "docker-compose.yml"), "utf8"));
  const problems = checkCompose(compose);
  if (problems.length) {
    console.error(problems.map((p) => `FAIL docker-compose.yml: ${p}`).join("\n"));
    process.exit(1);
  }
  console.log(`docker-compose.yml: ${Object.keys(compose.services).join(", ")} consistent with the Dockerfile, Prometheus and Grafana files`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
