#!/usr/bin/env node
// Offline checks of the monitoring material against the server's metric contract
// (lib/metrics.mjs):
//   * deploy/grafana/dashboards/musc-serve.json: a Grafana dashboard of schemaVersion 36..41 with
//     the DS_PROMETHEUS datasource variable (default uid "prometheus") and the product variable;
//     unique panel ids, panels inside the 24-column grid and not overlapping; every query on
//     ${DS_PROMETHEUS}; every series an expression names exists; every rate over
//     $__rate_interval; product-labelled series filtered by $product; histogram_quantile over
//     buckets aggregated by le; the panels the issue asks for present;
//   * deploy/prometheus/musc-alerts.yml: every series its rules name exists;
//   * docs/DEPLOYMENT.md: names every metric, every panel and every alert.
// Whether the expressions parse and evaluate is checked elsewhere with promtool and a real
// Prometheus (dashboard_exprs.mjs prints them).
//
//   MUSC_DEPLOY_NODE_DIR=DIR node tests/deploy/monitoring_check.mjs
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "./lib/deps.mjs";
import { METRICS, seriesNames, unknownSeries } from "./lib/metrics.mjs";
import { allPanels, dashboardTargets } from "./dashboard_exprs.mjs";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

// What the dashboard must show, as the series its panels must query.
export const REQUIRED_SERIES = [
  "musc_images_received_total",        // throughput, images/s
  "musc_sessions_created_total",       // throughput, sessions/s
  "musc_stage_seconds_bucket",         // latency percentiles by stage
  "musc_seal_to_first_result_seconds_bucket",
  "musc_seal_to_last_result_seconds_bucket",
  "musc_queue_depth",                  // queue depth vs capacity
  "musc_queue_capacity",
  "musc_running_batches",
  "musc_images_rejected_total",        // errors by reason
  "musc_sessions_finished_total",      // failed sessions
  "musc_sessions",                     // sessions by state
  "process_resident_memory_bytes",     // memory
  "musc_build_info",                   // build info
];

const seriesIn = (expr) => (expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').match(/\b(musc_\w+|process_\w+)\b/g) ?? []);

/** Problems of a dashboard object. */
export function checkDashboard(dash) {
  const errors = [];
  const err = (m) => errors.push(`dashboard: ${m}`);
  if (!(dash.schemaVersion >= 36 && dash.schemaVersion <= 41)) err(`schemaVersion ${dash.schemaVersion} outside 36..41`);
  if (!dash.uid || !dash.title) err("uid and title are required");

  const vars = new Map((dash.templating?.list ?? []).map((v) => [v.name, v]));
  const ds = vars.get("DS_PROMETHEUS");
  if (ds?.type !== "datasource" || ds.query !== "prometheus") err("variable DS_PROMETHEUS must be a prometheus datasource variable");
  else if (ds.current?.value !== "prometheus") err("DS_PROMETHEUS must default to the provisioned uid 'prometheus'");
  const product = vars.get("product");
  const pq = typeof product?.query === "object" ? product.query.query : product?.query;
  if (product?.type !== "query" || pq !== "label_values(musc_sessions_created_total, product)") {
    err("variable product must query label_values(musc_sessions_created_total, product)");
  } else if (!product.includeAll || product.allValue !== ".*" || !product.multi) {
    err("variable product must allow All (allValue .*) and several values");
  }

  const panels = allPanels(dash);
  const ids = panels.map((p) => p.id);
  if (new Set(ids).size !== ids.length || ids.some((id) => typeof id !== "number")) err("panel ids must be unique numbers");
  const boxes = [];
  for (const p of panels) {
    const g = p.gridPos ?? {};
    if (!(g.w > 0 && g.h > 0 && g.x >= 0 && g.y >= 0 && g.x + g.w <= 24)) err(`panel '${p.title}': gridPos outside the 24-column grid`);
    for (const b of boxes) {
      if (g.x < b.x + b.w && b.x < g.x + g.w && g.y < b.y + b.h && b.y < g.y + g.h) err(`panels '${p.title}' and '${b.title}' overlap`);
    }
    boxes.push({ ...g, title: p.title });
    if (p.type === "row") continue;
    if (!p.title) err(`panel ${p.id} has no title`);
    if (p.datasource?.uid !== "${DS_PROMETHEUS}") err(`panel '${p.title}': datasource must be \${DS_PROMETHEUS}`);
    if (!(p.targets?.length > 0)) err(`panel '${p.title}' has no query`);
    const refIds = (p.targets ?? []).map((t) => t.refId);
    if (new Set(refIds).size !== refIds.length) err(`panel '${p.title}': duplicate refIds`);
  }

  const used = new Set();
  for (const { panel, target, expr } of dashboardTargets(dash)) {
    const where = `panel '${panel.title}' ${target.refId}`;
    if (target.datasource && target.datasource.uid !== "${DS_PROMETHEUS}") err(`${where}: target datasource must be \${DS_PROMETHEUS}`);
    for (const n of unknownSeries(expr)) err(`${where}: unknown series ${n}`);
    for (const n of seriesIn(expr)) used.add(n);
    for (const m of expr.matchAll(/\b(rate|irate|increase)\s*\(([^[]*)\[([^\]]+)\]/g)) {
      if (m[3] !== "$__rate_interval") err(`${where}: ${m[1]}(...[${m[3]}]) must use $__rate_interval`);
    }
    // Series with a product label are filtered by the product variable.
    const names = seriesNames();
    for (const m of expr.matchAll(/\b(musc_\w+)\s*(\{[^}]*\})?/g)) {
      const family = names.get(m[1]);
      if (family && METRICS[family].labels.includes("product") && !(m[2] ?? "").includes('product=~"$product"')) {
        err(`${where}: ${m[1]} must be filtered with product=~"$product"`);
      }
    }
    for (const m of expr.matchAll(/histogram_quantile\s*\(\s*([\d.]+)\s*,([\s\S]*)/g)) {
      const q = Number(m[1]);
      if (!(q > 0 && q < 1)) err(`${where}: quantile ${m[1]} outside (0, 1)`);
      if (!/_bucket\b/.test(m[2]) || !/\bby\s*\([^)]*\ble\b[^)]*\)/.test(m[2])) {
        err(`${where}: histogram_quantile needs buckets aggregated by (le, ...)`);
      }
    }
  }
  for (const s of REQUIRED_SERIES) if (!used.has(s)) err(`no panel shows ${s}`);
  return errors;
}

