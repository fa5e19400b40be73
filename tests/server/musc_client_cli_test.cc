// musc-client as users run it: the real binary against a real server on loopback.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/server/run_command.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"
#include "tests/test_support.h"

namespace musc::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kProducts[] = R"(
products:
  - name: widget
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
    scoring: {degrees: [1, 3]}
    batch: {min_images: 5, max_images: 100}
)";

struct ClientRun {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

ClientRun RunClient(const std::string& args) {
  CommandResult r = RunCommand(absl::StrCat(MUSC_CLIENT_BIN, " ", args));
  return {r.exit_code, std::move(r.output)};
}

// An MVTec-layout category: good images and scratched ones with exact masks.
fs::path MakeCategory(const fs::path& root, int good, int defective, int width = 96,
                      int height = 80) {
  const fs::path cat = root / "widget";
  fs::create_directories(cat / "test" / "good");
  fs::create_directories(cat / "test" / "scratch");
  fs::create_directories(cat / "ground_truth" / "scratch");
  for (int i = 0; i < good; ++i) {
    cv::imwrite((cat / "test" / "good" / absl::StrCat(i, ".png")).string(),
                MakeTexture(10 + i, false, width, height));
  }
  for (int i = 0; i < defective; ++i) {
    cv::Mat image = MakeTexture(100 + i, false, width, height);
    cv::Mat mask = cv::Mat::zeros(height, width, CV_8U);
    const cv::Rect spot(10 + 7 * i % 50, 12 + 5 * i % 40, 16, 14);
    image(spot).setTo(cv::Scalar(255, 255, 255));
    mask(spot).setTo(255);
    cv::imwrite((cat / "test" / "scratch" / absl::StrCat(i, ".png")).string(), image);
    cv::imwrite((cat / "ground_truth" / "scratch" / absl::StrCat(i, "_mask.png")).string(), mask);
  }
  return cat;
}

class ClientCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = ServerProcess::Start(kProducts).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    char dir[] = "/tmp/musc-cli-test-XXXXXX";
    root_ = mkdtemp(dir);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string Server() const { return "--server " + server_->address(); }

  static ServerProcess* server_;
  fs::path root_;
};
ServerProcess* ClientCliTest::server_ = nullptr;

// A server that cannot run what its products ask for stops at start with a message naming the
// product and the way out, instead of failing at the first seal.
TEST(ServerStartupTest, DeviceAndGemmTypeMismatchesStopTheServerClearly) {
  musc::testing::ScratchDir dir;
  dir.Write("products.yaml", R"(
products:
  - name: widget
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
  - name: halves
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
    scoring: {gemm_dtype: fp16}
)");
  const std::string base = absl::StrCat(MUSC_SERVER_BIN, " --products=", dir.Path("products.yaml"),
                                        " --listen=127.0.0.1:0 --metrics_listen= ");
  CommandResult r = RunCommand(base);  // The second product shares the CPU engine: refused.
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("product 'halves'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("needs an accelerator"), std::string::npos) << r.output;
  r = RunCommand(base + "--device=tpu");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("device 'tpu'"), std::string::npos) << r.output;
}

TEST_F(ClientCliTest, HealthAndProducts) {
  ClientRun health = RunClient(Server() + " health");
  EXPECT_EQ(health.exit_code, 0) << health.out;
  EXPECT_NE(health.out.find("SERVING"), std::string::npos);
  ClientRun products = RunClient(Server() + " products");
  EXPECT_EQ(products.exit_code, 0) << products.out;
  EXPECT_NE(products.out.find("widget"), std::string::npos);
  EXPECT_NE(products.out.find("msm=exact tokens=fp32 gemm=fp32"), std::string::npos)
      << products.out;
}

