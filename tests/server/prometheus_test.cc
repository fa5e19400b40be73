// The metrics endpoint with the real thing: a real musc-server process, promtool on its scrape,
// a real Prometheus server scraping it on loopback and queried through its HTTP API, and every
// PromQL expression of the Grafana dashboard checked by promtool, evaluated by that Prometheus
// and confined to metric names the server really exports.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/file_io.h"
#include "tests/server/http_get.h"
#include "tests/server/in_process_fixture.h"
#include "tests/server/run_command.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"
#include "tests/test_support.h"

namespace musc::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kProducts[] = R"(
products:
  - name: widget
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
    scoring: {degrees: [1, 3]}
    batch: {min_images: 5, max_images: 100}
  - name: widget-line
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
    scoring: {degrees: [1, 3], rscin_windows: []}
    line: {bank_size: 8, warmup_images: 3}
    decision: {image: {policy: robust, k: 3}, window: 20, min_scores: 2}
)";
constexpr int64_t kMaxImageBytes = 200000;

const char* const kPrometheusBin = "/usr/bin/prometheus";
const char* const kPromtoolBin = "/usr/bin/promtool";

// What the workload sent, i.e. how far each counter must have moved.
struct Workload {
  int images_sent = 0;      // Completed images, accepted or rejected.
  int images_accepted = 0;  // All in one batch.
  int rejected_invalid = 0;
  int rejected_duplicate = 0;
  int decode_attempts = 0;  // Images that reached the decoder (not the oversized one).
  int64_t bytes_sent = 0;
  size_t results = 0;
};

// One session through the client library: good images, a corrupt one, an oversized one and a
// repeated id; seal; read every result.
Workload RunSession(MuscClient& client) {
  Workload w;
  v1::CreateSessionRequest create;
  create.set_product("widget");
  absl::StatusOr<v1::Session> session = client.CreateSession(create);
  EXPECT_TRUE(session.ok()) << session.status();
  if (!session.ok()) return w;
  std::vector<EncodedImage> images;
  for (int i = 0; i < 6; ++i)
    images.push_back({absl::StrCat("good-", i), TexturePng(40 + i, i == 3), {}});
  images.push_back({"corrupt", std::string(5000, 'x'), {}});
  images.push_back({"oversized", std::string(kMaxImageBytes + 1000, '\x89'), {}});
  images.push_back({"good-0", TexturePng(40, false), {}});  // Repeated id: ALREADY_EXISTS.
  for (const EncodedImage& image : images) w.bytes_sent += static_cast<int64_t>(image.bytes.size());
  w.images_sent = static_cast<int>(images.size());
  w.images_accepted = 6;
  w.rejected_invalid = 2;
  w.rejected_duplicate = 1;
  w.decode_attempts = 8;
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client.AddImages(session->id(), images);
  EXPECT_TRUE(acks.ok()) << acks.status();
  if (!acks.ok()) return w;
  int accepted = 0;
  for (const v1::ImageAck& ack : *acks) accepted += ack.accepted() ? 1 : 0;
  EXPECT_EQ(accepted, w.images_accepted);
  EXPECT_TRUE(client.SealSession(session->id()).ok());
  absl::Status streamed =
      client.StreamResults(session->id(), v1::MapOptions(), [&w](const v1::ResultEvent& event) {
        if (event.has_result()) ++w.results;
      });
  EXPECT_TRUE(streamed.ok()) << streamed;
  EXPECT_EQ(w.results, 6u);
  return w;
}

// The text exposition as "name{sorted labels}" → value.
std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> samples;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

