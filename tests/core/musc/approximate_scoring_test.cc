// The large-batch options of scoring (issue 8): approximate MSM against M spread neighbours, and
// half-precision token storage with fp32 arithmetic. The approximate mode must equal exact MSM
// when M = N−1 and equal a naive computation over the chosen neighbours otherwise; half-precision
// tokens must change scores only by their rounding.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "core/musc/mutual_scoring.h"
#include "core/musc_engine.h"
#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

using naive::MaxAbsDiff;
using naive::UnitRows;

// Naive approximate MSM in float64: for each (i, p), the distances to the chosen neighbours'
// nearest patches, sorted, mean of ranks [floor(low·M), floor(high·M)).
at::Tensor NaiveApproximate(const at::Tensor& z, int64_t m, double low, double high) {
  const int64_t n = z.size(0), l = z.size(1);
  const std::vector<int64_t> offsets = ApproximateNeighbourOffsets(n, m);
  const at::Tensor zd = z.to(at::kDouble);
  at::Tensor out = at::zeros({n, l}, at::kDouble);
  const int64_t begin = static_cast<int64_t>(low * static_cast<double>(m));
  int64_t end = static_cast<int64_t>(high * static_cast<double>(m));
  if (end <= begin) end = begin + 1;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<std::vector<double>> per_patch(static_cast<size_t>(l));
    for (int64_t o : offsets) {
      const at::Tensor sims = at::matmul(zd[i], zd[(i + o) % n].t());  // L×L
      const at::Tensor best = std::get<0>(sims.max(1));
      for (int64_t p = 0; p < l; ++p) {
        per_patch[static_cast<size_t>(p)].push_back(
            std::sqrt(std::max(0.0, 2.0 - 2.0 * best[p].item<double>())));
      }
    }
    for (int64_t p = 0; p < l; ++p) {
      std::vector<double>& d = per_patch[static_cast<size_t>(p)];
      std::sort(d.begin(), d.end());
      double sum = 0;
      for (int64_t k = begin; k < end; ++k) sum += d[static_cast<size_t>(k)];
      out[i][p] = sum / static_cast<double>(end - begin);
    }
  }
  return out;
}

TEST(ApproximateNeighboursTest, OffsetsAreDistinctSpreadAndNeverSelf) {
  for (int64_t n : {2, 5, 17, 64, 129}) {
    for (int64_t m = 1; m <= n - 1; m += std::max<int64_t>(1, n / 7)) {
      const std::vector<int64_t> offsets = ApproximateNeighbourOffsets(n, m);
      ASSERT_EQ(static_cast<int64_t>(offsets.size()), m);
      EXPECT_EQ(offsets.front(), 1);
      const std::set<int64_t> unique(offsets.begin(), offsets.end());
      EXPECT_EQ(static_cast<int64_t>(unique.size()), m) << "n=" << n << " m=" << m;
      for (int64_t o : offsets) {
        EXPECT_GE(o, 1);
        EXPECT_LE(o, n - 1);
      }
    }
    // M = N−1: every other image, in order.
    const std::vector<int64_t> all = ApproximateNeighbourOffsets(n, n - 1);
    for (int64_t k = 0; k < n - 1; ++k) EXPECT_EQ(all[static_cast<size_t>(k)], k + 1);
  }
  EXPECT_TRUE(ApproximateNeighbourOffsets(10, 0).empty());
  EXPECT_THROW(ApproximateNeighbourOffsets(10, 10), c10::Error);
}

TEST(ApproximateScoringTest, AllOtherImagesEqualsExact) {
  c10::InferenceMode guard;
  const at::Tensor z = UnitRows(12, 20, 16, 7);
  MutualScoringOptions exact;
  const at::Tensor expected = MutualScores(z, exact);
  for (int64_t budget : {int64_t{512} << 20, int64_t{4} << 10}) {  // One tile; one pair a tile.
    MutualScoringOptions approximate = exact;
    approximate.approximate_neighbours = 11;
    approximate.block_budget_bytes = budget;
    EXPECT_LT(MaxAbsDiff(MutualScores(z, approximate), expected), 1e-5) << "budget " << budget;
  }
}

TEST(ApproximateScoringTest, FewerNeighboursMatchNaiveDefinition) {
  c10::InferenceMode guard;
  const at::Tensor z = UnitRows(11, 9, 8, 3);
  for (int64_t m : {1, 3, 4, 7}) {
    MutualScoringOptions options;
    options.approximate_neighbours = m;
    const at::Tensor got = MutualScores(z, options);
    EXPECT_LT(MaxAbsDiff(got, NaiveApproximate(z, m, 0.0, 0.3)), 1e-5) << "M=" << m;
  }
  MutualScoringOptions options;
  options.approximate_neighbours = 8;
  options.interval_low = 0.25;
  options.interval_high = 0.75;
  EXPECT_LT(MaxAbsDiff(MutualScores(z, options), NaiveApproximate(z, 8, 0.25, 0.75)), 1e-5);
}

