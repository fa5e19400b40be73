// LineRunner in process, on the tiny random ViT: the warm-up batch, then one answer per image
// against a rolling bank, decisions by the product's policy, bad images refused, and a line
// restored from its state directory by a new runner.
#include "server/line/line_runner.h"

#include <gtest/gtest.h>

#include <future>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/engine_pool.h"
#include "tests/server/in_process_fixture.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using Answer = absl::StatusOr<v1::ScoreImageResponse>;
using testing::MessageHas;

std::string Products() {
  const std::string backbone = testing::kTinyBackbone;
  return absl::StrCat(R"(
products:
  - name: line
    backbone: )",
                      backbone, R"(
    line: {bank_size: 4, warmup_images: 3}
    decision: {image: {policy: robust, k: 3}, min_scores: 3}
  - name: strict
    backbone: )",
                      backbone, R"(
    line: {bank_size: 4, warmup_images: 2, admit_anomalous: false}
    decision: {image: {policy: fixed, threshold: -1000}}
  - name: plain
    backbone: )",
                      backbone, R"(
    line: {bank_size: 3, warmup_images: 2}
)");
}

class LineRunnerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    products_ = new std::vector<ProductConfig>(testing::ProductsFromYaml(Products()));
    absl::StatusOr<std::unique_ptr<EnginePool>> pool = EnginePool::Load(*products_, {});
    ASSERT_TRUE(pool.ok()) << pool.status();
    engines_ = pool->release();
  }
  static void TearDownTestSuite() {
    delete engines_;
    delete products_;
  }

  static std::unique_ptr<LineRunner> NewRunner(const std::string& product,
                                               const std::string& state_dir = "") {
    const ProductConfig* config = nullptr;
    for (const ProductConfig& p : *products_) {
      if (p.name == product) config = &p;
    }
    EXPECT_NE(config, nullptr) << product;
    if (config == nullptr) return nullptr;
    absl::StatusOr<std::unique_ptr<LineRunner>> runner =
        LineRunner::Create(config, engines_->ForProduct(product), nullptr, state_dir);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? *std::move(runner) : nullptr;
  }

  static std::future<Answer> Send(LineRunner& runner, cv::Mat pixels, std::string encoded,
                                  const std::string& client_id) {
    auto answer = std::make_shared<std::promise<Answer>>();
    std::future<Answer> future = answer->get_future();
    LineRequest request;
    request.client_id = client_id;
    request.pixels = std::move(pixels);
    request.encoded = std::move(encoded);
    request.metadata = {{"station", "4"}};
    request.done = [answer](Answer a) { answer->set_value(std::move(a)); };
    runner.Submit(std::move(request));
    return future;
  }
  static std::future<Answer> SendTexture(LineRunner& runner, uint64_t seed) {
    return Send(runner, testing::DecodedTexture(seed), testing::TexturePngFor(seed),
                absl::StrCat("part-", seed));
  }
  // The answer, or DEADLINE_EXCEEDED if none came (the generous bound only catches a hang).
  static Answer Await(std::future<Answer>& future) {
    if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      return absl::DeadlineExceededError("no answer from the line");
    }
    return future.get();
  }

  static std::vector<ProductConfig>* products_;
  static EnginePool* engines_;
};

std::vector<ProductConfig>* LineRunnerTest::products_ = nullptr;
EnginePool* LineRunnerTest::engines_ = nullptr;

