#include "server/server_metrics.h"

#include <dirent.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"

namespace musc {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Seconds, 1 ms … ~17 min: decode of a small PNG up to a ViT-L batch of hundreds of images.
prometheus::Histogram::BucketBoundaries SecondsBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
          2.5,   5,      10,    25,   50,    100,  250, 500,  1000};
}

prometheus::Histogram::BucketBoundaries BatchSizeBuckets() {
  return {2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

MetricFamily GaugeFamily(std::string name, std::string help) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = MetricType::Gauge;
  return f;
}

ClientMetric GaugeValue(double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  return m;
}

// The process_* metrics every Prometheus client library exports, read from /proc.
struct ProcessStats {
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double cpu_seconds = 0;
  double start_time_seconds = 0;
  double open_fds = 0;
};

ProcessStats ReadProcessStats() {
  ProcessStats out;
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  {
    std::ifstream statm("/proc/self/statm");
    double size_pages = 0, resident_pages = 0;
    if (statm >> size_pages >> resident_pages) {
      out.virtual_bytes = size_pages * page;
      out.resident_bytes = resident_pages * page;
    }
  }
  {
    // Fields after the command name (which may hold spaces) are read past its closing ')'.
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    const size_t close = stat.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(stat.substr(close + 2));
      std::vector<std::string> f;
      for (std::string token; fields >> token;) f.push_back(token);
      // f[0] is field 3 (state): utime = field 14, stime = 15, starttime = 22.
      if (f.size() > 19) {
        out.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
        double boot_time = 0;
        std::ifstream proc_stat("/proc/stat");
        for (std::string key; proc_stat >> key;) {
          if (key == "btime") {
            proc_stat >> boot_time;
            break;
          }
        }
        out.start_time_seconds = boot_time + std::stod(f[19]) / ticks;
      }
    }
  }
  if (DIR* dir = opendir("/proc/self/fd")) {
    int n = 0;
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++n;
    }
    closedir(dir);
    out.open_fds = n - 1;  // Not counting the descriptor of the listing itself.
  }
  return out;
}

}  // namespace

// Gauges whose values live elsewhere (scheduler, sessions, /proc): read when scraped, so they
// can never drift from the truth the way incrementally maintained gauges can.
class LiveCollector final : public prometheus::Collectable {
 public:
  void SetSource(std::function<LiveGauges()> source) {
    std::lock_guard<std::mutex> lock(mu_);
    source_ = std::move(source);
  }

  std::vector<MetricFamily> Collect() const override {
    LiveGauges live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (source_) live = source_();
    }
    std::vector<MetricFamily> out;
    MetricFamily queue = GaugeFamily("musc_queue_depth", "Sealed batches waiting to be scored.");
    queue.metric.push_back(GaugeValue(static_cast<double>(live.queue_depth)));
    out.push_back(std::move(queue));
    MetricFamily capacity = GaugeFamily(
        "musc_queue_capacity", "Sealed batches that may wait; beyond it seals are refused.");
    capacity.metric.push_back(GaugeValue(static_cast<double>(live.queue_capacity)));
    out.push_back(std::move(capacity));
    MetricFamily running = GaugeFamily("musc_running_batches", "Batches being scored now.");
    running.metric.push_back(GaugeValue(live.running_batches));
    out.push_back(std::move(running));
    MetricFamily sessions =
        GaugeFamily("musc_sessions", "Sessions held by the server, by product and state.");
    for (const auto& [key, count] : live.sessions) {
      sessions.metric.push_back(GaugeValue(
          count, {{"product", key.first}, {"state", Lower(v1::SessionState_Name(key.second))}}));
    }
    out.push_back(std::move(sessions));

