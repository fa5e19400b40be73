// Line mode through a real musc-server: ScoreImage's errors, the warm-up batch, scores equal to
// batch MuSc over bank + image, the bank's ring, keeping anomalous parts out of the bank,
// label-free decisions, the metrics, and `musc-client line` replaying a folder.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/server/run_command.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"
#include "tests/test_support.h"

namespace musc::testing {
namespace {

constexpr char kProducts[] = R"(
products:
  - name: line
    backbone: {model: vit-tiny-random, seed: 3, input_size: 64}
    scoring: {degrees: [1, 3], rscin_windows: []}
    line: {bank_size: 6, warmup_images: 5}
    decision: {image: {policy: robust, k: 3}, window: 50, min_scores: 4}
  - name: batch
    backbone: {model: vit-tiny-random, seed: 3, input_size: 64}
    scoring: {degrees: [1, 3], rscin_windows: []}
    batch: {min_images: 2}
  - name: strict
    backbone: {model: vit-tiny-random, seed: 3, input_size: 64}
    scoring: {degrees: [1, 3], rscin_windows: []}
    line: {bank_size: 8, warmup_images: 3, admit_anomalous: false}
    decision: {image: {policy: fixed, threshold: 0.0}}
)";

EncodedImage Image(int seed, bool defect = false) {
  return {absl::StrCat("part-", seed), TexturePng(static_cast<uint64_t>(seed), defect), {}};
}

class LineModeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = ServerProcess::Start(kProducts).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    client_ = server_->Connect();
  }

  // Sends images concurrently (as a line's warm-up requires) and returns the answers in order.
  std::vector<v1::ScoreImageResponse> ScoreTogether(const std::string& product,
                                                    const std::vector<EncodedImage>& images) {
    std::vector<std::future<absl::StatusOr<v1::ScoreImageResponse>>> calls;
    for (const EncodedImage& image : images) {
      calls.push_back(std::async(std::launch::async, [this, product, image] {
        return client_->ScoreImage(product, image);
      }));
    }
    std::vector<v1::ScoreImageResponse> out;
    for (auto& call : calls) {
      absl::StatusOr<v1::ScoreImageResponse> r = call.get();
      EXPECT_TRUE(r.ok()) << r.status();
      out.push_back(r.ok() ? *r : v1::ScoreImageResponse());
    }
    return out;
  }

  static ServerProcess* server_;
  std::unique_ptr<MuscClient> client_;
};
ServerProcess* LineModeTest::server_ = nullptr;