TEST_F(LineRunnerTest, WarmsUpAsOneBatchThenScoresEachImageAgainstARollingBank) {
  std::unique_ptr<LineRunner> runner = NewRunner("line");
  ASSERT_NE(runner, nullptr);
  EXPECT_FALSE(runner->keeps_images());

  // The first warmup_images (3) wait for each other and are scored together: each against the
  // other two, with the whole warm-up in the bank.
  std::vector<std::future<Answer>> warmup;
  for (uint64_t seed = 1; seed <= 3; ++seed) warmup.push_back(SendTexture(*runner, seed));
  for (uint64_t k = 0; k < 3; ++k) {
    Answer answer = Await(warmup[k]);
    ASSERT_TRUE(answer.ok()) << answer.status();
    const v1::ImageResult& result = answer->result();
    EXPECT_EQ(result.index(), k);
    EXPECT_EQ(result.client_image_id(), absl::StrCat("part-", k + 1));
    EXPECT_EQ(result.metadata().at("station"), "4");
    EXPECT_EQ(result.final_score(), result.raw_score()) << "no RsCIN in a line";
    EXPECT_TRUE(result.has_map());
    const v1::LineState& line = answer->line();
    EXPECT_TRUE(line.warmup());
    EXPECT_TRUE(line.admitted());
    EXPECT_EQ(line.compared_images(), 2u);
    EXPECT_EQ(line.bank_images(), 3u);
    // Decided from the warm-up batch itself.
    EXPECT_EQ(result.decision().policy(), "robust");
    EXPECT_TRUE(result.decision().decided());
    EXPECT_EQ(result.decision().scores_used(), 3u);
  }

  // Then one answer per image: against the whole bank, which grows to bank_size (4) and then
  // rolls (the oldest leaves as each new image joins).
  struct Expected {
    uint32_t compared, bank, scores_used;
  };
  const Expected expected[] = {{3, 4, 3}, {4, 4, 4}, {4, 4, 5}};
  for (uint64_t k = 0; k < 3; ++k) {
    std::future<Answer> future = SendTexture(*runner, 10 + k);
    Answer answer = Await(future);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->result().index(), 3 + k);
    EXPECT_FALSE(answer->line().warmup());
    EXPECT_TRUE(answer->line().admitted());
    EXPECT_EQ(answer->line().compared_images(), expected[k].compared) << "image " << 3 + k;
    EXPECT_EQ(answer->line().bank_images(), expected[k].bank) << "image " << 3 + k;
    // Judged against the window of the line's earlier scores.
    EXPECT_TRUE(answer->result().decision().decided());
    EXPECT_EQ(answer->result().decision().scores_used(), expected[k].scores_used);
  }
}

TEST_F(LineRunnerTest, DecisionsFollowTheProductsPolicy) {
  // strict: a fixed threshold every score exceeds, and flagged parts stay out of the bank.
  std::unique_ptr<LineRunner> strict = NewRunner("strict");
  ASSERT_NE(strict, nullptr);
  std::vector<std::future<Answer>> futures;
  for (uint64_t seed = 1; seed <= 4; ++seed) futures.push_back(SendTexture(*strict, seed));
  for (size_t k = 0; k < futures.size(); ++k) {
    Answer answer = Await(futures[k]);
    ASSERT_TRUE(answer.ok()) << answer.status();
    const v1::Decision& decision = answer->result().decision();
    EXPECT_EQ(decision.policy(), "fixed");
    EXPECT_TRUE(decision.decided());
    EXPECT_TRUE(decision.is_anomalous());
    EXPECT_EQ(decision.threshold(), -1000.0f);
    const bool warmup = k < 2;
    EXPECT_EQ(answer->line().warmup(), warmup);
    EXPECT_EQ(answer->line().admitted(), warmup) << "warm-up images always join the bank";
    EXPECT_EQ(answer->line().bank_images(), 2u) << "image " << k;
    EXPECT_EQ(answer->line().compared_images(), warmup ? 1u : 2u);
  }

  // plain: no policy, no decision in the answer.
  std::unique_ptr<LineRunner> plain = NewRunner("plain");
  ASSERT_NE(plain, nullptr);
  futures.clear();
  for (uint64_t seed = 1; seed <= 3; ++seed) futures.push_back(SendTexture(*plain, seed));
  for (std::future<Answer>& future : futures) {
    Answer answer = Await(future);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_FALSE(answer->result().has_decision());
    EXPECT_TRUE(answer->line().admitted());
  }
}