// The exposition key of a sample; prometheus-cpp writes labels sorted by name.
std::string Key(const std::string& name, std::map<std::string, std::string> labels = {}) {
  if (labels.empty()) return name;
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(absl::StrCat(k, "=\"", v, "\""));
  return absl::StrCat(name, "{", absl::StrJoin(parts, ","), "}");
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A real Prometheus server on loopback scraping one target every second.
class PrometheusProcess {
 public:
  PrometheusProcess(const std::string& dir, int target_port) {
    const std::string config = dir + "/prometheus.yml";
    std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          << "scrape_configs:\n  - job_name: musc\n    static_configs:\n"
                          << "      - targets: ['127.0.0.1:" << target_port << "']\n";
    port_ = FreeLoopbackPort();
    log_ = dir + "/prometheus.log";
    std::vector<std::string> args = {
        kPrometheusBin, "--config.file=" + config, "--storage.tsdb.path=" + dir + "/tsdb",
        absl::StrCat("--web.listen-address=127.0.0.1:", port_), "--log.level=warn"};
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~PrometheusProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }

  bool WaitReady(std::chrono::seconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (HttpGet(port_, "/-/ready").status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // The API's whole answer to an instant query.
  nlohmann::json Query(const std::string& promql) const {
    const HttpResponse r = HttpGet(port_, "/api/v1/query?query=" + UrlEncode(promql));
    nlohmann::json parsed = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) return {{"status", "error"}, {"error", "unparsable: " + r.body}};
    return parsed;
  }

  // The single value of an instant query returning one sample; NaN when it returns none.
  double Scalar(const std::string& promql) const {
    const nlohmann::json j = Query(promql);
    if (j.value("status", "") != "success") return std::nan("");
    const nlohmann::json& result = j["data"]["result"];
    if (!result.is_array() || result.size() != 1) return std::nan("");
    return std::stod(result[0]["value"][1].get<std::string>());
  }

  // Polls until the query returns `expected` (the scrape after an event may take a second).
  bool WaitFor(const std::string& promql, double expected, std::chrono::seconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (Scalar(promql) == expected) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }

  std::string ReadLog() const { return ReadFileToString(log_).value_or(""); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_;
};

// Metric names a PromQL expression selects: identifiers outside strings, label matchers,
// ranges and grouping clauses that are neither functions, aggregations nor keywords.
std::set<std::string> MetricNamesIn(const std::string& expr) {
  static const std::set<std::string> kNotMetrics = {
      "sum",   "min",          "max",        "avg",         "group",    "stddev", "stdvar",
      "count", "count_values", "bottomk",    "topk",        "quantile", "by",     "without",
      "on",    "ignoring",     "group_left", "group_right", "and",      "or",     "unless",
      "bool",  "offset",       "inf",        "nan"};
  static const std::set<std::string> kLabelLists = {"by",       "without",    "on",
                                                    "ignoring", "group_left", "group_right"};
  std::set<std::string> names;
  size_t i = 0;
  auto skip_string = [&](char quote) {
    for (++i; i < expr.size() && expr[i] != quote; ++i) {
      if (expr[i] == '\\') ++i;
    }
    ++i;
  };
  auto skip_to = [&](char close) {
    while (i < expr.size() && expr[i] != close) {
      if (expr[i] == '"' || expr[i] == '\'' || expr[i] == '`') {
        skip_string(expr[i]);
      } else {
        ++i;
      }
    }
    ++i;
  };
  while (i < expr.size()) {
    const char c = expr[i];
    if (c == '"' || c == '\'' || c == '`') {
      skip_string(c);
    } else if (c == '{') {
      skip_to('}');
    } else if (c == '[') {
      skip_to(']');
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      while (i < expr.size() &&
             (std::isalnum(static_cast<unsigned char>(expr[i])) || expr[i] == '.')) {
        ++i;
      }
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':') {
      const size_t start = i;
      while (i < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[i])) ||
                                 expr[i] == '_' || expr[i] == ':')) {
        ++i;
      }
      const std::string word = expr.substr(start, i - start);
      size_t next = i;
      while (next < expr.size() && std::isspace(static_cast<unsigned char>(expr[next]))) ++next;
      const bool call = next < expr.size() && expr[next] == '(';
      if (kLabelLists.count(word) != 0 && call) {
        i = next;
        skip_to(')');
      } else if (!call && kNotMetrics.count(word) == 0) {
        names.insert(word);
      }
    } else {
      ++i;
    }
  }
  return names;
}

