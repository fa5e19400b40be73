// Line mode's scorer against batch MuSc on the seeded random tiny ViT: an image scored against a
// bank of M must get exactly the raw score and patch scores it gets in a batch made of the bank
// plus itself (RsCIN off), the warm-up batch of the bank must equal a batch of the same images,
// and the ring must forget the oldest images.
#include "core/line_scorer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "core/musc_engine.h"

namespace musc {
namespace {

constexpr int64_t kSize = 48;

// A periodic texture with noise; every fourth image carries a bright square (a "defect").
std::vector<uint8_t> Picture(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 8.0);
  std::vector<uint8_t> v(static_cast<size_t>(kSize * kSize * 3));
  const bool defect = seed % 4 == 3;
  for (int64_t y = 0; y < kSize; ++y) {
    for (int64_t x = 0; x < kSize; ++x) {
      const double base =
          128 + 50 * std::sin(2 * M_PI * x * 4.0 / kSize) * std::cos(2 * M_PI * y * 3.0 / kSize);
      for (int64_t c = 0; c < 3; ++c) {
        double value = base + noise(rng) + 8 * c;
        if (defect && y >= 10 && y < 20 && x >= 24 && x < 34) value = 250;
        v[static_cast<size_t>((y * kSize + x) * 3 + c)] =
            static_cast<uint8_t>(std::clamp(value, 0.0, 255.0));
      }
    }
  }
  return v;
}

class LineScorerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.backbone.model = "vit-tiny-random";
    options.backbone.seed = 7;
    options.backbone.input_size = 64;
    options.scoring.degrees = {1, 3};
    options.scoring.rscin_windows = {};
    options.intra_op_threads = 2;
    absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    for (uint32_t seed = 0; seed < 12; ++seed) pixels_.push_back(Picture(seed));
  }

  ImageView View(size_t k) const {
    return ImageView{pixels_[k].data(), kSize, kSize, 3, PixelType::kUint8};
  }

  BatchScores Batch(const std::vector<size_t>& images) {
    std::vector<ImageView> views;
    for (size_t k : images) views.push_back(View(k));
    absl::StatusOr<BatchScores> scores = engine_->Score(views);
    EXPECT_TRUE(scores.ok()) << scores.status();
    return *scores;
  }

  std::unique_ptr<LineScorer> Scorer(int64_t bank_size, int64_t chunk = 8) {
    LineOptions options;
    options.bank_size = bank_size;
    options.bank_chunk = chunk;
    options.scoring = engine_->options().scoring;
    absl::StatusOr<std::unique_ptr<LineScorer>> scorer = LineScorer::Create(engine_.get(), options);
    EXPECT_TRUE(scorer.ok()) << scorer.status();
    return *std::move(scorer);
  }

  void AdmitAll(LineScorer& scorer, const std::vector<size_t>& images) {
    for (size_t k : images) {
      auto features = scorer.Extract(View(k));
      ASSERT_TRUE(features.ok()) << features.status();
      ASSERT_TRUE(scorer.Admit(*std::move(features)).ok());
    }
  }

  static void ExpectSameScore(const LineImageScore& line, const BatchScores& batch, size_t i) {
    EXPECT_NEAR(line.raw_score, batch.raw_scores[i], 1e-4 * std::abs(batch.raw_scores[i]) + 1e-6);
    const size_t patches = static_cast<size_t>(batch.grid_h * batch.grid_w);
    ASSERT_EQ(line.patch_scores.size(), patches);
    for (size_t p = 0; p < patches; ++p) {
      EXPECT_NEAR(line.patch_scores[p], batch.patch_scores[i * patches + p], 1e-4) << p;
    }
    ASSERT_EQ(line.map.size(), static_cast<size_t>(batch.map_size * batch.map_size));
    const size_t pixels = line.map.size();
    for (size_t q = 0; q < pixels; q += 97) {
      EXPECT_NEAR(line.map[q], batch.maps[i * pixels + q], 1e-4) << q;
    }
  }

  std::unique_ptr<MuscEngine> engine_;
  std::vector<std::vector<uint8_t>> pixels_;
};

