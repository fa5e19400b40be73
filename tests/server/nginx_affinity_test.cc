// Several musc-server replicas behind Debian's nginx, routed by the x-musc-product header with
// consistent hashing (deploy/nginx/musc-nginx.conf, docs/DEPLOYMENT.md): every session of a product
// lives on one replica, and losing a replica moves only that replica's products and fails its
// sessions' calls with a clear status instead of answering from the wrong replica.
//
// nginx runs with the shipped deploy/nginx/musc-nginx.conf (the test's addresses substituted)
// inside a generated main config in a scratch directory: no master process, so it never switches
// user, and every pid, log and temp path in the scratch directory. Skipped where /usr/sbin/nginx is
// not installed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "client/musc_client.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"
#include "tests/test_support.h"

namespace musc::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kNginx[] = "/usr/sbin/nginx";

// The production config this test runs, in the checkout the tests were built from.
std::string DeployedConfigPath() {
  return std::string(MUSC_SOURCE_DIR) + "/deploy/nginx/musc-nginx.conf";
}

// Many products so that, whatever ports the replicas got (nginx's hash ring is built from the
// server addresses), each replica is all but certain to own some: with 16 products the chance
// that one of two replicas owns none is 2^-15.
constexpr int kProductCount = 16;

std::string ProductName(int i) { return absl::StrCat("line-", i); }

// One more product whose batches take seconds (a 256 px input), for a replica that dies mid-run.
constexpr char kHeavy[] = "heavy";

std::vector<std::string> ProductNames() {
  std::vector<std::string> names;
  for (int i = 0; i < kProductCount; ++i) names.push_back(ProductName(i));
  return names;
}

// The offline backbone of deploy/products.offline.yaml (seeded random tiny ViT at 64 px). Every
// product has the same backbone, so a replica loads one engine for all of them (two with heavy).
std::string ProductsYaml(bool with_heavy) {
  std::string yaml = "products:\n";
  if (with_heavy) {
    absl::StrAppend(&yaml, "  - name: ", kHeavy, "\n",
                    "    backbone: {model: vit-tiny-random, seed: 3, input_size: 256}\n",
                    "    scoring: {degrees: [1, 3, 5]}\n",
                    "    batch: {min_images: 5, max_images: 100}\n");
  }
  for (const std::string& name : ProductNames()) {
    absl::StrAppend(&yaml, "  - name: ", name, "\n",
                    "    backbone: {model: vit-tiny-random, seed: 0, input_size: 64}\n",
                    "    scoring: {degrees: [1]}\n",
                    "    batch: {min_images: 5, max_images: 50}\n");
  }
  return yaml;
}

std::vector<EncodedImage> MakeImages(int n, uint64_t seed0) {
  std::vector<EncodedImage> images;
  for (int i = 0; i < n; ++i) {
    images.push_back({absl::StrCat("img-", i), TexturePng(seed0 + i, i == n - 1, 96, 80), {}});
  }
  return images;
}

v1::CreateSessionRequest SessionFor(const std::string& product) {
  v1::CreateSessionRequest request;
  request.set_product(product);
  return request;
}

// A loopback port nobody listens on right now (nginx binds it a moment later).
int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// nginx as a gRPC proxy in front of `upstreams`, configured by deploy/nginx/musc-nginx.conf.
class NginxProxy {
 public:
  static std::unique_ptr<NginxProxy> Start(const std::vector<std::string>& upstreams) {
    auto proxy = std::unique_ptr<NginxProxy>(new NginxProxy());
    // The port is chosen before nginx binds it; another process may take it in between.
    for (int attempt = 0; attempt < 3; ++attempt) {
      proxy->port_ = FreeLoopbackPort();
      if (proxy->port_ <= 0) continue;
      if (!proxy->WriteConfig(upstreams)) return nullptr;
      if (proxy->Launch()) return proxy;
    }
    ADD_FAILURE() << "nginx did not start:\n" << proxy->ErrorLog();
    return nullptr;
  }

  ~NginxProxy() { Stop(); }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  // Empty while nginx has not written them.
  std::string ErrorLog() const { return ReadFileToString(dir_.Path("error.log")).value_or(""); }
  std::string AccessLog() const { return ReadFileToString(dir_.Path("access.log")).value_or(""); }

 private:
  NginxProxy() = default;