TEST_F(LineRunnerTest, RefusesABadImageWithAClearStatusAndCarriesOn) {
  std::unique_ptr<LineRunner> runner = NewRunner("plain");
  ASSERT_NE(runner, nullptr);
  std::future<Answer> first = SendTexture(*runner, 1);
  // Two channels: neither grey nor RGB. Refused at once, even during the warm-up.
  std::future<Answer> two_channels =
      Send(*runner, cv::Mat(80, 96, CV_8UC2, cv::Scalar(10, 20)), "", "two-channels");
  std::future<Answer> empty = Send(*runner, cv::Mat(), "", "empty");
  std::future<Answer> second = SendTexture(*runner, 2);

  Answer refused = Await(two_channels);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(refused.status(), "2 channels"));
  Answer nothing = Await(empty);
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(nothing.status(), "no pixel data"));
  // The bad images took no place in the warm-up, the bank or the numbering.
  for (std::future<Answer>* future : {&first, &second}) {
    Answer answer = Await(*future);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_TRUE(answer->line().warmup());
    EXPECT_EQ(answer->line().compared_images(), 1u);
    EXPECT_EQ(answer->line().bank_images(), 2u);
  }

  std::future<Answer> late_bad = Send(*runner, cv::Mat(8, 8, CV_8UC2), "", "late");
  EXPECT_EQ(Await(late_bad).status().code(), absl::StatusCode::kInvalidArgument);
  std::future<Answer> third = SendTexture(*runner, 3);
  Answer answer = Await(third);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->result().index(), 2u);
  EXPECT_EQ(answer->line().compared_images(), 2u);
  EXPECT_EQ(answer->line().bank_images(), 3u);
}

TEST_F(LineRunnerTest, ANewRunnerOnTheSameStateDirectoryContinuesTheLine) {
  // The same images through a line that never stops (in memory: where the line keeps its state
  // does not change its scores) and through one restarted before the probe: the probe is answered
  // at once, against the same bank and decision window, numbered on. Five images: the bank (4)
  // has rolled once, so the restart must also have dropped the image that left it.
  constexpr uint64_t kImages = 5;
  Answer continuous;
  {
    std::unique_ptr<LineRunner> runner = NewRunner("line");
    ASSERT_NE(runner, nullptr);
    std::vector<std::future<Answer>> futures;
    for (uint64_t seed = 1; seed <= kImages; ++seed) futures.push_back(SendTexture(*runner, seed));
    for (std::future<Answer>& f : futures) ASSERT_TRUE(Await(f).ok());
    std::future<Answer> probe = SendTexture(*runner, 99);
    continuous = Await(probe);
    ASSERT_TRUE(continuous.ok()) << continuous.status();
  }
  testing::ScratchDir state_dir;
  {
    std::unique_ptr<LineRunner> runner = NewRunner("line", state_dir.path());
    ASSERT_NE(runner, nullptr);
    EXPECT_TRUE(runner->keeps_images());
    std::vector<std::future<Answer>> futures;
    for (uint64_t seed = 1; seed <= kImages; ++seed) futures.push_back(SendTexture(*runner, seed));
    for (std::future<Answer>& f : futures) ASSERT_TRUE(Await(f).ok());
  }
  std::unique_ptr<LineRunner> restored = NewRunner("line", state_dir.path());
  ASSERT_NE(restored, nullptr);
  std::future<Answer> probe = SendTexture(*restored, 99);
  Answer answer = Await(probe);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_FALSE(answer->line().warmup()) << "a restored line needs no warm-up";
  EXPECT_EQ(answer->line().compared_images(), 4u);
  EXPECT_EQ(answer->line().bank_images(), 4u);
  EXPECT_EQ(answer->result().index(), continuous->result().index()) << "numbering continues";
  EXPECT_EQ(answer->result().index(), kImages);
  // The same bank images, but restored oldest first where the running line's ring has rotated:
  // the similarity sums run in another order, so equal to float rounding, not bit for bit.
  const float expected_score = continuous->result().raw_score();
  EXPECT_NEAR(answer->result().raw_score(), expected_score, 1e-3 * expected_score);
  const v1::Decision& restored_decision = answer->result().decision();
  const v1::Decision& continuous_decision = continuous->result().decision();
  EXPECT_TRUE(restored_decision.decided());
  EXPECT_EQ(restored_decision.scores_used(), continuous_decision.scores_used());
  EXPECT_EQ(restored_decision.threshold(), continuous_decision.threshold());
  EXPECT_EQ(restored_decision.is_anomalous(), continuous_decision.is_anomalous());
}

}  // namespace
}  // namespace musc
