// musc-server: the MuSc batch-session gRPC service.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/musc_engine.h"
#include "server/engine_pool.h"
#include "server/log.h"
#include "server/musc_service.h"
#include "server/scheduler.h"
#include "server/server_metrics.h"
#include "server/session_manager.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "gRPC listen address host:port (port 0 picks a free port; see --port_file)");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written to this file once the server listens (health "
          "answers NOT_SERVING until the backbones are loaded)");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:9464",
          "Prometheus /metrics HTTP address host:port, separate from gRPC so it can be bound to "
          "another interface (port 0 picks a free port; empty disables metrics)");
ABSL_FLAG(std::string, metrics_port_file, "",
          "If set, the bound metrics port is written to this file once it listens");
ABSL_FLAG(std::string, products, "", "Products file (YAML; see docs/PRODUCTS.md). Required.");
ABSL_FLAG(int, workers, 1, "Batches scored concurrently (each uses --threads intra-op threads)");
ABSL_FLAG(int, queue_capacity, 16, "Sealed batches that may wait; beyond: RESOURCE_EXHAUSTED");
ABSL_FLAG(int, threads, 0, "Intra-op threads for LibTorch/OpenBLAS (0 = all cores)");
ABSL_FLAG(int, backbone_batch, 8, "Images per backbone forward pass");
ABSL_FLAG(int64_t, max_image_bytes, int64_t{64} << 20, "Largest encoded image accepted");
ABSL_FLAG(int64_t, max_image_pixels, int64_t{64} << 20,
          "Largest image accepted, width×height, checked from the header before decoding");
ABSL_FLAG(int64_t, max_session_bytes, int64_t{4} << 30, "Encoded bytes one session may hold");
ABSL_FLAG(int, max_sessions, 10000, "Sessions held at once, in any state");
ABSL_FLAG(double, session_idle_ttl, 600, "Seconds an OPEN session may stay idle before expiry");
ABSL_FLAG(double, result_retention, 3600, "Seconds finished sessions stay readable");
ABSL_FLAG(double, shutdown_grace, 60,
          "On SIGTERM/SIGINT: seconds to finish queued and running batches before exiting");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error");