TEST_F(LineModeTest, RefusesWhatItCannotScoreWithClearStatuses) {
  EXPECT_EQ(client_->ScoreImage("batch", Image(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(MessageHas(client_->ScoreImage("batch", Image(1)).status(), "no line mode"));
  EXPECT_EQ(client_->ScoreImage("nope", Image(1)).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<v1::ScoreImageResponse> corrupt =
      client_->ScoreImage("line", {"broken-7", "not an image at all", {}});
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(corrupt.status(), "broken-7"));
  EXPECT_EQ(client_->ScoreImage("line", {"", TexturePng(1, false), {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Products say whether they run a line.
  absl::StatusOr<v1::Product> line = client_->GetProduct("line");
  ASSERT_TRUE(line.ok());
  EXPECT_TRUE(line->has_line());
  EXPECT_EQ(line->line().bank_size(), 6u);
  EXPECT_EQ(line->line().warmup_images(), 5u);
  EXPECT_EQ(line->decision_policy(), "robust");
  EXPECT_FALSE(client_->GetProduct("batch")->has_line());
}

TEST_F(LineModeTest, WarmUpBatchThenEachPartAtOnceWithBatchMuScScores) {
  std::vector<EncodedImage> first;
  for (int k = 0; k < 5; ++k) first.push_back(Image(100 + k));
  const std::vector<v1::ScoreImageResponse> warm = ScoreTogether("line", first);
  std::set<uint32_t> sequence;
  for (const v1::ScoreImageResponse& r : warm) {
    EXPECT_TRUE(r.line().warmup());
    EXPECT_TRUE(r.line().admitted());
    EXPECT_EQ(r.line().compared_images(), 4u);
    EXPECT_EQ(r.line().bank_images(), 5u);
    EXPECT_GT(r.result().raw_score(), 0);
    EXPECT_EQ(r.result().final_score(), r.result().raw_score());  // No RsCIN in a line.
    EXPECT_TRUE(r.result().map().data().size() > 0);
    sequence.insert(r.result().index());
  }
  EXPECT_EQ(sequence, std::set<uint32_t>({0, 1, 2, 3, 4}));

  // The next part is scored against the 5 bank images at once: the same score as in a batch of
  // those 5 plus itself.
  const EncodedImage next = Image(200, /*defect=*/true);
  absl::StatusOr<v1::ScoreImageResponse> line = client_->ScoreImage("line", next);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_FALSE(line->line().warmup());
  EXPECT_EQ(line->line().compared_images(), 5u);
  EXPECT_EQ(line->line().bank_images(), 6u);
  EXPECT_EQ(line->result().index(), 5u);
  EXPECT_EQ(line->result().client_image_id(), "part-200");

  v1::CreateSessionRequest create;
  create.set_product("batch");
  absl::StatusOr<v1::Session> session = client_->CreateSession(create);
  ASSERT_TRUE(session.ok());
  std::vector<EncodedImage> batch = first;
  batch.push_back(next);
  ASSERT_TRUE(client_->AddImages(session->id(), batch).ok());
  ASSERT_TRUE(client_->SealSession(session->id()).ok());
  std::map<std::string, float> batch_raw;
  ASSERT_TRUE(client_
                  ->StreamResults(session->id(), {},
                                  [&](const v1::ResultEvent& e) {
                                    if (e.has_result()) {
                                      batch_raw[e.result().client_image_id()] =
                                          e.result().raw_score();
                                    }
                                  })
                  .ok());
  ASSERT_EQ(batch_raw.size(), 6u);
  EXPECT_NEAR(line->result().raw_score(), batch_raw["part-200"], 1e-4);
  // The warm-up batch is MuSc over the first 5: compare with a batch of exactly those.
  create.set_product("batch");
  absl::StatusOr<v1::Session> warm_session = client_->CreateSession(create);
  ASSERT_TRUE(client_->AddImages(warm_session->id(), first).ok());
  ASSERT_TRUE(client_->SealSession(warm_session->id()).ok());
  std::map<std::string, float> warm_raw;
  ASSERT_TRUE(client_
                  ->StreamResults(warm_session->id(), {},
                                  [&](const v1::ResultEvent& e) {
                                    if (e.has_result()) {
                                      warm_raw[e.result().client_image_id()] =
                                          e.result().raw_score();
                                    }
                                  })
                  .ok());
  for (const v1::ScoreImageResponse& r : warm) {
    EXPECT_NEAR(r.result().raw_score(), warm_raw[r.result().client_image_id()], 1e-4);
  }

  // The bank keeps the 6 most recent; robust decisions start once 4 scores are known.
  for (int k = 0; k < 3; ++k) {
    absl::StatusOr<v1::ScoreImageResponse> r = client_->ScoreImage("line", Image(300 + k));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->line().bank_images(), 6u);
    EXPECT_EQ(r->line().compared_images(), 6u);
    EXPECT_TRUE(r->result().has_decision());
    EXPECT_TRUE(r->result().decision().decided());
    EXPECT_EQ(r->result().decision().policy(), "robust");
    EXPECT_GE(r->result().decision().scores_used(), 4u);
    EXPECT_EQ(r->result().decision().is_anomalous(),
              r->result().raw_score() > r->result().decision().threshold());
  }

  const std::string metrics = server_->ScrapeMetrics();
  EXPECT_NE(metrics.find("musc_line_images_total{product=\"line\"} 9"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("musc_line_bank_images{product=\"line\"} 6"), std::string::npos);
}

TEST_F(LineModeTest, PartsJudgedAnomalousStayOutOfTheBankWhenAsked) {
  std::vector<EncodedImage> first;
  for (int k = 0; k < 3; ++k) first.push_back(Image(400 + k));
  for (const v1::ScoreImageResponse& r : ScoreTogether("strict", first)) {
    EXPECT_TRUE(r.line().admitted());  // Warm-up images always join.
    EXPECT_EQ(r.result().decision().policy(), "fixed");
    EXPECT_TRUE(r.result().decision().is_anomalous());  // Threshold 0: every part.
  }
  for (int k = 0; k < 2; ++k) {
    absl::StatusOr<v1::ScoreImageResponse> r = client_->ScoreImage("strict", Image(500 + k, true));
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->result().decision().is_anomalous());
    EXPECT_FALSE(r->line().admitted());
    EXPECT_EQ(r->line().bank_images(), 3u);
    EXPECT_EQ(r->result().decision().threshold(), 0.0f);
  }
}

TEST_F(LineModeTest, ClientReplaysAFolderAsALine) {
  ScratchDir dir;
  for (int k = 0; k < 9; ++k) {
    dir.Write(absl::StrCat("p", k, ".png"), TexturePng(600 + static_cast<uint64_t>(k), k == 7));
  }
  // Whether or not the "line" product has warmed up already, every image gets an answer.
  const CommandResult run =
      RunCommand(absl::StrCat(MUSC_CLIENT_BIN, " --server ", server_->address(),
                              " line --product line --rate 20 --images ", dir.path()));
  const std::string& out = run.output;
  EXPECT_EQ(run.exit_code, 0) << out;
  for (int k = 0; k < 9; ++k) EXPECT_NE(out.find(absl::StrCat("p", k, ".png")), std::string::npos);
  EXPECT_NE(out.find("9 images in"), std::string::npos) << out;
  EXPECT_NE(out.find("p50"), std::string::npos) << out;
}

TEST(LineModeRestartTest, ARestartKeepsTheBankAndTheDecisionWindow) {
  ScratchDir spool;
  const std::vector<std::string> flags = {"--spool_dir=" + spool.path()};
  float probe_before = 0;
  uint32_t next_index = 0;
  {
    std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts, flags);
    ASSERT_NE(server, nullptr);
    std::unique_ptr<MuscClient> client = server->Connect();
    std::vector<std::future<absl::StatusOr<v1::ScoreImageResponse>>> warm;
    for (int k = 0; k < 3; ++k) {
      warm.push_back(std::async(std::launch::async, [&client, k] {
        return client->ScoreImage("strict", Image(700 + k));
      }));
    }
    for (auto& w : warm) ASSERT_TRUE(w.get().ok());
    // Threshold 0: the probe is judged anomalous and stays out of the bank, which stays the 3.
    absl::StatusOr<v1::ScoreImageResponse> probe = client->ScoreImage("strict", Image(799, true));
    ASSERT_TRUE(probe.ok()) << probe.status();
    EXPECT_FALSE(probe->line().admitted());
    probe_before = probe->result().raw_score();
    next_index = probe->result().index() + 1;
  }  // SIGKILL: no orderly shutdown.
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts, flags);
  ASSERT_NE(server, nullptr);
  EXPECT_NE(server->ReadLog().find("restored a bank of 3 image(s)"), std::string::npos)
      << server->ReadLog();
  std::unique_ptr<MuscClient> client = server->Connect();
  // No warm-up after the restart: the probe is scored at once against the same bank.
  absl::StatusOr<v1::ScoreImageResponse> probe = client->ScoreImage("strict", Image(799, true));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->line().warmup());
  EXPECT_EQ(probe->line().compared_images(), 3u);
  EXPECT_EQ(probe->result().index(), next_index);
  EXPECT_NEAR(probe->result().raw_score(), probe_before, 1e-5);
}

}  // namespace
}  // namespace musc::testing