// Every "expr" in the dashboard, with Grafana's variables replaced by values Prometheus accepts.
std::vector<std::string> DashboardExpressions(const nlohmann::json& dashboard) {
  std::vector<std::string> out;
  std::vector<const nlohmann::json*> stack = {&dashboard};
  while (!stack.empty()) {
    const nlohmann::json* node = stack.back();
    stack.pop_back();
    if (node->is_object()) {
      for (auto it = node->begin(); it != node->end(); ++it) {
        if (it.key() == "expr" && it->is_string()) {
          out.push_back(it->get<std::string>());
        } else {
          stack.push_back(&*it);
        }
      }
    } else if (node->is_array()) {
      for (const nlohmann::json& item : *node) stack.push_back(&item);
    }
  }
  static const std::regex kVariable(R"(\$\{?(\w+)(:\w+)?\}?)");
  for (std::string& expr : out) {
    std::string replaced;
    std::sregex_iterator it(expr.begin(), expr.end(), kVariable), end;
    size_t last = 0;
    for (; it != end; ++it) {
      replaced += expr.substr(last, it->position() - last);
      const std::string name = (*it)[1];
      replaced += name == "__range" ? "1h" : name.rfind("__", 0) == 0 ? "1m" : ".*";
      last = it->position() + it->length();
    }
    expr = replaced + expr.substr(last);
  }
  return out;
}

class MetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = ServerProcess::Start(kProducts, {absl::StrCat("--max_image_bytes=", kMaxImageBytes)})
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(server_->metrics_port(), 0) << server_->ReadLog();
  }
  static ServerProcess* server_;
};
ServerProcess* MetricsTest::server_ = nullptr;

TEST_F(MetricsTest, CountersAndHistogramsMoveByExactlyWhatASessionDid) {
  const std::map<std::string, double> before = ParseExposition(server_->ScrapeMetrics());
  ASSERT_FALSE(before.empty());
  std::unique_ptr<MuscClient> client = server_->Connect();
  const Workload w = RunSession(*client);
  // The worker lowers its running-batch gauge just after the session turns DONE, so a scrape
  // right after the last result may still see it: scrape again (with a deadline) until it settles.
  std::map<std::string, double> after;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        after = ParseExposition(server_->ScrapeMetrics());
        const auto running = after.find("musc_running_batches");
        return running != after.end() && running->second == 0;
      },
      std::chrono::seconds(30)))
      << "musc_running_batches did not return to 0";
  auto moved = [&](const std::string& key) {
    const auto b = before.find(key);
    const auto a = after.find(key);
    EXPECT_NE(a, after.end()) << key << " is not exported";
    return (a == after.end() ? 0.0 : a->second) - (b == before.end() ? 0.0 : b->second);
  };
  const std::map<std::string, std::string> widget = {{"product", "widget"}};
  EXPECT_EQ(moved(Key("musc_sessions_created_total", widget)), 1);
  EXPECT_EQ(moved(Key("musc_sessions_finished_total", {{"product", "widget"}, {"state", "done"}})),
            1);
  EXPECT_EQ(moved(Key("musc_images_received_total", widget)), w.images_sent);
  EXPECT_EQ(moved(Key("musc_received_bytes_total", widget)), static_cast<double>(w.bytes_sent));
  EXPECT_EQ(moved(Key("musc_images_rejected_total",
                      {{"product", "widget"}, {"reason", "invalid_argument"}})),
            w.rejected_invalid);
  EXPECT_EQ(moved(Key("musc_images_rejected_total",
                      {{"product", "widget"}, {"reason", "already_exists"}})),
            w.rejected_duplicate);
  EXPECT_EQ(moved(Key("musc_batch_images_count", widget)), 1);
  EXPECT_EQ(moved(Key("musc_batch_images_sum", widget)), w.images_accepted);
  EXPECT_EQ(moved(Key("musc_stage_seconds_count", {{"product", "widget"}, {"stage", "decode"}})),
            w.decode_attempts);
  EXPECT_EQ(moved(Key("musc_stage_seconds_count", {{"product", "widget"}, {"stage", "encode"}})),
            static_cast<double>(w.results));
  for (const char* stage : {"queue", "preprocess", "backbone", "lnamd", "msm", "maps", "rscin"}) {
    EXPECT_EQ(moved(Key("musc_stage_seconds_count", {{"product", "widget"}, {"stage", stage}})), 1)
        << stage;
  }
  EXPECT_GT(moved(Key("musc_stage_seconds_sum", {{"product", "widget"}, {"stage", "backbone"}})),
            0);
  EXPECT_EQ(moved(Key("musc_seal_to_first_result_seconds_count", widget)), 1);
  EXPECT_EQ(moved(Key("musc_seal_to_last_result_seconds_count", widget)), 1);
  // Reading the results again (a second stream) is not a new first/last result.
  ASSERT_TRUE(client->ListSessions("widget").ok());
  EXPECT_GE(after.at(Key("musc_sessions", {{"product", "widget"}, {"state", "done"}})), 1);
  EXPECT_EQ(after.at("musc_queue_depth"), 0);
  EXPECT_EQ(after.at("musc_queue_capacity"), 16);
  EXPECT_EQ(after.at("musc_running_batches"), 0);
  EXPECT_GT(after.at("process_resident_memory_bytes"), 50e6);
  EXPECT_EQ(after.at(Key("musc_build_info", {{"backbones", "vit-tiny-random"},
                                             {"libtorch_version", "1.13.0"},
                                             {"threads", "2"},
                                             {"version", "0.1.0"}})),
            1);
}