TEST(HalfTokenScoringTest, HalfPrecisionZChangesScoresOnlyByRounding) {
  c10::InferenceMode guard;
  const at::Tensor z = UnitRows(9, 25, 32, 11);
  for (bool approximate : {false, true}) {
    MutualScoringOptions options;
    options.approximate_neighbours = approximate ? 4 : 0;
    const at::Tensor reference = MutualScores(z, options);
    // Exact for the rounded tokens: widening is lossless, so only the rounding of Z matters.
    for (at::ScalarType type : {at::kBFloat16, at::kHalf}) {
      const at::Tensor zh = z.to(type).contiguous();
      EXPECT_LT(MaxAbsDiff(MutualScores(zh, options), MutualScores(zh.to(at::kFloat), options)),
                1e-6);
      // bf16 keeps 8 mantissa bits: |Δ⟨a,b⟩| ≲ 2⁻⁸, distances move by far less than the scores.
      EXPECT_LT(MaxAbsDiff(MutualScores(zh, options), reference), 2e-2);
    }
  }
}

// Noise images, one with a bright square (engine-level checks of the options' plumbing).
struct Images {
  std::vector<std::vector<uint8_t>> pixels;
  std::vector<ImageView> views;
};

Images NoiseImages(int64_t n, int64_t size, int64_t defect) {
  Images images;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> value(90, 140);
  images.pixels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    std::vector<uint8_t>& px = images.pixels[static_cast<size_t>(i)];
    px.resize(static_cast<size_t>(size * size * 3));
    for (uint8_t& v : px) v = static_cast<uint8_t>(value(rng));
    if (i == defect) {
      for (int64_t y = 20; y < 36; ++y) {
        for (int64_t x = 20; x < 36; ++x) {
          for (int64_t ch = 0; ch < 3; ++ch) px[static_cast<size_t>((y * size + x) * 3 + ch)] = 250;
        }
      }
    }
  }
  for (auto& px : images.pixels) images.views.push_back({px.data(), size, size, 3});
  return images;
}

BatchScores ScoreWith(MuscEngine& engine, const ScoringOptions& scoring, const Images& images) {
  auto batch = engine.NewBatch(scoring);
  EXPECT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE((*batch)->Add(images.views).ok());
  absl::StatusOr<BatchScores> scores = (*batch)->Score();
  EXPECT_TRUE(scores.ok()) << scores.status();
  return *std::move(scores);
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t k = 0; k < a.size() && k < b.size(); ++k) {
    d = std::max(d, static_cast<double>(std::fabs(a[k] - b[k])));
  }
  return d;
}

TEST(LargeBatchOptionsTest, ValidationNamesTheBadField) {
  ScoringOptions o;
  o.approximate_neighbours = -1;
  EXPECT_EQ(ValidateScoringOptions(o).code(), absl::StatusCode::kInvalidArgument);
  o = ScoringOptions();
  EXPECT_EQ(ParseNumericType("int8").status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* ok : {"fp32", "bf16", "fp16"}) {
    absl::StatusOr<NumericType> type = ParseNumericType(ok);
    ASSERT_TRUE(type.ok()) << ok;
    o.token_dtype = *type;
    EXPECT_TRUE(ValidateScoringOptions(o).ok()) << ok;
  }
}

TEST(LargeBatchOptionsTest, EngineApproximateAndHalfTokensStayCloseToExact) {
  EngineOptions options;
  options.intra_op_threads = 2;
  absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const Images images = NoiseImages(12, 64, 4);
  const BatchScores exact = ScoreWith(**engine, ScoringOptions(), images);

  ScoringOptions all_others;
  all_others.approximate_neighbours = 50;  // ≥ N−1: the exact path.
  EXPECT_EQ(MaxAbsDiff(ScoreWith(**engine, all_others, images).patch_scores, exact.patch_scores),
            0.0);

  ScoringOptions approximate;
  approximate.approximate_neighbours = 6;
  const BatchScores approx = ScoreWith(**engine, approximate, images);
  EXPECT_FALSE(approx.small_batch);  // 30 % of 6 neighbours is one rank: no widening needed.
  ASSERT_EQ(approx.patch_scores.size(), exact.patch_scores.size());
  for (float v : approx.patch_scores) EXPECT_TRUE(std::isfinite(v));
  // Fewer comparisons, same scale: the interval mean over 6 images stays near the one over 11.
  EXPECT_LT(MaxAbsDiff(approx.patch_scores, exact.patch_scores), 0.25);

  for (NumericType dtype : {NumericType::kBFloat16, NumericType::kFloat16}) {
    ScoringOptions half;
    half.token_dtype = dtype;
    const BatchScores h = ScoreWith(**engine, half, images);
    EXPECT_LT(MaxAbsDiff(h.patch_scores, exact.patch_scores), 2e-2) << NumericTypeName(dtype);
  }
}

}  // namespace
}  // namespace musc