  // The main context is the test's (unprivileged, everything in the scratch directory); the
  // http-context part is deploy/nginx/musc-nginx.conf itself, with the test's replica addresses
  // (each on the file's first `server host:port …;` line's terms) and listen address.
  bool WriteConfig(const std::vector<std::string>& upstreams) {
    const absl::StatusOr<std::string> deployed = ReadFileToString(DeployedConfigPath());
    if (!deployed.ok()) {
      ADD_FAILURE() << "cannot read " << DeployedConfigPath() << ": " << deployed.status();
      return false;
    }
    std::istringstream in(*deployed);
    const std::regex replica_line(R"(^(\s*server\s+)\S+:\d+(\s[^;]*)?;.*$)");
    const std::regex listen_line(R"(^\s*listen\s[^;]*;.*$)");
    std::string fragment;
    bool replicas_written = false;
    int listens = 0;
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (std::regex_match(line, m, replica_line)) {
        if (!replicas_written) {
          for (const std::string& u : upstreams) {
            absl::StrAppend(&fragment, m[1].str(), u, m[2].str(), ";\n");
          }
        }
        replicas_written = true;
      } else if (std::regex_match(line, listen_line)) {
        absl::StrAppend(&fragment, "    listen 127.0.0.1:", port_, " http2;\n");
        ++listens;
      } else {
        absl::StrAppend(&fragment, line, "\n");
      }
    }
    if (!replicas_written || listens != 1 ||
        fragment.find("hash $http_x_musc_product consistent;") == std::string::npos) {
      ADD_FAILURE() << DeployedConfigPath() << " no longer has the expected shape:\n" << fragment;
      return false;
    }
    dir_.Write("musc.conf", fragment);
    const std::string d = dir_.path();
    dir_.Write("nginx.conf", absl::StrCat(R"(
daemon off;
master_process off;
pid )",
                                          d, R"(/nginx.pid;
error_log )",
                                          d, R"(/error.log info;
events { worker_connections 512; }
http {
  log_format routing '$http_x_musc_product $request_uri $status up=$upstream_addr '
                     'up_status=$upstream_status';
  access_log )",
                                          d, R"(/access.log routing;
  client_body_temp_path )",
                                          d, R"(/body;
  proxy_temp_path )",
                                          d, R"(/proxy;
  fastcgi_temp_path )",
                                          d, R"(/fastcgi;
  uwsgi_temp_path )",
                                          d, R"(/uwsgi;
  scgi_temp_path )",
                                          d, R"(/scgi;
  include )",
                                          d, R"(/musc.conf;
}
)"));
    return true;
  }

  bool Launch() {
    pid_ = fork();
    if (pid_ == 0) {
      const int log = open(dir_.Path("stderr.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      const std::string prefix = dir_.path() + "/";
      const std::string conf = dir_.Path("nginx.conf");
      const std::string error_log = dir_.Path("error.log");
      execl(kNginx, kNginx, "-p", prefix.c_str(), "-c", conf.c_str(), "-e", error_log.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {  // Port taken, or a config error.
        pid_ = -1;
        std::cerr << "nginx exited during start-up: "
                  << ReadFileToString(dir_.Path("stderr.log")).value_or("") << ErrorLog() << "\n";
        return false;
      }
      if (Accepts(port_)) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    Stop();
    return false;
  }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 250; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  ScratchDir dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Where each session is, asked of every live replica directly (not through the proxy).
struct Placement {
  std::map<std::string, std::set<int>> replicas_of_product;
  std::map<std::string, int> replica_of_session;
  std::map<int, std::set<std::string>> products_on_replica;
};

class Cluster {
 public:
  // Starts `n` replicas and nginx in front of them; false (with the failures reported) if any
  // did not start.
  bool Start(int n, bool with_heavy = false) {
    std::vector<std::string> addresses;
    for (int i = 0; i < n; ++i) {
      replicas_.push_back(ServerProcess::Start(ProductsYaml(with_heavy)));
      if (replicas_.back() == nullptr) return false;
      addresses.push_back(replicas_.back()->address());
    }
    proxy_ = NginxProxy::Start(addresses);
    return proxy_ != nullptr;
  }

  // A client that talks to the proxy. The stream deadline is short so that a stream nginx
  // failed to end would fail the test instead of hanging it.
  std::unique_ptr<MuscClient> ProxyClient() const {
    ClientOptions options;
    options.deadline = std::chrono::seconds(60);
    options.stream_deadline = std::chrono::seconds(120);
    options.chunk_bytes = 4096;  // Images cross the proxy in several HTTP/2 DATA frames.
    return MuscClient::Connect(proxy_->address(), options);
  }

  Placement Locate() const {
    Placement placement;
    for (size_t i = 0; i < replicas_.size(); ++i) {
      if (replicas_[i] == nullptr) continue;
      absl::StatusOr<std::vector<v1::Session>> sessions = replicas_[i]->Connect()->ListSessions("");
      EXPECT_TRUE(sessions.ok()) << "replica " << i << ": " << sessions.status();
      if (!sessions.ok()) continue;
      for (const v1::Session& s : *sessions) {
        const int r = static_cast<int>(i);
        placement.replicas_of_product[s.product()].insert(r);
        placement.replica_of_session[s.id()] = r;
        placement.products_on_replica[r].insert(s.product());
      }
    }
    return placement;
  }

  // SIGKILL, as a crash or an OOM kill would: no graceful shutdown, sessions lost.
  void Kill(int replica) { replicas_[replica].reset(); }

  NginxProxy& proxy() { return *proxy_; }
  int size() const { return static_cast<int>(replicas_.size()); }

 private:
  std::vector<std::unique_ptr<ServerProcess>> replicas_;
  std::unique_ptr<NginxProxy> proxy_;
};

#define SKIP_WITHOUT_NGINX()                                                                  \
  if (!std::filesystem::exists(kNginx)) {                                                     \
    GTEST_SKIP() << kNginx << " is not installed (Debian package nginx-light or nginx); the " \
                 << "proxy tests need it";                                                    \
  }

TEST(NginxRoutingKeyTest, ProductIsTheTextBeforeTheLastColonOfASessionId) {
  EXPECT_EQ(ProductOfSessionId("tire:0123456789abcdef0123456789abcdef"), "tire");
  EXPECT_EQ(ProductOfSessionId("a:b:c"), "a:b");
  EXPECT_EQ(ProductOfSessionId("s-0123456789abcdef"), "");  // No product part.
  EXPECT_EQ(ProductOfSessionId(""), "");
  EXPECT_STREQ(kProductHeader, "x-musc-product");
}

TEST(NginxAffinityTest, AllSessionsOfAProductLandOnOneReplica) {
  SKIP_WITHOUT_NGINX();
  Cluster cluster;
  ASSERT_TRUE(cluster.Start(2));
  std::unique_ptr<MuscClient> client = cluster.ProxyClient();

  const std::regex id_format("([A-Za-z0-9._-]+):[0-9a-f]{32}");
  std::map<std::string, std::set<std::string>> created;  // product → session ids
  for (const std::string& product : ProductNames()) {
    for (int k = 0; k < 3; ++k) {
      absl::StatusOr<v1::Session> s = client->CreateSession(SessionFor(product));
      ASSERT_TRUE(s.ok()) << product << ": " << s.status();
      std::smatch m;
      ASSERT_TRUE(std::regex_match(s->id(), m, id_format)) << s->id();
      EXPECT_EQ(m[1], product);
      EXPECT_EQ(ProductOfSessionId(s->id()), product);
      created[product].insert(s->id());
    }
  }

  const Placement placement = cluster.Locate();
  for (const auto& [product, ids] : created) {
    ASSERT_EQ(placement.replicas_of_product.count(product), 1u) << product << " has no sessions";
    const std::set<int>& replicas = placement.replicas_of_product.at(product);
    ASSERT_EQ(replicas.size(), 1u) << product << "'s sessions are spread over replicas";
    for (const std::string& id : ids) {
      ASSERT_EQ(placement.replica_of_session.count(id), 1u) << id << " is on no replica";
      EXPECT_EQ(placement.replica_of_session.at(id), *replicas.begin()) << id;
    }
  }
  ASSERT_EQ(placement.products_on_replica.size(), 2u)
      << "every product hashed to one replica (possible but ~2^-15 unlikely)";
  for (const auto& [replica, products] : placement.products_on_replica) {
    std::cout << "[ nginx    ] replica " << replica << " holds " << products.size()
              << " products\n";
  }

  // Calls that carry only the session id reach the replica that holds the session, every time.
  for (const auto& [product, ids] : created) {
    for (const std::string& id : ids) {
      absl::StatusOr<v1::Session> s = client->GetSession(id);
      ASSERT_TRUE(s.ok()) << id << ": " << s.status();
      EXPECT_EQ(s->product(), product);
    }
    // Listing by product reaches the product's replica and sees exactly its sessions.
    absl::StatusOr<std::vector<v1::Session>> listed = client->ListSessions(product);
    ASSERT_TRUE(listed.ok()) << listed.status();
    std::set<std::string> listed_ids;
    for (const v1::Session& s : *listed) listed_ids.insert(s.id());
    EXPECT_EQ(listed_ids, ids) << product;
  }
  // Calls without a product (health, product list) may go to any replica.
  absl::StatusOr<bool> serving = client->IsServing();
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_TRUE(*serving);
  absl::StatusOr<std::vector<v1::Product>> products = client->ListProducts();
  ASSERT_TRUE(products.ok()) << products.status();
  EXPECT_EQ(products->size(), static_cast<size_t>(kProductCount));
}

TEST(NginxAffinityTest, FullRoundTripThroughTheProxy) {
  SKIP_WITHOUT_NGINX();
  Cluster cluster;
  ASSERT_TRUE(cluster.Start(2));
  std::unique_ptr<MuscClient> client = cluster.ProxyClient();
  const std::string product = ProductName(3);

  const std::vector<EncodedImage> images = MakeImages(6, 500);
  absl::StatusOr<v1::Session> session = client->CreateSession(SessionFor(product));
  ASSERT_TRUE(session.ok()) << session.status();
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client->AddImages(session->id(), images);
  ASSERT_TRUE(acks.ok()) << acks.status() << "\n" << cluster.proxy().ErrorLog();
  ASSERT_EQ(acks->size(), images.size());
  for (const v1::ImageAck& a : *acks) EXPECT_TRUE(a.accepted()) << a.error_message();
  absl::StatusOr<v1::Session> sealed = client->SealSession(session->id());
  ASSERT_TRUE(sealed.ok()) << sealed.status();

  std::vector<v1::ImageResult> results;
  v1::Session final_session;
  absl::Status streamed = client->StreamResults(session->id(), {}, [&](const v1::ResultEvent& e) {
    if (e.has_result()) results.push_back(e.result());
    if (e.has_finished()) final_session = e.finished().session();
  });
  ASSERT_TRUE(streamed.ok()) << streamed << "\n" << cluster.proxy().ErrorLog();
  EXPECT_EQ(final_session.state(), v1::DONE) << final_session.error();
  ASSERT_EQ(results.size(), images.size());
  std::set<std::string> ids;
  for (const v1::ImageResult& r : results) {
    ids.insert(r.client_image_id());
    EXPECT_TRUE(std::isfinite(r.raw_score()));
    EXPECT_EQ(r.map().width(), 96u);  // Full-resolution maps crossed the proxy.
    EXPECT_EQ(r.map().height(), 80u);
    EXPECT_FALSE(r.map().data().empty());
  }
  EXPECT_EQ(ids.size(), images.size());
  absl::StatusOr<v1::Session> done = client->GetSession(session->id());
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->result_count(), images.size());

  // Inspect, which the client library does not wrap: the caller sets the product header itself.
  grpc::ClientContext context;
  context.AddMetadata(kProductHeader, product);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto stub = v1::MuscService::NewStub(client->channel());
  auto stream = stub->Inspect(&context);
  v1::InspectRequest start;
  start.mutable_start()->set_product(product);
  ASSERT_TRUE(stream->Write(start));
  for (const EncodedImage& image : MakeImages(5, 900)) {
    v1::InspectRequest request;
    request.mutable_image()->set_client_image_id(image.client_id);
    request.mutable_image()->set_data(image.bytes);
    request.mutable_image()->set_last_chunk(true);
    ASSERT_TRUE(stream->Write(request));
  }
  ASSERT_TRUE(stream->WritesDone());
  int inspected = 0;
  std::string inspect_session;
  v1::ResultEvent event;
  while (stream->Read(&event)) {
    inspected += event.has_result();
    if (event.has_finished()) inspect_session = event.finished().session().id();
  }
  const grpc::Status inspect_status = stream->Finish();
  ASSERT_TRUE(inspect_status.ok()) << inspect_status.error_message();
  EXPECT_EQ(inspected, 5);
  // The Inspect session is on the same replica as the product's other session.
  const Placement placement = cluster.Locate();
  ASSERT_EQ(placement.replica_of_session.count(inspect_session), 1u) << inspect_session;
  EXPECT_EQ(placement.replica_of_session.at(inspect_session),
            placement.replica_of_session.at(session->id()));
}

// Three replicas, so that "only the dead replica's products move" is observable: the products of
// both survivors must stay where they were.
TEST(NginxAffinityTest, KillingAReplicaMovesOnlyItsProductsAndFailsItsSessionsClearly) {
  SKIP_WITHOUT_NGINX();
  Cluster cluster;
  ASSERT_TRUE(cluster.Start(3, /*with_heavy=*/true));
  std::unique_ptr<MuscClient> client = cluster.ProxyClient();

  std::vector<std::string> products = ProductNames();
  products.push_back(kHeavy);
  std::map<std::string, std::vector<std::string>> sessions;  // product → ids, created before
  for (const std::string& product : products) {
    for (int k = 0; k < 2; ++k) {
      absl::StatusOr<v1::Session> s = client->CreateSession(SessionFor(product));
      ASSERT_TRUE(s.ok()) << product << ": " << s.status();
      sessions[product].push_back(s->id());
    }
  }
  const Placement before = cluster.Locate();
  // The victim: the replica that holds the heavy product, whose batch will be running.
  ASSERT_EQ(before.replica_of_session.count(sessions[kHeavy][0]), 1u);
  const int victim = before.replica_of_session.at(sessions[kHeavy][0]);
  const std::set<std::string> moved = before.products_on_replica.at(victim);
  std::map<std::string, int> staying;  // product → its replica
  for (const auto& [product, replicas] : before.replicas_of_product) {
    ASSERT_EQ(replicas.size(), 1u) << product;
    if (*replicas.begin() != victim) staying[product] = *replicas.begin();
  }
  ASSERT_FALSE(staying.empty()) << "every product hashed to one replica (~3^-16 unlikely)";
  std::cout << "[ nginx    ] killing replica " << victim << " of 3, which holds " << moved.size()
            << " of " << products.size() << " products\n";

  // Two calls in flight on the victim when it dies; both must end with a clear error, neither
  // may hang or end OK.
  // 1. A results stream waiting on an OPEN session (no response sent yet): nginx answers 502,
  //    the config turns that into UNAVAILABLE, the client retries, and the next replica on the
  //    ring answers that it does not know the session.
  absl::Status waiting_status;
  std::thread waiter([&] {
    waiting_status = client->StreamResults(sessions[kHeavy][1], {}, [](const v1::ResultEvent&) {});
  });
  // 2. A results stream of a batch being scored (progress events already sent): nginx resets the
  //    stream; the client reports UNAVAILABLE "cut off mid-stream" (here without retries, to see
  //    that first status).
  const std::string running = sessions[kHeavy][0];
  ASSERT_TRUE(client->AddImages(running, MakeImages(24, 300)).ok());
  ASSERT_TRUE(client->SealSession(running).ok());
  std::atomic<bool> progress_seen{false};
  absl::Status running_status;
  std::thread runner([&] {
    ClientOptions once;
    once.max_attempts = 1;
    std::unique_ptr<MuscClient> c = MuscClient::Connect(cluster.proxy().address(), once);
    running_status = c->StreamResults(running, {}, [&](const v1::ResultEvent& e) {
      if (e.has_progress()) progress_seen = true;
    });
  });
  for (int i = 0; i < 3000 && !progress_seen; ++i) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(progress_seen.load()) << "no progress event within 30 s";
  cluster.Kill(victim);
  waiter.join();
  runner.join();
  std::cout << "[ nginx    ] stream of an OPEN session on the killed replica: " << waiting_status
            << "\n[ nginx    ] stream of a running batch on the killed replica (no retry): "
            << running_status << "\n";
  EXPECT_EQ(waiting_status.code(), absl::StatusCode::kNotFound) << waiting_status;
  EXPECT_TRUE(MessageHas(waiting_status, "not found on this replica"));
  EXPECT_EQ(running_status.code(), absl::StatusCode::kUnavailable) << running_status;
  EXPECT_TRUE(MessageHas(running_status, "cut off mid-stream"));

  // Sessions of the dead replica's products are gone: every call on them fails clearly (the
  // proxy sends them to the next replica on the ring, which does not know them), never OK.
  absl::Status example;
  for (const std::string& product : moved) {
    for (const std::string& id : sessions[product]) {
      absl::StatusOr<v1::Session> got = client->GetSession(id);
      ASSERT_FALSE(got.ok()) << id << " answered OK after its replica died";
      EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << got.status();
      EXPECT_TRUE(MessageHas(got.status(), "not found on this replica"));
      example = got.status();
      absl::StatusOr<v1::Session> sealed = client->SealSession(id);
      EXPECT_EQ(sealed.status().code(), absl::StatusCode::kNotFound) << sealed.status();
      absl::StatusOr<std::vector<v1::ImageAck>> acks = client->AddImages(id, MakeImages(1, 1));
      EXPECT_EQ(acks.status().code(), absl::StatusCode::kNotFound) << acks.status();
    }
  }
  std::cout << "[ nginx    ] calls on the killed replica's sessions: " << example << "\n";

  // The survivors' products still work with their existing sessions.
  for (const auto& [product, replica] : staying) {
    for (const std::string& id : sessions[product]) {
      absl::StatusOr<v1::Session> got = client->GetSession(id);
      ASSERT_TRUE(got.ok()) << id << " of a surviving replica: " << got.status();
      EXPECT_EQ(got->state(), v1::OPEN);
    }
  }
  const std::string kept = sessions[staying.begin()->first][0];
  ASSERT_TRUE(client->AddImages(kept, MakeImages(5, 100)).ok());
  ASSERT_TRUE(client->SealSession(kept).ok());
  int kept_results = 0;
  ASSERT_TRUE(client
                  ->StreamResults(kept, {},
                                  [&](const v1::ResultEvent& e) { kept_results += e.has_result(); })
                  .ok());
  EXPECT_EQ(kept_results, 5);

  // New sessions: the dead replica's products open on a survivor (CreateSession is not retried
  // by the client, but nginx may pass it on when the dead replica refuses the connection: it
  // never reached a server), each product still on one replica; the others did not move.
  std::map<std::string, std::string> fresh;
  for (const std::string& product : products) {
    absl::StatusOr<v1::Session> s = client->CreateSession(SessionFor(product));
    ASSERT_TRUE(s.ok()) << product << ": " << s.status() << "\n" << cluster.proxy().ErrorLog();
    fresh[product] = s->id();
  }
  const Placement after = cluster.Locate();
  for (const auto& [product, replica] : staying) {
    EXPECT_EQ(after.replicas_of_product.at(product), std::set<int>{replica})
        << product << " moved although its replica is alive";
  }
  for (const std::string& product : moved) {
    ASSERT_EQ(after.replicas_of_product.count(product), 1u) << product;
    const std::set<int>& replicas = after.replicas_of_product.at(product);
    ASSERT_EQ(replicas.size(), 1u) << product;
    EXPECT_NE(*replicas.begin(), victim);
    // Its old sessions are not anywhere: nothing answers for them.
    for (const std::string& id : sessions[product]) {
      EXPECT_EQ(after.replica_of_session.count(id), 0u) << id;
    }
    // The new session works end to end on its new replica.
    absl::StatusOr<v1::Session> got = client->GetSession(fresh[product]);
    ASSERT_TRUE(got.ok()) << got.status();
  }
  // A cheap product for the round trip (heavy only if the victim held nothing else).
  std::string reborn_product = kHeavy;
  for (const std::string& p : moved) {
    if (p != kHeavy) reborn_product = p;
  }
  const std::string reborn = fresh[reborn_product];
  ASSERT_TRUE(client->AddImages(reborn, MakeImages(5, 200)).ok());
  ASSERT_TRUE(client->SealSession(reborn).ok());
  int reborn_results = 0;
  ASSERT_TRUE(
      client
          ->StreamResults(reborn, {},
                          [&](const v1::ResultEvent& e) { reborn_results += e.has_result(); })
          .ok());
  EXPECT_EQ(reborn_results, 5);

  // With no replica left, calls fail with UNAVAILABLE and the proxy's message (the config's
  // error_page), after the client's retries; CreateSession is not retried but fails the same way.
  for (int i = 0; i < cluster.size(); ++i) cluster.Kill(i);
  absl::StatusOr<v1::Session> none = client->GetSession(kept);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable) << none.status();
  EXPECT_TRUE(MessageHas(none.status(), "no musc-server replica answered"));
  absl::StatusOr<v1::Session> refused = client->CreateSession(SessionFor(ProductName(0)));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  std::cout << "[ nginx    ] with every replica dead: GetSession " << none.status()
            << "; CreateSession " << refused.status() << "\n";
}

}  // namespace
}  // namespace musc::testing
