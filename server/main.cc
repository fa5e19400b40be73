// musc-server: the MuSc batch-session gRPC service.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <sstream>
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
ABSL_FLAG(std::string, device, "cpu",
          "Where scoring runs: cpu, cuda or cuda:K (needs a build against a CUDA LibTorch)");
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
ABSL_FLAG(std::string, spool_dir, "",
          "Directory where sessions, images and results are persisted (docs/RELIABILITY.md): an "
          "image is acknowledged only once it is on disk, and a restart resumes every session "
          "(line-mode banks too, in <dir>/lines/<product>). Empty: in memory only");
ABSL_FLAG(std::string, tls_cert, "",
          "Server certificate chain (PEM). With --tls_key: gRPC is served over TLS only");
ABSL_FLAG(std::string, tls_key, "", "Private key of --tls_cert (PEM)");
ABSL_FLAG(std::string, tls_client_ca, "",
          "CA certificates (PEM) for mutual TLS: every client must present a certificate that "
          "chains to one of them (needs --tls_cert)");
ABSL_FLAG(std::string, auth_tokens, "",
          "Tokens file (YAML; docs/SECURITY.md): calls then need 'authorization: Bearer <token>'. "
          "Empty: no authentication, for trusted networks only");
ABSL_FLAG(int, max_sessions_per_product, 1000,
          "Unfinished (OPEN, SEALED, RUNNING) sessions one product may have; beyond: "
          "RESOURCE_EXHAUSTED (0 = no limit)");
ABSL_FLAG(int, max_concurrent_streams, 1000,
          "AddImages, StreamResults and Inspect streams open at once; beyond: RESOURCE_EXHAUSTED "
          "(0 = no limit)");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{16} << 20,
          "Largest gRPC message received (an image chunk plus framing); beyond: "
          "RESOURCE_EXHAUSTED from gRPC");

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

absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--", flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is not PEM"));
  }
  return text.str();
}

// Insecure credentials, or TLS from --tls_cert/--tls_key (and mutual TLS with --tls_client_ca).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromFlags() {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (cert.empty()) {
    if (!client_ca.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  absl::StatusOr<std::string> pem = ReadPemFile("tls_cert", cert);
  if (!pem.ok()) return pem.status();
  pair.cert_chain = *std::move(pem);
  pem = ReadPemFile("tls_key", key);
  if (!pem.ok()) return pem.status();
  pair.private_key = *std::move(pem);
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (client_ca.empty()) {
    options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  } else {
    pem = ReadPemFile("tls_client_ca", client_ca);
    if (!pem.ok()) return pem.status();
    options.pem_root_certs = *std::move(pem);
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
  // Past a file size limit (RLIMIT_FSIZE) a write fails with EFBIG, which the spool reports like
  // a full disk, instead of the signal killing the server.
  signal(SIGXFSZ, SIG_IGN);

  absl::StatusOr<std::vector<ProductConfig>> products =
      LoadProductsFile(absl::GetFlag(FLAGS_products));
  if (!products.ok()) {
    LogError(products.status().ToString());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentialsFromFlags();
  if (!credentials.ok()) {
    LogError(credentials.status().ToString());
    return 2;
  }
  std::unique_ptr<Authenticator> authenticator;
  if (!absl::GetFlag(FLAGS_auth_tokens).empty()) {
    std::vector<std::string> names;
    for (const ProductConfig& p : *products) names.push_back(p.name);
    absl::StatusOr<std::unique_ptr<Authenticator>> loaded =
        Authenticator::LoadFile(absl::GetFlag(FLAGS_auth_tokens), names);
    if (!loaded.ok()) {
      LogError(loaded.status().ToString());
      return 1;
    }
    authenticator = *std::move(loaded);
    LogInfo(absl::StrCat("authentication on: ", authenticator->size(), " token(s)"));
  }
  const bool tls = !absl::GetFlag(FLAGS_tls_cert).empty();
  if (!IsLoopbackAddress(absl::GetFlag(FLAGS_listen)) && (!tls || authenticator == nullptr)) {
    LogWarning(absl::StrCat("listening on ", absl::GetFlag(FLAGS_listen), " without ",
                            !tls && authenticator == nullptr ? "TLS or tokens"
                            : !tls                           ? "TLS"
                                                             : "tokens",
                            ": anyone who can reach this port can ",
                            authenticator == nullptr ? "use every product" : "read the traffic",
                            "; fine only on a trusted network (docs/SECURITY.md)"));
  }
  const int64_t max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message_bytes < 1024 || max_message_bytes > std::numeric_limits<int>::max()) {
    LogError("--max_message_bytes must be between 1024 and 2^31-1");
    return 2;
  }

  DecodeLimits limits;
  limits.max_bytes = absl::GetFlag(FLAGS_max_image_bytes);
  limits.max_pixels = absl::GetFlag(FLAGS_max_image_pixels);

  // Listen first, answering health checks with NOT_SERVING (and calls with UNAVAILABLE) while the
  // backbones load: orchestrators see a live process that is not ready yet.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ServiceGuards guards;
  guards.authenticator = authenticator.get();
  guards.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  MuscServiceImpl service(limits, guards);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), *credentials, &port);
  builder.RegisterService(&service);
  // Images arrive in chunks; a message holds at most one chunk plus framing.
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    LogError(absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_listen)));
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  LogInfo(absl::StrCat("listening on port ", port,
                       !tls                                         ? " (plaintext"
                       : absl::GetFlag(FLAGS_tls_client_ca).empty() ? " (TLS"
                                                                    : " (mutual TLS",
                       ", NOT_SERVING while loading)"));
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

  // Before the backbones load: a spool that cannot be written stops the start at once.
  std::unique_ptr<Spool> spool;
  if (!absl::GetFlag(FLAGS_spool_dir).empty()) {
    absl::StatusOr<std::unique_ptr<Spool>> opened =
        Spool::Open(absl::GetFlag(FLAGS_spool_dir), limits, &metrics);
    if (!opened.ok()) {
      LogError(opened.status().ToString());
      server->Shutdown();
      return 1;
    }
    spool = *std::move(opened);
  }

  EnginePoolOptions pool_options;
  pool_options.intra_op_threads = absl::GetFlag(FLAGS_threads);
  pool_options.backbone_batch_size = absl::GetFlag(FLAGS_backbone_batch);
  pool_options.device = absl::GetFlag(FLAGS_device);
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
  session_options.max_sessions_per_product =
      static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_max_sessions_per_product)));
  session_options.spool = spool.get();
  SessionManager sessions(*products, &scheduler, session_options, &metrics);
  // Before SERVING: a client that reconnects finds its sessions as it left them.
  if (spool != nullptr) {
    if (absl::Status s = RecoverSessions(*spool, sessions, scheduler, &metrics); !s.ok()) {
      LogError(s.ToString());
      server->Shutdown();
      return 1;
    }
  }

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

  // Line-mode products each get a runner (their own bank and scoring thread).
  LineRunners lines;
  for (const ProductConfig& product : sessions.products()) {
    if (!product.line) continue;
    const std::string spool = absl::GetFlag(FLAGS_spool_dir);
    absl::StatusOr<std::unique_ptr<LineRunner>> runner = LineRunner::Create(
        &product, (*engines)->ForProduct(product.name), &metrics,
        spool.empty() ? "" : absl::StrCat(spool, "/lines/", product.name), limits);
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
  const int abandoned = scheduler.Drain(Millis(absl::GetFlag(FLAGS_shutdown_grace)));
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