TEST_F(LineScorerTest, ImageAgainstBankEqualsItsScoreInTheBatchOfBankPlusImage) {
  for (int64_t chunk : {1, 3, 8}) {  // Chunking the bank must not change anything.
    std::unique_ptr<LineScorer> scorer = Scorer(/*bank_size=*/8, chunk);
    AdmitAll(*scorer, {0, 1, 2, 3, 4, 5, 6, 7});
    for (size_t query : {8u, 11u}) {  // 11 carries a defect.
      auto features = scorer->Extract(View(query));
      ASSERT_TRUE(features.ok());
      absl::StatusOr<LineImageScore> line = scorer->Score(**features);
      ASSERT_TRUE(line.ok()) << line.status();
      EXPECT_EQ(line->compared_images, 8);
      EXPECT_FALSE(line->small_bank);
      ExpectSameScore(*line, Batch({0, 1, 2, 3, 4, 5, 6, 7, query}), 8);
    }
    EXPECT_EQ(scorer->bank_images(), 8);  // Scoring does not admit.
  }
}

TEST_F(LineScorerTest, DefectiveImageScoresHigherThanNormalOnes) {
  std::unique_ptr<LineScorer> scorer = Scorer(8);
  AdmitAll(*scorer, {0, 1, 2, 4, 5, 6, 8, 9});  // Normal images only.
  auto normal = scorer->Extract(View(10));
  auto defect = scorer->Extract(View(11));
  ASSERT_TRUE(normal.ok() && defect.ok());
  EXPECT_GT(scorer->Score(**defect)->raw_score, scorer->Score(**normal)->raw_score);
}

TEST_F(LineScorerTest, WarmUpBatchOfTheBankEqualsBatchMuSc) {
  std::unique_ptr<LineScorer> scorer = Scorer(6);
  AdmitAll(*scorer, {0, 1, 2, 3, 4});
  absl::StatusOr<std::vector<LineImageScore>> warm = scorer->ScoreBankAsBatch();
  ASSERT_TRUE(warm.ok()) << warm.status();
  ASSERT_EQ(warm->size(), 5u);
  const BatchScores batch = Batch({0, 1, 2, 3, 4});
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ((*warm)[i].compared_images, 4);
    ExpectSameScore((*warm)[i], batch, i);
  }
}

TEST_F(LineScorerTest, FullBankForgetsTheOldestAndKeepsAdmissionOrder) {
  std::unique_ptr<LineScorer> scorer = Scorer(4);
  AdmitAll(*scorer, {0, 1, 2, 3, 4, 5});  // 0 and 1 have left.
  EXPECT_EQ(scorer->bank_images(), 4);
  EXPECT_EQ(scorer->bank_capacity(), 4);
  EXPECT_GT(scorer->bank_bytes(), 0);
  absl::StatusOr<std::vector<LineImageScore>> warm = scorer->ScoreBankAsBatch();
  ASSERT_TRUE(warm.ok());
  const BatchScores batch = Batch({2, 3, 4, 5});
  for (size_t i = 0; i < 4; ++i) ExpectSameScore((*warm)[i], batch, i);
  auto features = scorer->Extract(View(9));
  ASSERT_TRUE(features.ok());
  absl::StatusOr<LineImageScore> line = scorer->Score(**features);
  ASSERT_TRUE(line.ok());
  ExpectSameScore(*line, Batch({2, 3, 4, 5, 9}), 4);
}

TEST_F(LineScorerTest, SmallBankWidensTheIntervalLikeASmallBatch) {
  std::unique_ptr<LineScorer> scorer = Scorer(8);
  AdmitAll(*scorer, {0, 1});
  auto features = scorer->Extract(View(2));
  ASSERT_TRUE(features.ok());
  absl::StatusOr<LineImageScore> line = scorer->Score(**features);
  ASSERT_TRUE(line.ok());
  EXPECT_TRUE(line->small_bank);
  const BatchScores batch = Batch({0, 1, 2});
  EXPECT_TRUE(batch.small_batch);
  ExpectSameScore(*line, batch, 2);
}

TEST_F(LineScorerTest, RefusesWhatCannotBeScored) {
  LineOptions options;
  options.bank_size = 1;
  EXPECT_EQ(LineScorer::Create(engine_.get(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.bank_size = 4;
  options.scoring.degrees = {2};
  EXPECT_EQ(LineScorer::Create(engine_.get(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::unique_ptr<LineScorer> scorer = Scorer(4);
  auto features = scorer->Extract(View(0));
  ASSERT_TRUE(features.ok());
  EXPECT_EQ(scorer->Score(**features).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(scorer->ScoreBankAsBatch().status().code(), absl::StatusCode::kFailedPrecondition);
  ImageView empty;
  EXPECT_EQ(scorer->Extract(empty).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace musc
