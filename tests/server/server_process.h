// Starts a real musc-server binary on a free loopback port for tests, and stops it.
#ifndef MUSC_TESTS_SERVER_SERVER_PROCESS_H_
#define MUSC_TESTS_SERVER_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "client/musc_client.h"

namespace musc::testing {

class ServerProcess {
 public:
  // Writes `products_yaml` to a temp dir and starts musc-server with it and `extra_flags`.
  // Waits until the port file appears and health says SERVING (fails the test otherwise).
  static std::unique_ptr<ServerProcess> Start(const std::string& products_yaml,
                                              const std::vector<std::string>& extra_flags = {});
  // The same for a server that needs client credentials (TLS, tokens): Start and Connect() use
  // `client_options` (its deadline is raised to 60 s as for the others).
  static std::unique_ptr<ServerProcess> Start(const std::string& products_yaml,
                                              const std::vector<std::string>& extra_flags,
                                              const ClientOptions& client_options);
  ~ServerProcess();  // SIGKILL if still running.

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The Prometheus endpoint (each test server gets its own free port).
  int metrics_port() const { return metrics_port_; }
  // GET /metrics: the text exposition, or empty when the endpoint did not answer.
  std::string ScrapeMetrics() const;
  pid_t pid() const { return pid_; }
  std::unique_ptr<MuscClient> Connect() const;
  // A client with other options (credentials, token) than the ones Start was given.
  std::unique_ptr<MuscClient> Connect(const ClientOptions& options) const;
  // Sends SIGTERM and waits; returns the exit status (as from waitpid), or -1 on timeout.
  int Terminate(double timeout_seconds);
  // SIGKILL, as a crash: no shutdown code runs. Waits for the process to be gone.
  void Kill();
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  ClientOptions client_options_;
  std::string dir_;
  std::string log_path_;
};

}  // namespace musc::testing

#endif  // MUSC_TESTS_SERVER_SERVER_PROCESS_H_
