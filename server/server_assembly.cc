#include "server/server_assembly.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "core/musc_engine.h"
#include "server/batch/scheduler.h"
#include "server/batch/session_manager.h"
#include "server/engine_pool.h"
#include "server/line/line_runner.h"
#include "server/log.h"
#include "server/rpc/auth.h"
#include "server/rpc/musc_service.h"
#include "server/server_metrics.h"
#include "server/store/recovery.h"
#include "server/store/spool.h"

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

// `flag` names the option in messages, as the operator typed it.
absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("--", flag, ": cannot read ", path));
  }
  if (text->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is not PEM"));
  }
  return text;
}

// Insecure credentials, or TLS from tls_cert/tls_key (and mutual TLS with tls_client_ca).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const SecurityOptions& security) {
  if (security.tls_cert.empty() != security.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (security.tls_cert.empty()) {
    if (!security.tls_client_ca.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  MUSC_ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile("tls_cert", security.tls_cert));
  MUSC_ASSIGN_OR_RETURN(pair.private_key, ReadPemFile("tls_key", security.tls_key));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (security.tls_client_ca.empty()) {
    options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  } else {
    MUSC_ASSIGN_OR_RETURN(options.pem_root_certs,
                          ReadPemFile("tls_client_ca", security.tls_client_ca));
    // Verified against the CA, including the validity period: no, expired or foreign
    // certificates fail the handshake before any call is made.
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// Whether host:port names a loopback interface only (where plaintext without tokens is fine).
bool IsLoopbackAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

// Off network interfaces other than loopback, plaintext or token-less serving is worth a warning.
void WarnIfExposed(const std::string& address, bool tls, bool tokens) {
  if (IsLoopbackAddress(address) || (tls && tokens)) return;
  LogWarning(absl::StrCat("listening on ", address, " without ",
                          !tls && !tokens ? "TLS or tokens"
                          : !tls          ? "TLS"
                                          : "tokens",
                          ": anyone who can reach this port can ",
                          !tokens ? "use every product" : "read the traffic",
                          "; fine only on a trusted network (docs/SECURITY.md)"));
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

// What build_info reports: the version, the loaded backbones, LibTorch, the intra-op threads.
void PublishBuildInfo(const EnginePool& engines, int threads, ServerMetrics& metrics) {
  std::set<std::string> backbones;
  for (const auto& [model, seconds] : engines.load_seconds()) {
    metrics.SetBackboneLoadSeconds(model, seconds);
    backbones.insert(model);
  }
  BuildInfo build;
  build.version = MUSC_VERSION;
  build.backbones = absl::StrJoin(backbones, ",");
  build.libtorch_version = LibTorchVersion();
  build.threads =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  metrics.SetBuildInfo(build);
}

}  // namespace

int RunServer(const ServerConfig& config) {
  // Termination signals are taken by a dedicated thread (sigwait), so they must be blocked
  // before any other thread starts and inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Past a file size limit (RLIMIT_FSIZE) a write fails with EFBIG, which the spool reports like
  // a full disk, instead of the signal killing the server.
  signal(SIGXFSZ, SIG_IGN);

  absl::StatusOr<std::vector<ProductConfig>> products = LoadProductsFile(config.products_file);
  if (!products.ok()) {
    LogError(products.status().ToString());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentialsFor(config.security);
  if (!credentials.ok()) {
    LogError(credentials.status().ToString());
    return 2;
  }
  std::unique_ptr<Authenticator> authenticator;
  if (!config.security.auth_tokens.empty()) {
    std::vector<std::string> names;
    for (const ProductConfig& p : *products) names.push_back(p.name);
    absl::StatusOr<std::unique_ptr<Authenticator>> loaded =
        Authenticator::LoadFile(config.security.auth_tokens, names);
    if (!loaded.ok()) {
      LogError(loaded.status().ToString());
      return 1;
    }
    authenticator = *std::move(loaded);
    LogInfo(absl::StrCat("authentication on: ", authenticator->size(), " token(s)"));
  }
  const bool tls = !config.security.tls_cert.empty();
  WarnIfExposed(config.grpc.address, tls, authenticator != nullptr);
  const int64_t max_message_bytes = config.grpc.max_message_bytes;
  if (max_message_bytes < 1024 || max_message_bytes > std::numeric_limits<int>::max()) {
    LogError("--max_message_bytes must be between 1024 and 2^31-1");
    return 2;
  }

  DecodeLimits limits;
  limits.max_bytes = config.limits.max_image_bytes;
  limits.max_pixels = config.limits.max_image_pixels;

  // Listen first, answering health checks with NOT_SERVING (and calls with UNAVAILABLE) while the
  // backbones load: orchestrators see a live process that is not ready yet.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ServiceGuards guards;
  guards.authenticator = authenticator.get();
  guards.max_concurrent_streams = config.limits.max_concurrent_streams;
  MuscServiceImpl service(limits, guards);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.grpc.address, *credentials, &port);
  builder.RegisterService(&service);
  // Images arrive in chunks; a message holds at most one chunk plus framing.
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    LogError(absl::StrCat("cannot listen on ", config.grpc.address));
    return 1;
  }
  // From here on, a failed start stops the listening server before exiting.
  auto fail_start = [&server](const absl::Status& status) {
    LogError(status.ToString());
    server->Shutdown();
    return 1;
  };
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  LogInfo(absl::StrCat("listening on port ", port,
                       !tls                                    ? " (plaintext"
                       : config.security.tls_client_ca.empty() ? " (TLS"
                                                               : " (mutual TLS",
                       ", NOT_SERVING while loading)"));
  WritePortFile(config.grpc.port_file, port);

  // Metrics are up while the backbones load, so a slow start is visible on dashboards.
  ServerMetrics metrics;
  int metrics_port = 0;
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
      StartMetricsEndpoint(config.metrics.address, metrics, &metrics_port);
  if (!exposer.ok()) return fail_start(exposer.status());
  if (*exposer != nullptr) {
    LogInfo(absl::StrCat("metrics on port ", metrics_port, " (/metrics)"));
    WritePortFile(config.metrics.port_file, metrics_port);
  }

  // Before the backbones load: a spool that cannot be written stops the start at once.
  std::unique_ptr<Spool> spool;
  if (!config.spool_dir.empty()) {
    absl::StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(config.spool_dir, limits, &metrics);
    if (!opened.ok()) return fail_start(opened.status());
    spool = *std::move(opened);
  }

  EnginePoolOptions pool_options;
  pool_options.intra_op_threads = config.scoring.threads;
  pool_options.backbone_batch_size = config.scoring.backbone_batch;
  pool_options.device = config.scoring.device;
  const auto load_start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<EnginePool>> engines = EnginePool::Load(*products, pool_options);
  if (!engines.ok()) return fail_start(engines.status());
  LogInfo(absl::StrCat(
      "loaded ", products->size(), " product(s) in ",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count(), " s"));

  SchedulerOptions scheduler_options;
  scheduler_options.workers = config.scoring.workers;
  scheduler_options.queue_capacity = static_cast<size_t>(config.scoring.queue_capacity);
  Scheduler scheduler(engines->get(), scheduler_options, &metrics);

  SessionManagerOptions session_options;
  session_options.idle_ttl = Millis(config.lifetimes.session_idle_ttl);
  session_options.retention = Millis(config.lifetimes.result_retention);
  session_options.max_session_bytes = config.limits.max_session_bytes;
  session_options.max_sessions = static_cast<size_t>(config.limits.max_sessions);
  session_options.max_sessions_per_product =
      static_cast<size_t>(std::max(0, config.limits.max_sessions_per_product));
  session_options.spool = spool.get();
  SessionManager sessions(*products, &scheduler, session_options, &metrics);
  // Before SERVING: a client that reconnects finds its sessions as it left them.
  if (spool != nullptr) {
    if (absl::Status s = RecoverSessions(*spool, sessions, scheduler, &metrics); !s.ok()) {
      return fail_start(s);
    }
  }

  PublishBuildInfo(**engines, config.scoring.threads, metrics);
  metrics.SetLiveSource([&scheduler, &sessions] {
    LiveGauges live;
    live.queue_depth = scheduler.queued();
    live.queue_capacity = scheduler.capacity();
    live.running_batches = scheduler.running();
    live.sessions = sessions.CountByState();
    return live;
  });

  // Line-mode products each get a runner (their own bank and scoring thread), its bank persisted
  // in <spool_dir>/lines/<product> when there is a spool.
  LineRunners lines;
  for (const ProductConfig& product : sessions.products()) {
    if (!product.line) continue;
    absl::StatusOr<std::unique_ptr<LineRunner>> runner = LineRunner::Create(
        &product, (*engines)->ForProduct(product.name), &metrics,
        config.spool_dir.empty() ? "" : absl::StrCat(config.spool_dir, "/lines/", product.name),
        limits);
    if (!runner.ok()) {
      LogError(absl::StrCat("product '", product.name, "': ", runner.status().ToString()));
      server->Shutdown();
      return 1;
    }
    lines[product.name] = *std::move(runner);
  }

  service.Activate(&sessions, &lines);
  health->SetServingStatus(true);
  LogInfo(absl::StrCat("SERVING on port ", port));

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  LogInfo(absl::StrCat("received signal ", signal_number, "; shutting down gracefully"));
  health->SetServingStatus(false);
  sessions.StopAccepting();
  const int abandoned = scheduler.Drain(Millis(config.lifetimes.shutdown_grace));
  if (abandoned > 0) LogWarning(absl::StrCat(abandoned, " queued batch(es) were not scored"));
  // Line images still queued are answered UNAVAILABLE (they never joined a bank: safe to resend).
  // Before the gRPC server shuts down, so no answer reaches a call that is already gone.
  lines.clear();
  // Give open result streams a moment to deliver what has just finished, then cut the rest.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // The scheduler and sessions are destroyed before the metrics endpoint: stop reading them.
  metrics.SetLiveSource(nullptr);
  LogInfo("stopped");
  return 0;
}

}  // namespace musc