namespace musc {
namespace {

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// Written to a temporary name and renamed, so a reader never sees a partial number.
void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << port << "\n";
  std::rename(tmp.c_str(), path.c_str());
}

// Serves ServerMetrics on its own HTTP port. Null when disabled by an empty address.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsEndpoint(
    const std::string& address, const ServerMetrics& metrics, int* port) {
  *port = 0;
  if (address.empty()) return nullptr;
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // Two threads: Prometheus scrapes rarely, and each thread holds a 1 MiB stack.
    exposer = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {  // civetweb reports bind failures by throwing.
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  exposer->RegisterCollectable(metrics.registry());
  exposer->RegisterCollectable(metrics.live_collector());
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (!ports.empty()) *port = ports.front();
  return exposer;
}

int Run() {
  if (!SetLogLevel(absl::GetFlag(FLAGS_log_level))) {
    std::fprintf(stderr, "musc-server: --log_level must be debug, info, warning or error\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_products).empty()) {
    std::fprintf(stderr, "musc-server: --products is required (see --help)\n");
    return 2;
  }
  // Termination signals are taken by a dedicated thread (sigwait), so they must be blocked
  // before any other thread starts and inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::vector<ProductConfig>> products =
      LoadProductsFile(absl::GetFlag(FLAGS_products));
  if (!products.ok()) {
    LogError(products.status().ToString());
    return 1;
  }
  DecodeLimits limits;
  limits.max_bytes = absl::GetFlag(FLAGS_max_image_bytes);
  limits.max_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  ConfigureDecoderLimits(limits);

  // Listen first, answering health checks with NOT_SERVING (and calls with UNAVAILABLE) while the
  // backbones load: orchestrators see a live process that is not ready yet.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  MuscServiceImpl service(limits);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  // Images arrive in chunks; a message holds at most one chunk plus framing.
  builder.SetMaxReceiveMessageSize(16 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    LogError(absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_listen)));
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  LogInfo(absl::StrCat("listening on port ", port, " (NOT_SERVING while loading)"));
  WritePortFile(absl::GetFlag(FLAGS_port_file), port);

  // Metrics are up while the backbones load, so a slow start is visible on dashboards.
  ServerMetrics metrics;
  int metrics_port = 0;
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
      StartMetricsEndpoint(absl::GetFlag(FLAGS_metrics_listen), metrics, &metrics_port);
  if (!exposer.ok()) {
    LogError(exposer.status().ToString());
    server->Shutdown();
    return 1;
  }
  if (*exposer != nullptr) {
    LogInfo(absl::StrCat("metrics on port ", metrics_port, " (/metrics)"));
    WritePortFile(absl::GetFlag(FLAGS_metrics_port_file), metrics_port);
  }

  EnginePoolOptions pool_options;
  pool_options.intra_op_threads = absl::GetFlag(FLAGS_threads);
  pool_options.backbone_batch_size = absl::GetFlag(FLAGS_backbone_batch);
  const auto load_start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<EnginePool>> engines = EnginePool::Load(*products, pool_options);
  if (!engines.ok()) {
    LogError(engines.status().ToString());
    server->Shutdown();
    return 1;
  }
  LogInfo(absl::StrCat(
      "loaded ", products->size(), " product(s) in ",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count(), " s"));

  SchedulerOptions scheduler_options;
  scheduler_options.workers = absl::GetFlag(FLAGS_workers);
  scheduler_options.queue_capacity = static_cast<size_t>(absl::GetFlag(FLAGS_queue_capacity));
  Scheduler scheduler(engines->get(), scheduler_options, &metrics);

  SessionManagerOptions session_options;
  session_options.idle_ttl = Millis(absl::GetFlag(FLAGS_session_idle_ttl));
  session_options.retention = Millis(absl::GetFlag(FLAGS_result_retention));
  session_options.max_session_bytes = absl::GetFlag(FLAGS_max_session_bytes);
  session_options.max_sessions = static_cast<size_t>(absl::GetFlag(FLAGS_max_sessions));
  SessionManager sessions(*products, &scheduler, session_options, &metrics);

  std::set<std::string> backbones;
  for (const auto& [model, seconds] : (*engines)->load_seconds()) {
    metrics.SetBackboneLoadSeconds(model, seconds);
    backbones.insert(model);
  }
  BuildInfo build;
  build.version = MUSC_VERSION;
  build.backbones = absl::StrJoin(backbones, ",");
  build.libtorch_version = LibTorchVersion();
  build.threads = absl::GetFlag(FLAGS_threads) > 0
                      ? absl::GetFlag(FLAGS_threads)
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  metrics.SetBuildInfo(build);
  metrics.SetLiveSource([&scheduler, &sessions] {
    LiveGauges live;
    live.queue_depth = scheduler.queued();
    live.queue_capacity = scheduler.capacity();
    live.running_batches = scheduler.running();
    live.sessions = sessions.CountByState();
    return live;
  });

  service.Activate(&sessions);
  health->SetServingStatus(true);
  LogInfo(absl::StrCat("SERVING on port ", port));

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  LogInfo(absl::StrCat("received signal ", signal_number, "; shutting down gracefully"));
  health->SetServingStatus(false);
  sessions.StopAccepting();
  const int abandoned = scheduler.Drain(Millis(absl::GetFlag(FLAGS_shutdown_grace)));
  if (abandoned > 0) LogWarning(absl::StrCat(abandoned, " queued batch(es) were not scored"));
  // Give open result streams a moment to deliver what has just finished, then cut the rest.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // The scheduler and sessions are destroyed before the metrics endpoint: stop reading them.
  metrics.SetLiveSource(nullptr);
  LogInfo("stopped");
  return 0;
}

}  // namespace
}  // namespace musc

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "musc-server --products FILE [--listen HOST:PORT] [flags]\n"
      "Zero-shot anomaly detection (MuSc) over per-product batch sessions, served over gRPC.");
  // --help lists the flags defined in this file (absl's default looks for a file named like the
  // binary).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  return musc::Run();
}
