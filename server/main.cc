// musc-server: the MuSc batch-session gRPC service. This file owns the command line (the flags,
// their defaults and --help); server/server_assembly.cc builds and runs the server.
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "server/log.h"
#include "server/server_assembly.h"
#include "server/server_config.h"

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

ServerConfig ConfigFromFlags() {
  ServerConfig config;
  config.products_file = absl::GetFlag(FLAGS_products);
  config.spool_dir = absl::GetFlag(FLAGS_spool_dir);
  config.grpc.address = absl::GetFlag(FLAGS_listen);
  config.grpc.port_file = absl::GetFlag(FLAGS_port_file);
  config.grpc.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  config.metrics.address = absl::GetFlag(FLAGS_metrics_listen);
  config.metrics.port_file = absl::GetFlag(FLAGS_metrics_port_file);
  config.security.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  config.security.tls_key = absl::GetFlag(FLAGS_tls_key);
  config.security.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  config.security.auth_tokens = absl::GetFlag(FLAGS_auth_tokens);
  config.scoring.workers = absl::GetFlag(FLAGS_workers);
  config.scoring.queue_capacity = absl::GetFlag(FLAGS_queue_capacity);
  config.scoring.threads = absl::GetFlag(FLAGS_threads);
  config.scoring.backbone_batch = absl::GetFlag(FLAGS_backbone_batch);
  config.scoring.device = absl::GetFlag(FLAGS_device);
  config.limits.max_image_bytes = absl::GetFlag(FLAGS_max_image_bytes);
  config.limits.max_image_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  config.limits.max_session_bytes = absl::GetFlag(FLAGS_max_session_bytes);
  config.limits.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  config.limits.max_sessions_per_product = absl::GetFlag(FLAGS_max_sessions_per_product);
  config.limits.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  config.lifetimes.session_idle_ttl = absl::GetFlag(FLAGS_session_idle_ttl);
  config.lifetimes.result_retention = absl::GetFlag(FLAGS_result_retention);
  config.lifetimes.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  return config;
}

// The flags that make the command line unusable are refused (exit code 2) before anything starts;
// RunServer checks the rest as it builds the server.
int Run() {
  if (!SetLogLevel(absl::GetFlag(FLAGS_log_level))) {
    std::fprintf(stderr, "musc-server: --log_level must be debug, info, warning or error\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_products).empty()) {
    std::fprintf(stderr, "musc-server: --products is required (see --help)\n");
    return 2;
  }
  return RunServer(ConfigFromFlags());
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