    const ProcessStats process = ReadProcessStats();
    MetricFamily rss = GaugeFamily("process_resident_memory_bytes", "Resident memory size.");
    rss.metric.push_back(GaugeValue(process.resident_bytes));
    out.push_back(std::move(rss));
    MetricFamily vsz = GaugeFamily("process_virtual_memory_bytes", "Virtual memory size.");
    vsz.metric.push_back(GaugeValue(process.virtual_bytes));
    out.push_back(std::move(vsz));
    MetricFamily start = GaugeFamily("process_start_time_seconds",
                                     "Start time of the process since the Unix epoch.");
    start.metric.push_back(GaugeValue(process.start_time_seconds));
    out.push_back(std::move(start));
    MetricFamily fds = GaugeFamily("process_open_fds", "Open file descriptors.");
    fds.metric.push_back(GaugeValue(process.open_fds));
    out.push_back(std::move(fds));
    MetricFamily cpu;
    cpu.name = "process_cpu_seconds_total";
    cpu.help = "User and system CPU time spent.";
    cpu.type = MetricType::Counter;
    ClientMetric cpu_value;
    cpu_value.counter.value = process.cpu_seconds;
    cpu.metric.push_back(cpu_value);
    out.push_back(std::move(cpu));
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::function<LiveGauges()> source_;
};

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      live_(std::make_shared<LiveCollector>()),
      build_info_(prometheus::BuildGauge()
                      .Name("musc_build_info")
                      .Help("Always 1; the labels describe the build and configuration.")
                      .Register(*registry_)),
      backbone_load_seconds_(prometheus::BuildGauge()
                                 .Name("musc_backbone_load_seconds")
                                 .Help("Time to load and warm up each backbone at start.")
                                 .Register(*registry_)),
      sessions_created_(prometheus::BuildCounter()
                            .Name("musc_sessions_created_total")
                            .Help("Sessions created.")
                            .Register(*registry_)),
      sessions_finished_(prometheus::BuildCounter()
                             .Name("musc_sessions_finished_total")
                             .Help("Sessions that reached a final state (done, failed, "
                                   "cancelled; idle expiry counts as cancelled).")
                             .Register(*registry_)),
      images_received_(prometheus::BuildCounter()
                           .Name("musc_images_received_total")
                           .Help("Images that arrived completely, accepted or rejected.")
                           .Register(*registry_)),
      images_rejected_(prometheus::BuildCounter()
                           .Name("musc_images_rejected_total")
                           .Help("Images rejected, by reason (the gRPC status code).")
                           .Register(*registry_)),
      received_bytes_(prometheus::BuildCounter()
                          .Name("musc_received_bytes_total")
                          .Help("Encoded image bytes received.")
                          .Register(*registry_)),
      batch_images_(prometheus::BuildHistogram()
                        .Name("musc_batch_images")
                        .Help("Images per scored batch.")
                        .Register(*registry_)),
      stage_seconds_(prometheus::BuildHistogram()
                         .Name("musc_stage_seconds")
                         .Help("Time per stage: decode and encode per image; queue, preprocess, "
                               "backbone, lnamd, msm, maps and rscin per batch.")
                         .Register(*registry_)),
      seal_to_first_result_(prometheus::BuildHistogram()
                                .Name("musc_seal_to_first_result_seconds")
                                .Help("From a session's seal to its first result being served.")
                                .Register(*registry_)),
      seal_to_last_result_(prometheus::BuildHistogram()
                               .Name("musc_seal_to_last_result_seconds")
                               .Help("From a session's seal to its last result being served.")
                               .Register(*registry_)),
      line_images_(prometheus::BuildCounter()
                       .Name("musc_line_images_total")
                       .Help("Images scored in line mode.")
                       .Register(*registry_)),
      line_latency_(prometheus::BuildHistogram()
                        .Name("musc_line_latency_seconds")
                        .Help("Line mode: from an image's arrival to its answer (queue, warm-up, "
                              "backbone, scoring, map).")
                        .Register(*registry_)),
      line_bank_images_(prometheus::BuildGauge()
                            .Name("musc_line_bank_images")
                            .Help("Images in each line-mode product's bank.")
                            .Register(*registry_)),
      decisions_(prometheus::BuildCounter()
                     .Name("musc_decisions_total")
                     .Help("Line-mode verdicts: anomalous, normal, or undecided (threshold "
                           "not estimated yet).")
                     .Register(*registry_)),
      decision_alarm_(prometheus::BuildGauge()
                          .Name("musc_decision_alarm")
                          .Help("1 while the recent share of anomalous parts exceeds the "
                                "product's alarm fraction.")
                          .Register(*registry_)),
      auth_failures_(prometheus::BuildCounter()
                         .Name("musc_auth_failures_total")
                         .Help("Calls refused for their credentials, by reason "
                               "(unauthenticated, permission_denied).")
                         .Register(*registry_)),
      limit_refusals_(prometheus::BuildCounter()
                          .Name("musc_limit_refusals_total")
                          .Help("Requests refused with RESOURCE_EXHAUSTED by a configured limit, "
                                "by limit.")
                          .Register(*registry_)),
      spool_write_failures_(prometheus::BuildCounter()
                                .Name("musc_spool_write_failures_total")
                                .Help("Spool writes that failed, by reason (disk_full, "
                                      "unwritable); a failed image write refuses the image.")
                                .Register(*registry_)),
      recovered_sessions_(prometheus::BuildCounter()
                              .Name("musc_recovered_sessions_total")
                              .Help("Sessions read back from the spool at start, by the state "
                                    "they came back in.")
                              .Register(*registry_)) {
  // Exported at 0 from the start, so rate() and alerts see the first refusal as an increase.
  for (const char* reason : {"unauthenticated", "permission_denied"}) {
    auth_failures_.Add({{"reason", reason}});
  }
  for (const char* limit : {"sessions_per_product", "max_sessions", "images_per_session",
                            "session_bytes", "concurrent_streams"}) {
    limit_refusals_.Add({{"limit", limit}});
  }
  for (const char* reason : {"disk_full", "unwritable"}) {
    spool_write_failures_.Add({{"reason", reason}});
  }
}