TEST_F(MetricsTest, ScrapePassesPromtoolCheckMetrics) {
  if (!fs::exists(kPromtoolBin))
    GTEST_SKIP() << kPromtoolBin << " not installed (Debian: prometheus)";
  ScratchDir dir;
  dir.Write("scrape.txt", server_->ScrapeMetrics());
  const CommandResult check =
      RunCommand(absl::StrCat(kPromtoolBin, " check metrics < ", dir.Path("scrape.txt")));
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "") << "promtool lint findings";
}

TEST_F(MetricsTest, RealPrometheusScrapesTheServerAndSeesTheSession) {
  if (!fs::exists(kPrometheusBin)) {
    GTEST_SKIP() << kPrometheusBin << " not installed (Debian: prometheus)";
  }
  ScratchDir dir;
  PrometheusProcess prometheus(dir.path(), server_->metrics_port());
  ASSERT_TRUE(prometheus.WaitReady(std::chrono::seconds(60))) << prometheus.ReadLog();
  ASSERT_TRUE(prometheus.WaitFor(R"(up{job="musc"})", 1, std::chrono::seconds(30)))
      << prometheus.ReadLog();
  const double created_before =
      prometheus.Scalar(R"(sum(musc_sessions_created_total{product="widget"}) or vector(0))");
  const double images_before =
      prometheus.Scalar(R"(sum(musc_images_received_total{product="widget"}) or vector(0))");
  ASSERT_FALSE(std::isnan(created_before));

  std::unique_ptr<MuscClient> client = server_->Connect();
  const Workload w = RunSession(*client);

  // The server's own scrape right after the session is the truth Prometheus must catch up with.
  const std::map<std::string, double> direct = ParseExposition(server_->ScrapeMetrics());
  const std::map<std::string, std::string> widget = {{"product", "widget"}};
  ASSERT_TRUE(prometheus.WaitFor(R"(sum(musc_seal_to_last_result_seconds_count{product="widget"}))",
                                 direct.at(Key("musc_seal_to_last_result_seconds_count", widget)),
                                 std::chrono::seconds(30)))
      << prometheus.ReadLog();
  EXPECT_EQ(prometheus.Scalar(R"(sum(musc_sessions_created_total{product="widget"}))"),
            created_before + 1);
  EXPECT_EQ(prometheus.Scalar(R"(sum(musc_images_received_total{product="widget"}))"),
            images_before + w.images_sent);
  EXPECT_EQ(prometheus.Scalar(R"(sum(musc_images_received_total{product="widget"}))"),
            direct.at(Key("musc_images_received_total", widget)));
  EXPECT_EQ(prometheus.Scalar(R"(sum(musc_received_bytes_total{product="widget"}))"),
            direct.at(Key("musc_received_bytes_total", widget)));
  EXPECT_EQ(prometheus.Scalar(
                R"(sum(musc_images_rejected_total{product="widget",reason="invalid_argument"}))"),
            prometheus.Scalar(R"(sum(musc_images_rejected_total{reason="invalid_argument"}))"));
  EXPECT_GE(prometheus.Scalar(R"(sum(musc_sessions_finished_total{state="done"}))"), 1);
  EXPECT_EQ(prometheus.Scalar(R"(musc_queue_capacity)"), 16);
  // A latency percentile from the histogram buckets, as the dashboard computes it.
  const double p99 = prometheus.Scalar(
      R"(histogram_quantile(0.99, sum by (le) (musc_stage_seconds_bucket{stage="backbone"})))");
  EXPECT_GT(p99, 0);
  EXPECT_LT(p99, 1000);
}