TEST_F(ClientCliTest, EvalReportsAllSevenMetricsAsJson) {
  const fs::path cat = MakeCategory(root_, 8, 6);
  ClientRun eval = RunClient(Server() + " eval --product widget --json --data " + cat.string());
  ASSERT_EQ(eval.exit_code, 0) << eval.out;
  const std::vector<std::string> lines = absl::StrSplit(eval.out, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  const nlohmann::json j = nlohmann::json::parse(lines.back());
  for (const char* key : {"image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap",
                          "pixel_f1max", "pro", "n_images", "seconds"}) {
    ASSERT_TRUE(j.contains(key)) << key << " missing in " << lines.back();
  }
  EXPECT_EQ(j["n_images"], 14);
  for (const char* key : {"image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap",
                          "pixel_f1max", "pro"}) {
    EXPECT_GE(j[key].get<double>(), 0.0) << key;
    EXPECT_LE(j[key].get<double>(), 1.0) << key;
  }
  // White squares on a striped texture are easy even for a random tiny ViT's features at the
  // pixel level; the check guards against maps misaligned with masks (which gives ~0.5).
  EXPECT_GT(j["pixel_auroc"].get<double>(), 0.7) << eval.out;
  // Batches of 5 give the same number of images.
  ClientRun batched =
      RunClient(Server() + " eval --product widget --json --batch 7 --data " + cat.string());
  ASSERT_EQ(batched.exit_code, 0) << batched.out;
}

TEST_F(ClientCliTest, BadInputsGiveOneLineReasonsAndNonZeroExit) {
  auto expect_error = [](const ClientRun& run, const std::string& fragment) {
    EXPECT_NE(run.exit_code, 0) << run.out;
    EXPECT_NE(run.out.find(fragment), std::string::npos) << run.out;
    EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '\n'), 1) << run.out;
  };
  expect_error(RunClient(Server() + " eval --product widget --data /nonexistent/dir"),
               "cannot read folder");
  // Mixed sizes in one category.
  const fs::path cat = MakeCategory(root_, 6, 2);
  cv::imwrite((cat / "test" / "good" / "odd.png").string(), MakeTexture(5, false, 64, 64));
  expect_error(RunClient(Server() + " eval --product widget --data " + cat.string()),
               "mixed image sizes");
  fs::remove(cat / "test" / "good" / "odd.png");
  // A mask without its image.
  cv::imwrite((cat / "ground_truth" / "scratch" / "99_mask.png").string(),
              cv::Mat::zeros(80, 96, CV_8U));
  expect_error(RunClient(Server() + " eval --product widget --data " + cat.string()),
               "has no matching test image");
  fs::remove(cat / "ground_truth" / "scratch" / "99_mask.png");
  // A server that is down.
  expect_error(RunClient("--server 127.0.0.1:1 health"), "UNAVAILABLE");
  expect_error(RunClient("--server 127.0.0.1:1 eval --product widget --data " + cat.string()),
               "UNAVAILABLE");
}

TEST_F(ClientCliTest, ScoreWritesOverlaysAndMaps) {
  const fs::path cat = MakeCategory(root_, 5, 2);
  const fs::path out = root_ / "out";
  ClientRun score = RunClient(Server() + " score --quiet --product widget --images " +
                              (cat / "test").string() + " --out " + out.string());
  ASSERT_EQ(score.exit_code, 0) << score.out;
  EXPECT_NE(score.out.find("7 scored, 0 rejected"), std::string::npos) << score.out;
  const cv::Mat overlay = cv::imread((out / "scratch_0_overlay.png").string());
  ASSERT_FALSE(overlay.empty());
  EXPECT_EQ(overlay.cols, 96);
  const cv::Mat map = cv::imread((out / "scratch_0_map.tiff").string(), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(map.empty());
  EXPECT_EQ(map.type(), CV_32FC1);
  ClientRun json = RunClient(Server() +
                             " score --quiet --json --threshold 0.5 --product widget "
                             "--images " +
                             (cat / "test").string());
  ASSERT_EQ(json.exit_code, 0) << json.out;
  const std::vector<std::string> lines = absl::StrSplit(json.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 7u) << json.out;
  const nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_TRUE(first.contains("raw_score") && first.contains("final_score") &&
              first.contains("anomalous"));
}

TEST_F(ClientCliTest, BenchRunsConcurrentSessions) {
  const fs::path cat = MakeCategory(root_, 6, 0);
  ClientRun bench =
      RunClient(Server() + " bench --product widget --sessions 3 --batch 6 --images " +
                (cat / "test").string());
  ASSERT_EQ(bench.exit_code, 0) << bench.out;
  EXPECT_NE(bench.out.find("3 sessions done, 0 failed"), std::string::npos) << bench.out;
  EXPECT_NE(bench.out.find("seal-to-last-result"), std::string::npos);
  EXPECT_NE(bench.out.find("bench: sessions=3 images=18 errors=0"), std::string::npos) << bench.out;

  // For a fixed time: every worker keeps opening sessions; control RPCs are probed meanwhile.
  ClientRun timed =
      RunClient(Server() + " bench --product widget --sessions 2 --batch 5 --duration 2 --images " +
                (cat / "test").string());
  ASSERT_EQ(timed.exit_code, 0) << timed.out;
  EXPECT_NE(timed.out.find("errors=0"), std::string::npos) << timed.out;
  EXPECT_NE(timed.out.find("control RPCs"), std::string::npos) << timed.out;
}

}  // namespace
}  // namespace musc::testing
