// The metrics musc-server exports on /metrics (--metrics_listen), with their labels: the contract
// the dashboard, the alert rules, the HPA and docs/DEPLOYMENT.md are checked against. Keep in
// step with server/server_metrics.cc.
export const METRICS = {
  musc_build_info: { type: "gauge", labels: ["version", "backbones", "libtorch_version", "threads"] },
  musc_sessions_created_total: { type: "counter", labels: ["product"] },
  musc_sessions_finished_total: { type: "counter", labels: ["product", "state"] },
  musc_sessions: { type: "gauge", labels: ["product", "state"] },
  musc_images_received_total: { type: "counter", labels: ["product"] },
  musc_images_rejected_total: { type: "counter", labels: ["product", "reason"] },
  musc_received_bytes_total: { type: "counter", labels: ["product"] },
  musc_queue_depth: { type: "gauge", labels: [] },
  musc_queue_capacity: { type: "gauge", labels: [] },
  musc_running_batches: { type: "gauge", labels: [] },
  musc_batch_images: { type: "histogram", labels: ["product"] },
  musc_seal_to_first_result_seconds: { type: "histogram", labels: ["product"] },
  musc_seal_to_last_result_seconds: { type: "histogram", labels: ["product"] },
  musc_stage_seconds: { type: "histogram", labels: ["product", "stage"] },
  musc_backbone_load_seconds: { type: "gauge", labels: ["backbone"] },
  musc_auth_failures_total: { type: "counter", labels: ["reason"] },
  musc_limit_refusals_total: { type: "counter", labels: ["limit"] },
  musc_spool_write_failures_total: { type: "counter", labels: ["reason"] },
  musc_recovered_sessions_total: { type: "counter", labels: ["state"] },
  musc_line_images_total: { type: "counter", labels: ["product"] },
  musc_line_latency_seconds: { type: "histogram", labels: ["product"] },
  musc_line_bank_images: { type: "gauge", labels: ["product"] },
  musc_decisions_total: { type: "counter", labels: ["product", "verdict"] },
  musc_decision_alarm: { type: "gauge", labels: ["product"] },
  process_resident_memory_bytes: { type: "gauge", labels: [] },
  process_virtual_memory_bytes: { type: "gauge", labels: [] },
  process_cpu_seconds_total: { type: "counter", labels: [] },
  process_start_time_seconds: { type: "gauge", labels: [] },
};

// Prometheus' own series that the rules and panels may use.
const PROMETHEUS_SERIES = new Set(["up"]);

/** The series names an exposition of METRICS contains (histograms: _bucket, _sum, _count). */
export function seriesNames() {
  const out = new Map();
  for (const [name, m] of Object.entries(METRICS)) {
    if (m.type === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) out.set(name + s, name);
    } else {
      out.set(name, name);
    }
  }
  return out;
}

/** Metric-like identifiers of a PromQL expression that are neither known series nor keywords. */
export function unknownSeries(expr) {
  const known = seriesNames();
  const names = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')       // label values
    .replace(/\{[^}]*\}/g, "{}")               // matchers
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .match(/\b(musc_\w+|process_\w+|up)\b/g) ?? [];
  return [...new Set(names)].filter((n) => !known.has(n) && !PROMETHEUS_SERIES.has(n));
}
