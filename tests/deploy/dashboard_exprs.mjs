#!/usr/bin/env node
// Prints every PromQL expression of a Grafana dashboard, one per line, with Grafana's variables
// substituted so that promtool or a real Prometheus can evaluate them:
//   $__rate_interval, $__interval, $__range (and ${...} forms) -> 1m
//   dashboard variables ($product, ${product}, ${product:regex}, [[product]]) -> .*
// Multi-line expressions are joined into one line. Panels inside collapsed rows count too.
//
//   node tests/deploy/dashboard_exprs.mjs [DASHBOARD.json]
//
// Default: deploy/grafana/dashboards/musc-serve.json. Exits 1 on an unknown $__ variable (a
// Grafana built-in this script does not know how to substitute) or a dashboard without any
// expression. No dependencies beyond Node.js.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const defaultDashboard = path.join(here, "..", "..", "deploy", "grafana", "dashboards",
  "musc-serve.json");

// Grafana's interval built-ins: a fixed, valid PromQL duration.
const BUILTIN_DURATIONS = new Set(["__rate_interval", "__interval", "__range"]);

/** Every panel, flattened (rows may nest their panels when collapsed). */
export function allPanels(dashboard) {
  const out = [];
  const visit = (panels) => {
    for (const p of panels ?? []) {
      out.push(p);
      visit(p.panels);
    }
  };
  visit(dashboard.panels);
  return out;
}

/** The {panel, target, expr} of every Prometheus query target with an expression. */
export function dashboardTargets(dashboard) {
  const out = [];
  for (const panel of allPanels(dashboard)) {
    for (const target of panel.targets ?? []) {
      if (typeof target.expr === "string" && target.expr.trim() !== "") {
        out.push({ panel, target, expr: target.expr });
      }
    }
  }
  return out;
}

/** expr with Grafana variables substituted and whitespace collapsed to one line. */
export function substitute(expr, variableNames) {
  const replaceVar = (name, whole) => {
    if (BUILTIN_DURATIONS.has(name)) return "1m";
    if (name.startsWith("__")) {
      throw new Error(`unknown Grafana built-in variable ${whole} in: ${expr}`);
    }
    if (variableNames && !variableNames.has(name)) {
      throw new Error(`${whole} is not a variable of the dashboard, in: ${expr}`);
    }
    return ".*";
  };
  return expr
    .replace(/\$\{(\w+)(?::[\w-]+)?\}/g, (whole, name) => replaceVar(name, whole))
    .replace(/\[\[(\w+)(?::[\w-]+)?\]\]/g, (whole, name) => replaceVar(name, whole))
    .replace(/\$(\w+)/g, (whole, name) => replaceVar(name, whole))
    .replace(/\s+/g, " ")
    .trim();
}

/** The substituted expressions of a dashboard, in panel order. */
export function dashboardExprs(dashboard) {
  const names = new Set((dashboard.templating?.list ?? []).map((v) => v.name));
  return dashboardTargets(dashboard).map(({ expr }) => substitute(expr, names));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2] ?? defaultDashboard;
  try {
    const exprs = dashboardExprs(JSON.parse(readFileSync(file, "utf8")));
    if (exprs.length === 0) throw new Error(`${file}: no PromQL expression found`);
    process.stdout.write(exprs.join("\n") + "\n");
  } catch (e) {
    console.error(`dashboard_exprs: ${e.message}`);
    process.exit(1);
  }
}
