#include "tests/server/server_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/file_io.h"
#include "tests/server/http_get.h"

namespace musc::testing {

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::string& products_yaml,
                                                    const std::vector<std::string>& extra_flags) {
  return Start(products_yaml, extra_flags, ClientOptions());
}

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::string& products_yaml,
                                                    const std::vector<std::string>& extra_flags,
                                                    const ClientOptions& client_options) {
  auto server = std::unique_ptr<ServerProcess>(new ServerProcess());
  server->client_options_ = client_options;
  server->client_options_.deadline = std::chrono::seconds(60);
  char dir_template[] = "/tmp/musc-server-test-XXXXXX";
  server->dir_ = mkdtemp(dir_template);
  const std::string products = server->dir_ + "/products.yaml";
  std::ofstream(products) << products_yaml;
  const std::string port_file = server->dir_ + "/port";
  const std::string metrics_port_file = server->dir_ + "/metrics_port";
  server->log_path_ = server->dir_ + "/server.log";

  std::vector<std::string> args = {MUSC_SERVER_BIN,
                                   "--products=" + products,
                                   "--listen=127.0.0.1:0",
                                   "--port_file=" + port_file,
                                   "--threads=2",
                                   "--log_level=debug",
                                   "--metrics_listen=127.0.0.1:0",
                                   "--metrics_port_file=" + metrics_port_file};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  server->pid_ = fork();
  if (server->pid_ == 0) {
    const int log = open(server->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(server->pid_, &status, WNOHANG) == server->pid_) {
      server->pid_ = -1;
      ADD_FAILURE() << "musc-server exited during start-up:\n" << server->ReadLog();
      return nullptr;
    }
    std::ifstream in(port_file);
    if (in >> server->port_ && server->port_ > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (server->port_ <= 0) {
    ADD_FAILURE() << "musc-server did not write its port in time:\n" << server->ReadLog();
    return nullptr;
  }
  // Listening comes before loading: wait for SERVING. While NOT_SERVING, calls must answer
  // UNAVAILABLE, never anything else.
  std::unique_ptr<MuscClient> client = server->Connect();
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<bool> serving = client->IsServing();
    if (serving.ok() && *serving) {
      // Written right after the gRPC port, long before SERVING (unless disabled by a flag).
      std::ifstream(metrics_port_file) >> server->metrics_port_;
      return server;
    }
    if (serving.ok()) {
      absl::StatusOr<std::vector<v1::Product>> products = client->ListProducts();
      if (!products.ok() && products.status().code() != absl::StatusCode::kUnavailable) {
        ADD_FAILURE() << "while NOT_SERVING, ListProducts answered " << products.status();
        return nullptr;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "musc-server did not become SERVING in time:\n" << server->ReadLog();
  return nullptr;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::unique_ptr<MuscClient> ServerProcess::Connect() const {
  return MuscClient::Connect(address(), client_options_);
}

std::unique_ptr<MuscClient> ServerProcess::Connect(const ClientOptions& options) const {
  return MuscClient::Connect(address(), options);
}

int ServerProcess::Terminate(double timeout_seconds) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string ServerProcess::ScrapeMetrics() const {
  if (metrics_port_ <= 0) return "";
  HttpResponse response = HttpGet(metrics_port_, "/metrics");
  return response.status == 200 ? response.body : "";
}

std::string ServerProcess::ReadLog() const { return ReadFileToString(log_path_).value_or(""); }

}  // namespace musc::testing