/** Series names of the alert rules that the server does not export. */
export function checkAlerts(rulesDoc) {
  const errors = [];
  for (const g of rulesDoc.groups ?? []) {
    for (const r of g.rules ?? []) {
      for (const n of unknownSeries(r.expr ?? "")) errors.push(`alert ${r.alert ?? r.record}: unknown series ${n}`);
    }
  }
  return errors;
}

/** docs/DEPLOYMENT.md must name every metric, panel and alert. */
export function checkDocs(doc, dash, rulesDoc) {
  const errors = [];
  for (const m of Object.keys(METRICS)) if (!doc.includes(m)) errors.push(`docs/DEPLOYMENT.md does not list the metric ${m}`);
  for (const p of allPanels(dash)) {
    if (p.type !== "row" && !doc.includes(p.title)) errors.push(`docs/DEPLOYMENT.md does not describe the panel '${p.title}'`);
  }
  for (const g of rulesDoc.groups ?? []) {
    for (const r of g.rules ?? []) if (r.alert && !doc.includes(r.alert)) errors.push(`docs/DEPLOYMENT.md does not describe the alert ${r.alert}`);
  }
  return errors;
}

function main() {
  const YAML = load("yaml");
  const dash = JSON.parse(readFileSync(path.join(repo, "deploy/grafana/dashboards/musc-serve.json"), "utf8"));
  const rules = YAML.parse(readFileSync(path.join(repo, "deploy/prometheus/musc-alerts.yml"), "utf8"));
  const docPath = path.join(repo, "docs/DEPLOYMENT.md");
  const problems = [...checkDashboard(dash), ...checkAlerts(rules)];
  if (!existsSync(docPath)) problems.push("docs/DEPLOYMENT.md missing");
  else problems.push(...checkDocs(readFileSync(docPath, "utf8"), dash, rules));
  if (problems.length) {
    console.error(problems.map((p) => `FAIL ${p}`).join("\n"));
    process.exit(1);
  }
  console.log(`dashboard (${dashboardTargets(dash).length} queries), alert rules and docs agree with the metric contract`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