void ServerMetrics::SetBuildInfo(const BuildInfo& info) {
  build_info_
      .Add({{"version", info.version},
            {"backbones", info.backbones},
            {"libtorch_version", info.libtorch_version},
            {"threads", std::to_string(info.threads)}})
      .Set(1);
}

void ServerMetrics::SetBackboneLoadSeconds(const std::string& backbone, double seconds) {
  backbone_load_seconds_.Add({{"backbone", backbone}}).Set(seconds);
}

void ServerMetrics::SetLiveSource(std::function<LiveGauges()> source) {
  static_cast<LiveCollector&>(*live_).SetSource(std::move(source));
}

void ServerMetrics::SessionCreated(const std::string& product) {
  sessions_created_.Add({{"product", product}}).Increment();
}

void ServerMetrics::SessionFinished(const std::string& product, v1::SessionState final_state) {
  sessions_finished_
      .Add({{"product", product}, {"state", Lower(v1::SessionState_Name(final_state))}})
      .Increment();
}

void ServerMetrics::ImageReceived(const std::string& product, int64_t encoded_bytes) {
  images_received_.Add({{"product", product}}).Increment();
  received_bytes_.Add({{"product", product}}).Increment(static_cast<double>(encoded_bytes));
}

void ServerMetrics::ImageRejected(const std::string& product, absl::StatusCode code) {
  images_rejected_.Add({{"product", product}, {"reason", ReasonLabel(code)}}).Increment();
}

void ServerMetrics::ObserveStage(const std::string& product, const char* stage, double seconds) {
  stage_seconds_.Add({{"product", product}, {"stage", stage}}, SecondsBuckets()).Observe(seconds);
}

void ServerMetrics::ImageDecoded(const std::string& product, double seconds) {
  ObserveStage(product, "decode", seconds);
}

void ServerMetrics::MapEncoded(const std::string& product, double seconds) {
  ObserveStage(product, "encode", seconds);
}

void ServerMetrics::BatchScored(const std::string& product, size_t images,
                                const v1::StageTimings& t) {
  batch_images_.Add({{"product", product}}, BatchSizeBuckets())
      .Observe(static_cast<double>(images));
  ObserveStage(product, "queue", t.queue_seconds());
  ObserveStage(product, "preprocess", t.preprocess_seconds());
  ObserveStage(product, "backbone", t.backbone_seconds());
  ObserveStage(product, "lnamd", t.lnamd_seconds());
  ObserveStage(product, "msm", t.msm_seconds());
  ObserveStage(product, "maps", t.maps_seconds());
  ObserveStage(product, "rscin", t.rscin_seconds());
}

void ServerMetrics::LineImageScored(const std::string& product, double latency_seconds,
                                    const v1::LineState& state, const Decision& decision) {
  line_images_.Add({{"product", product}}).Increment();
  line_latency_.Add({{"product", product}}, SecondsBuckets()).Observe(latency_seconds);
  line_bank_images_.Add({{"product", product}}).Set(state.bank_images());
  const char* verdict = !decision.decided       ? "undecided"
                        : decision.is_anomalous ? "anomalous"
                                                : "normal";
  decisions_.Add({{"product", product}, {"verdict", verdict}}).Increment();
  decision_alarm_.Add({{"product", product}}).Set(decision.alarm ? 1 : 0);
}

void ServerMetrics::FirstResultServed(const std::string& product, double seconds_since_seal) {
  seal_to_first_result_.Add({{"product", product}}, SecondsBuckets()).Observe(seconds_since_seal);
}

void ServerMetrics::LastResultServed(const std::string& product, double seconds_since_seal) {
  seal_to_last_result_.Add({{"product", product}}, SecondsBuckets()).Observe(seconds_since_seal);
}

void ServerMetrics::AuthFailure(const std::string& reason) {
  auth_failures_.Add({{"reason", reason}}).Increment();
}

void ServerMetrics::LimitRefused(const std::string& limit) {
  limit_refusals_.Add({{"limit", limit}}).Increment();
}

void ServerMetrics::SpoolWriteFailed(const std::string& reason) {
  spool_write_failures_.Add({{"reason", reason}}).Increment();
}

void ServerMetrics::SessionRecovered(v1::SessionState state) {
  recovered_sessions_.Add({{"state", Lower(v1::SessionState_Name(state))}}).Increment();
}

std::string ServerMetrics::SerializeText() const {
  std::vector<MetricFamily> families = registry_->Collect();
  for (MetricFamily& f : live_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

std::string ServerMetrics::ReasonLabel(absl::StatusCode code) {
  return Lower(absl::StatusCodeToString(code));
}

}  // namespace musc
