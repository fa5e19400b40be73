// The server's Prometheus metrics: counters and histograms updated as work happens, plus gauges
// read at scrape time (queue, sessions by state, process memory). Names follow Prometheus and
// Triton conventions (`musc_` prefix, `_total` counters, `_seconds` durations); the `product`
// label only takes names from the products file, so its cardinality is bounded by configuration.
//
// Exported names are listed in docs/DEPLOYMENT.md; the Grafana dashboard in deploy/grafana/ is
// checked against a live scrape in tests/server/prometheus_test.cc.
#ifndef MUSC_SERVER_SERVER_METRICS_H_
#define MUSC_SERVER_SERVER_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "musc/v1/musc_service.pb.h"
#include "server/results/decision_policy.h"

namespace musc {

// What the scrape-time gauges read; supplied by whoever owns the scheduler and sessions.
struct LiveGauges {
  size_t queue_depth = 0;
  size_t queue_capacity = 0;
  int running_batches = 0;
  // (product, state) → sessions currently held in that state.
  std::map<std::pair<std::string, v1::SessionState>, int> sessions;
};

struct BuildInfo {
  std::string version;
  std::string backbones;  // The distinct backbone models loaded, comma-separated.
  std::string libtorch_version;
  int threads = 0;  // Intra-op threads per batch.
};

class ServerMetrics {
 public:
  ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  void SetBuildInfo(const BuildInfo& info);
  void SetBackboneLoadSeconds(const std::string& backbone, double seconds);
  // Read at every scrape; must be cheap and thread-safe. Before it is set, the gauges read 0.
  void SetLiveSource(std::function<LiveGauges()> source);

  void SessionCreated(const std::string& product);
  // Counts a session reaching DONE, FAILED or CANCELLED (expiry counts as cancelled).
  void SessionFinished(const std::string& product, v1::SessionState final_state);
  // Every image that arrived completely, accepted or not (`rejected` is a subset).
  void ImageReceived(const std::string& product, int64_t encoded_bytes);
  void ImageRejected(const std::string& product, absl::StatusCode code);
  // Per-image stages.
  void ImageDecoded(const std::string& product, double seconds);
  void MapEncoded(const std::string& product, double seconds);
  // Per-batch stages, from the engine's timings, and the batch size.
  void BatchScored(const std::string& product, size_t images, const v1::StageTimings& timings);
  // Line mode: one image answered, `latency_seconds` after it arrived.
  void LineImageScored(const std::string& product, double latency_seconds,
                       const v1::LineState& state, const Decision& decision);
  void FirstResultServed(const std::string& product, double seconds_since_seal);
  void LastResultServed(const std::string& product, double seconds_since_seal);
  // A call refused for its credentials: reason "unauthenticated" or "permission_denied".
  void AuthFailure(const std::string& reason);
  // A request refused with RESOURCE_EXHAUSTED by a configured limit: "sessions_per_product",
  // "max_sessions", "images_per_session", "session_bytes" or "concurrent_streams".
  void LimitRefused(const std::string& limit);
  // A spool write that failed (the image or state change was refused or is not durable):
  // reason "disk_full" or "unwritable".
  void SpoolWriteFailed(const std::string& reason);
  // A session read back from the spool at start, by the state it came back in.
  void SessionRecovered(v1::SessionState state);

  // Everything, in the Prometheus text exposition format (what /metrics serves).
  std::string SerializeText() const;

  // For prometheus::Exposer::RegisterCollectable: the registry and the scrape-time collector.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  std::shared_ptr<prometheus::Collectable> live_collector() const { return live_; }

  // The label value for a gRPC/absl status code: "invalid_argument", "resource_exhausted", ...
  static std::string ReasonLabel(absl::StatusCode code);

 private:
  void ObserveStage(const std::string& product, const char* stage, double seconds);

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> live_;
  prometheus::Family<prometheus::Gauge>& build_info_;
  prometheus::Family<prometheus::Gauge>& backbone_load_seconds_;
  prometheus::Family<prometheus::Counter>& sessions_created_;
  prometheus::Family<prometheus::Counter>& sessions_finished_;
  prometheus::Family<prometheus::Counter>& images_received_;
  prometheus::Family<prometheus::Counter>& images_rejected_;
  prometheus::Family<prometheus::Counter>& received_bytes_;
  prometheus::Family<prometheus::Histogram>& batch_images_;
  prometheus::Family<prometheus::Histogram>& stage_seconds_;
  prometheus::Family<prometheus::Histogram>& seal_to_first_result_;
  prometheus::Family<prometheus::Histogram>& seal_to_last_result_;
  prometheus::Family<prometheus::Counter>& line_images_;
  prometheus::Family<prometheus::Histogram>& line_latency_;
  prometheus::Family<prometheus::Gauge>& line_bank_images_;
  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Family<prometheus::Gauge>& decision_alarm_;
  prometheus::Family<prometheus::Counter>& auth_failures_;
  prometheus::Family<prometheus::Counter>& limit_refusals_;
  prometheus::Family<prometheus::Counter>& spool_write_failures_;
  prometheus::Family<prometheus::Counter>& recovered_sessions_;
};

}  // namespace musc

#endif  // MUSC_SERVER_SERVER_METRICS_H_
