// What musc-server was asked to run, as plain values: main.cc fills it from its flags and
// RunServer (server/server_assembly.h) builds the server from it. Grouped by concern into small
// option structs, so each part of the assembly reads only the group it needs.
//
// The defaults live in the flags (they are what --help shows); a default-constructed config is
// empty, not a runnable server. Values keep the flags' units and types: the assembly does every
// conversion (seconds to durations, ints to sizes) in one place.
#ifndef MUSC_SERVER_SERVER_CONFIG_H_
#define MUSC_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>

namespace musc {

// Where gRPC is served, and how large one received message may be.
struct GrpcListenOptions {
  std::string address;    // host:port; port 0 picks a free port.
  std::string port_file;  // If set, the bound port is written here once listening.
  int64_t max_message_bytes = 0;
};

// The Prometheus /metrics HTTP endpoint, on its own port.
struct MetricsListenOptions {
  std::string address;  // host:port; empty: no metrics endpoint.
  std::string port_file;
};

// Transport security and caller authentication (docs/SECURITY.md). Empty paths: off.
struct SecurityOptions {
  std::string tls_cert;       // Server certificate chain (PEM); goes with tls_key.
  std::string tls_key;        // Its private key (PEM).
  std::string tls_client_ca;  // CA for mutual TLS (needs tls_cert).
  std::string auth_tokens;    // Tokens file (YAML).
};

// How much scoring runs at once, and where: the engines and the batch scheduler.
struct ScoringCapacity {
  int workers = 0;         // Batches scored concurrently.
  int queue_capacity = 0;  // Sealed batches that may wait.
  int threads = 0;         // Intra-op threads (0 = all cores).
  int backbone_batch = 0;  // Images per backbone forward pass.
  std::string device;      // cpu, cuda or cuda:K.
};

// What one image, session, product and the whole server may hold.
struct ResourceLimits {
  int64_t max_image_bytes = 0;
  int64_t max_image_pixels = 0;  // Width × height.
  int64_t max_session_bytes = 0;
  int max_sessions = 0;
  int max_sessions_per_product = 0;  // 0 = no limit.
  int max_concurrent_streams = 0;    // 0 = no limit.
};

// How long sessions live and how long shutdown may take, in seconds.
struct LifetimeOptions {
  double session_idle_ttl = 0;
  double result_retention = 0;
  double shutdown_grace = 0;
};

struct ServerConfig {
  std::string products_file;  // YAML (docs/PRODUCTS.md).
  std::string spool_dir;      // Empty: in memory only (docs/RELIABILITY.md).
  GrpcListenOptions grpc;
  MetricsListenOptions metrics;
  SecurityOptions security;
  ScoringCapacity scoring;
  ResourceLimits limits;
  LifetimeOptions lifetimes;
};

}  // namespace musc

#endif  // MUSC_SERVER_SERVER_CONFIG_H_