TEST_F(MetricsTest, EveryDashboardExpressionParsesEvaluatesAndNamesExportedMetrics) {
  const fs::path dashboard_path =
      fs::path(MUSC_SOURCE_DIR) / "deploy" / "grafana" / "dashboards" / "musc-serve.json";
  const absl::StatusOr<std::string> dashboard_text = ReadFileToString(dashboard_path.string());
  ASSERT_TRUE(dashboard_text.ok()) << dashboard_text.status();
  const nlohmann::json dashboard = nlohmann::json::parse(*dashboard_text);
  const std::vector<std::string> exprs = DashboardExpressions(dashboard);
  ASSERT_GE(exprs.size(), 8u) << "the dashboard should have panels for every area";

  // Names the server exports: every sample name of a scrape after real work, plus the family
  // names of histograms (a dashboard never selects those bare, but promtool allows it).
  std::unique_ptr<MuscClient> client = server_->Connect();
  RunSession(*client);
  // And a short line (its warm-up images sent together), for the line-mode panels.
  std::vector<std::future<absl::StatusOr<v1::ScoreImageResponse>>> line;
  for (int k = 0; k < 4; ++k) {
    line.push_back(std::async(std::launch::async, [&client, k] {
      return client->ScoreImage("widget-line",
                                {absl::StrCat("l", k), TexturePng(90 + k, false), {}});
    }));
  }
  for (auto& call : line) ASSERT_TRUE(call.get().ok());
  std::set<std::string> exported;
  for (const auto& [key, value] : ParseExposition(server_->ScrapeMetrics())) {
    exported.insert(key.substr(0, key.find('{')));
  }
  for (const std::string& expr : exprs) {
    for (const std::string& name : MetricNamesIn(expr)) {
      EXPECT_TRUE(exported.count(name) != 0 || name == "up")
          << "dashboard expression names '" << name
          << "', which musc-server does not export: " << expr;
    }
  }

  if (!fs::exists(kPromtoolBin)) GTEST_SKIP() << kPromtoolBin << " not installed";
  // promtool parses each expression as a recording rule.
  ScratchDir dir;
  std::ostringstream rules;
  rules << "groups:\n  - name: dashboard\n    rules:\n";
  for (size_t k = 0; k < exprs.size(); ++k) {
    rules << "      - record: dashboard:expr_" << k
          << "\n        expr: " << nlohmann::json(exprs[k]).dump() << "\n";
  }
  dir.Write("rules.yml", rules.str());
  const CommandResult check =
      RunCommand(absl::StrCat(kPromtoolBin, " check rules ", dir.Path("rules.yml")));
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << rules.str();

  // And a real Prometheus evaluates each one without error.
  if (!fs::exists(kPrometheusBin)) GTEST_SKIP() << kPrometheusBin << " not installed";
  PrometheusProcess prometheus(dir.path(), server_->metrics_port());
  ASSERT_TRUE(prometheus.WaitReady(std::chrono::seconds(60))) << prometheus.ReadLog();
  ASSERT_TRUE(prometheus.WaitFor(R"(up{job="musc"})", 1, std::chrono::seconds(30)));
  for (const std::string& expr : exprs) {
    const nlohmann::json answer = prometheus.Query(expr);
    EXPECT_EQ(answer.value("status", ""), "success") << expr << "\n" << answer.dump();
  }
}

TEST(MetricNamesInTest, FindsSelectorsAndSkipsFunctionsLabelsAndKeywords) {
  EXPECT_EQ(MetricNamesIn(R"(histogram_quantile(0.99, sum by (le, stage) )"
                          R"((rate(musc_stage_seconds_bucket{product=~".*"}[1m]))))"),
            std::set<std::string>({"musc_stage_seconds_bucket"}));
  EXPECT_EQ(MetricNamesIn(R"(sum(rate(a_total[5m])) / ignoring(x) group_left b offset 5m)"),
            std::set<std::string>({"a_total", "b"}));
  EXPECT_EQ(MetricNamesIn(R"(musc_queue_depth / musc_queue_capacity > bool 0.8)"),
            std::set<std::string>({"musc_queue_depth", "musc_queue_capacity"}));
}

}  // namespace
}  // namespace musc::testing
