// MSM (MUSC-SPEC §4) against the naive float64 definition: explicit ‖a−b‖ for every patch pair,
// min over the other image's patches, full sort of the N−1 distances, mean over the interval's
// ranks. Also the interval table, the budget/stripe invariance, the accumulation contract, and
// the properties that make MuSc work (shared patches score low, outliers score highest).
#include "core/musc/mutual_scoring.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "core/musc/lnamd.h"
#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

constexpr double kTolerance = 1e-5;

using naive::UnitRows;

// A "product": every patch is one of a few prototypes plus a little noise, so every normal patch
// has close matches in every other image. The prototypes live in the first half of the channels
// only, leaving the second half free for outliers.
at::Tensor PrototypeBatch(int64_t n, int64_t l, int64_t c, int64_t prototypes, double noise,
                          uint64_t seed) {
  at::Tensor protos = naive::Randn({prototypes, c}, seed).to(at::kDouble);
  protos.narrow(1, c / 2, c - c / 2).zero_();
  protos = naive::NormaliseRows(protos);
  const at::Tensor choice =
      at::randint(prototypes, {n * l}, at::detail::createCPUGenerator(seed + 1),
                  at::TensorOptions().dtype(at::kLong));
  const at::Tensor rows =
      protos.index_select(0, choice) + noise * naive::Randn({n * l, c}, seed + 2);
  return naive::NormaliseRows(rows).to(at::kFloat).view({n, l, c}).contiguous();
}

// A unit vector in the second half of the channels: far from every PrototypeBatch patch.
at::Tensor OutlierDirection(int64_t c, uint64_t seed) {
  at::Tensor v = naive::Randn({1, c}, seed).to(at::kDouble);
  v.narrow(1, 0, c / 2).zero_();
  return naive::NormaliseRows(v).to(at::kFloat)[0];
}

// ---------------------------------------------------------------------------------------------
// ComputeIntervalRanks

TEST(ComputeIntervalRanksTest, PaperIntervalForBatchesOf2To30) {
  for (int64_t n = 2; n <= 30; ++n) {
    SCOPED_TRACE(testing::Message() << "N = " << n);
    const int64_t k_max = 3 * (n - 1) / 10;  // floor(0.3·(N−1)) in exact integer arithmetic.
    const IntervalRanks ranks = ComputeIntervalRanks(n, 0.0, 0.3);
    if (k_max == 0) {
      EXPECT_LE(n, 4);
      EXPECT_TRUE(ranks.widened);
      EXPECT_EQ(ranks.begin, 0);
      EXPECT_EQ(ranks.end, 1);
    } else {
      EXPECT_GE(n, 5);
      EXPECT_FALSE(ranks.widened);
      EXPECT_EQ(ranks.begin, 0);
      EXPECT_EQ(ranks.end, k_max);
    }
  }
}

TEST(ComputeIntervalRanksTest, ExplicitTable) {
  struct Case {
    int64_t n;
    double low, high;
    int64_t begin, end;
    bool widened;
  };
  const Case cases[] = {
      {5, 0.0, 0.3, 0, 1, false},     {10, 0.0, 0.3, 0, 2, false}, {11, 0.0, 0.3, 0, 3, false},
      {14, 0.0, 0.3, 0, 3, false},    {15, 0.0, 0.3, 0, 4, false}, {21, 0.0, 0.3, 0, 6, false},
      {30, 0.0, 0.3, 0, 8, false},    {11, 0.1, 0.3, 1, 3, false}, {11, 0.3, 0.1, 1, 3, false},
      {10, 0.0, 1.0, 0, 9, false},    {2, 0.0, 1.0, 0, 1, false},  {2, 0.0, 0.3, 0, 1, true},
      {3, 0.0, 0.3, 0, 1, true},      {4, 0.0, 0.3, 0, 1, true},   {10, 0.0, 0.0, 0, 1, true},
      {5, 0.5, 0.6, 2, 3, true},      {5, 1.0, 1.0, 3, 4, true},   {201, 0.0, 0.3, 0, 60, false},
      {201, 0.1, 0.3, 20, 60, false}, {7, 0.5, 1.0, 3, 6, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "N = " << c.n << ", [" << c.low << ", " << c.high << ")");
    const IntervalRanks ranks = ComputeIntervalRanks(c.n, c.low, c.high);
    EXPECT_EQ(ranks.begin, c.begin);
    EXPECT_EQ(ranks.end, c.end);
    EXPECT_EQ(ranks.widened, c.widened);
    const naive::Ranks expected = naive::IntervalRanks(c.n, c.low, c.high);
    EXPECT_EQ(ranks.begin, expected.begin);
    EXPECT_EQ(ranks.end, expected.end);
  }
}

TEST(ComputeIntervalRanksTest, AgreesWithNaiveOnAGrid) {
  for (int64_t n = 2; n <= 40; ++n) {
    for (double low : {0.0, 0.05, 0.1, 0.25, 0.5}) {
      for (double high : {0.0, 0.1, 0.3, 0.5, 0.75, 1.0}) {
        const IntervalRanks ranks = ComputeIntervalRanks(n, low, high);
        const naive::Ranks expected = naive::IntervalRanks(n, low, high);
        ASSERT_EQ(ranks.begin, expected.begin) << n << " " << low << " " << high;
        ASSERT_EQ(ranks.end, expected.end) << n << " " << low << " " << high;
        ASSERT_GE(ranks.begin, 0);
        ASSERT_LE(ranks.end, n - 1);
        ASSERT_LT(ranks.begin, ranks.end);
      }
    }
  }
}

TEST(ComputeIntervalRanksTest, RejectsBadArguments) {
  EXPECT_THROW(ComputeIntervalRanks(1, 0.0, 0.3), c10::Error);
  EXPECT_THROW(ComputeIntervalRanks(0, 0.0, 0.3), c10::Error);
  EXPECT_THROW(ComputeIntervalRanks(10, -0.1, 0.3), c10::Error);
  EXPECT_THROW(ComputeIntervalRanks(10, 0.0, 1.5), c10::Error);
  EXPECT_THROW(ComputeIntervalRanks(10, 0.0, std::numeric_limits<double>::quiet_NaN()), c10::Error);
}

// ---------------------------------------------------------------------------------------------
// MutualScores against the naive definition

struct MsmCase {
  int64_t n, l, c;
  double low, high;
};

class MutualScoresNaiveTest : public ::testing::TestWithParam<MsmCase> {};

TEST_P(MutualScoresNaiveTest, MatchesNaive) {
  // Both implementations: the blocked CPU path and the tensor-op path accelerators take.
  const MsmCase mc = GetParam();
  const at::Tensor z = UnitRows(mc.n, mc.l, mc.c, 1000 + mc.n * 31 + mc.l);
  const at::Tensor expected = naive::MutualScores(z, mc.low, mc.high);
  for (const bool tensor_path : {false, true}) {
    SCOPED_TRACE(tensor_path ? "tensor-op path" : "blocked path");
    MutualScoringOptions options;
    options.interval_low = mc.low;
    options.interval_high = mc.high;
    options.force_tensor_path = tensor_path;
    const at::Tensor got = MutualScores(z, options);
    ASSERT_EQ(got.sizes(), (at::IntArrayRef{mc.n, mc.l}));
    EXPECT_EQ(got.scalar_type(), at::kDouble);
    EXPECT_LT(naive::MaxAbsDiff(got, expected), kTolerance);
  }
}

TEST_P(MutualScoresNaiveTest, ApproximateTensorPathMatchesTheBlockedPath) {
  const MsmCase mc = GetParam();
  if (mc.n < 4) GTEST_SKIP() << "approximate mode needs M < N-1";
  const at::Tensor z = UnitRows(mc.n, mc.l, mc.c, 900 + mc.n);
  MutualScoringOptions blocked;
  blocked.interval_low = mc.low;
  blocked.interval_high = mc.high;
  blocked.approximate_neighbours = mc.n / 2;
  MutualScoringOptions tensor_ops = blocked;
  tensor_ops.force_tensor_path = true;
  EXPECT_LT(naive::MaxAbsDiff(MutualScores(z, tensor_ops), MutualScores(z, blocked)), kTolerance);
}

TEST_P(MutualScoresNaiveTest, MatchesNaiveOnAggregatedFeatures) {
  // Real Z: LNAMD output, whose neighbouring rows are strongly correlated (close minima).
  const MsmCase mc = GetParam();
  const int64_t h = mc.l % 7 == 0 ? 7 : 1;
  const int64_t w = mc.l / h;
  const at::Tensor maps = naive::Randn({mc.n, mc.c, h, w}, 77 + mc.n);
  const at::Tensor z = AggregateNeighbourhood(LayerNormPerImage(maps), 3, h, w);
  MutualScoringOptions options;
  options.interval_low = mc.low;
  options.interval_high = mc.high;
  EXPECT_LT(naive::MaxAbsDiff(MutualScores(z, options), naive::MutualScores(z, mc.low, mc.high)),
            kTolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Batches, MutualScoresNaiveTest,
    ::testing::Values(MsmCase{5, 9, 8, 0.0, 0.3}, MsmCase{6, 16, 16, 0.0, 0.3},
                      MsmCase{7, 16, 32, 0.0, 0.3}, MsmCase{10, 49, 32, 0.0, 0.3},
                      MsmCase{13, 30, 17, 0.0, 0.3}, MsmCase{16, 25, 24, 0.0, 0.3},
                      MsmCase{20, 36, 64, 0.0, 0.3}, MsmCase{12, 21, 16, 0.1, 0.5},
                      MsmCase{9, 14, 12, 0.0, 1.0}, MsmCase{11, 10, 8, 0.5, 0.2},
                      // Widened intervals: N < 5 at 30 %.
                      MsmCase{2, 16, 16, 0.0, 0.3}, MsmCase{3, 20, 8, 0.0, 0.3},
                      MsmCase{4, 35, 32, 0.0, 0.3}, MsmCase{6, 12, 8, 0.0, 0.1}));

TEST(MutualScoresTest, HandComputedTwoImageExample) {
  // Two images, two patches each, in 2-D. Image 0: e1, e2. Image 1: e1, (e1+e2)/√2.
  const double s = 1.0 / std::sqrt(2.0);
  const at::Tensor z =
      at::tensor({1.0, 0.0, 0.0, 1.0, 1.0, 0.0, s, s}, at::kFloat).view({2, 2, 2}).contiguous();
  const at::Tensor got = MutualScores(z, MutualScoringOptions{});
  const double d45 = std::sqrt(2.0 - 2.0 * s);  // ‖e2 − (e1+e2)/√2‖ = ‖e1 − (e1+e2)/√2‖.
  EXPECT_NEAR(got[0][0].item<double>(), 0.0, 1e-3);  // e1 is in image 1: d = 0 (float: ~1e-4).
  EXPECT_NEAR(got[0][1].item<double>(), d45, 1e-6);
  EXPECT_NEAR(got[1][0].item<double>(), 0.0, 1e-3);
  EXPECT_NEAR(got[1][1].item<double>(), d45, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Blocking: the budget changes the layout, never the result.

TEST(MutualScoresBudgetTest, BudgetDoesNotChangeResults) {
  for (const auto& [n, l, c] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {12, 49, 32}, {5, 64, 16}, {3, 20, 8}, {17, 25, 24}}) {
    SCOPED_TRACE(testing::Message() << "N = " << n << ", L = " << l << ", C = " << c);
    const at::Tensor z = UnitRows(n, l, c, 500 + n);
    const int64_t pair_bytes = l * l * 4;
    const int64_t row_bytes = l * n * 4;
    const int64_t budgets[] = {1, pair_bytes + 2 * row_bytes, 3 * pair_bytes + 3 * row_bytes,
                               MutualScoringOptions{}.block_budget_bytes};
    std::vector<at::Tensor> results;
    std::vector<MutualScoringStats> stats;
    for (int64_t budget : budgets) {
      MutualScoringOptions options;
      options.block_budget_bytes = budget;
      at::Tensor accum = at::zeros({n, l}, at::kDouble);
      stats.push_back(AccumulateMutualScores(z, options, 1.0, accum));
      results.push_back(accum);
    }
    EXPECT_GT(stats.front().stripes, 1) << "the tiny budget should need several stripes";
    EXPECT_EQ(stats.back().stripes, 1);
    EXPECT_EQ(stats.back().resident_images, n);
    EXPECT_EQ(stats.back().pair_gemms, n * (n - 1) / 2);
    for (size_t k = 0; k < stats.size(); ++k) {
      const MutualScoringStats& st = stats[k];
      // The documented memory bound: the budget, except that one L×L tile (and, necessarily, the
      // distance rows of one resident image) are always needed.
      if (budgets[k] >= pair_bytes + row_bytes) {
        EXPECT_LE(st.tile_bytes + st.table_bytes, budgets[k]) << "budget " << budgets[k];
      } else {
        EXPECT_LE(st.tile_bytes + st.table_bytes, pair_bytes + row_bytes);
      }
      EXPECT_GE(st.resident_images, 1);
      EXPECT_LE(st.resident_images, n);
      EXPECT_EQ(st.stripes, (n + st.resident_images - 1) / st.resident_images);
      EXPECT_GE(st.pair_gemms, n * (n - 1) / 2);
      EXPECT_LE(st.pair_gemms, n * (n - 1));
    }
    const at::Tensor expected = naive::MutualScores(z, 0.0, 0.3);
    for (size_t k = 0; k < results.size(); ++k) {
      SCOPED_TRACE(testing::Message()
                   << "budget " << budgets[k] << " (" << stats[k].stripes << " stripes)");
      EXPECT_LT(naive::MaxAbsDiff(results[k], results.back()), 1e-6);
      EXPECT_LT(naive::MaxAbsDiff(results[k], expected), kTolerance);
    }
  }
}

TEST(MutualScoresBudgetTest, StackedGroupsAcrossStripesMatchNaive) {
  // Small L: images are stacked as the rows of one GEMM. With a budget that also splits the batch
  // into stripes, groups meet paired partners, unpaired partners on both sides, and pairs inside
  // the group.
  const int64_t n = 40, l = 20, c = 16;
  const at::Tensor z = UnitRows(n, l, c, 4242);
  MutualScoringOptions options;
  options.block_budget_bytes = 64 << 10;
  at::Tensor accum = at::zeros({n, l}, at::kDouble);
  const MutualScoringStats stats = AccumulateMutualScores(z, options, 1.0, accum);
  EXPECT_GT(stats.group_images, 1);
  EXPECT_GT(stats.stripes, 1);
  EXPECT_LE(stats.tile_bytes + stats.table_bytes, options.block_budget_bytes);
  EXPECT_LT(naive::MaxAbsDiff(accum, naive::MutualScores(z, 0.0, 0.3)), kTolerance);
  MutualScoringOptions one_stripe;
  at::Tensor reference = at::zeros({n, l}, at::kDouble);
  EXPECT_GT(AccumulateMutualScores(z, one_stripe, 1.0, reference).group_images, 1);
  EXPECT_LT(naive::MaxAbsDiff(accum, reference), 1e-6);
}

// ---------------------------------------------------------------------------------------------
// AccumulateMutualScores: weight and accumulation

TEST(AccumulateMutualScoresTest, AddsWeightTimesScores) {
  const int64_t n = 8, l = 20;
  const at::Tensor z = UnitRows(n, l, 16, 21);
  const at::Tensor scores = MutualScores(z, MutualScoringOptions{});
  const at::Tensor initial = naive::Randn({n, l}, 22).to(at::kDouble);

  at::Tensor accum = initial.clone();
  AccumulateMutualScores(z, MutualScoringOptions{}, 0.25, accum);
  EXPECT_LT(naive::MaxAbsDiff(accum, initial + 0.25 * scores), 1e-12);
  AccumulateMutualScores(z, MutualScoringOptions{}, 0.5, accum);
  EXPECT_LT(naive::MaxAbsDiff(accum, initial + 0.75 * scores), 1e-12);
  AccumulateMutualScores(z, MutualScoringOptions{}, -0.75, accum);
  EXPECT_LT(naive::MaxAbsDiff(accum, initial), 1e-12);

  at::Tensor untouched = initial.clone();
  AccumulateMutualScores(z, MutualScoringOptions{}, 0.0, untouched);
  EXPECT_TRUE(untouched.equal(initial));
}

TEST(AccumulateMutualScoresTest, MeanOverLayersIsTheWeightedSum) {
  // The engine's use: several Z accumulated with weight 1/count give the mean of their scores.
  const int64_t n = 6, l = 16;
  const at::Tensor z1 = UnitRows(n, l, 8, 1), z2 = UnitRows(n, l, 24, 2), z3 = UnitRows(n, l, 4, 3);
  at::Tensor accum = at::zeros({n, l}, at::kDouble);
  for (const at::Tensor* z : {&z1, &z2, &z3}) {
    AccumulateMutualScores(*z, MutualScoringOptions{}, 1.0 / 3.0, accum);
  }
  const at::Tensor mean = (naive::MutualScores(z1, 0, 0.3) + naive::MutualScores(z2, 0, 0.3) +
                           naive::MutualScores(z3, 0, 0.3)) /
                          3.0;
  EXPECT_LT(naive::MaxAbsDiff(accum, mean), kTolerance);
}

TEST(AccumulateMutualScoresTest, RejectsMalformedInput) {
  const int64_t n = 4, l = 9, c = 8;
  const at::Tensor z = UnitRows(n, l, c, 5);
  at::Tensor accum = at::zeros({n, l}, at::kDouble);
  const MutualScoringOptions options;
  // Wrong rank, dtype, contiguity.
  EXPECT_THROW(AccumulateMutualScores(z.view({n * l, c}), options, 1.0, accum), c10::Error);
  at::Tensor zd = z.to(at::kDouble);
  EXPECT_THROW(AccumulateMutualScores(zd, options, 1.0, accum), c10::Error);
  const at::Tensor zt = z.transpose(0, 1);
  ASSERT_FALSE(zt.is_contiguous());
  at::Tensor accum_t = at::zeros({l, n}, at::kDouble);
  EXPECT_THROW(AccumulateMutualScores(zt, options, 1.0, accum_t), c10::Error);
  // Accumulator of the wrong dtype, shape or layout.
  at::Tensor accum_f = at::zeros({n, l}, at::kFloat);
  EXPECT_THROW(AccumulateMutualScores(z, options, 1.0, accum_f), c10::Error);
  at::Tensor accum_s = at::zeros({n, l + 1}, at::kDouble);
  EXPECT_THROW(AccumulateMutualScores(z, options, 1.0, accum_s), c10::Error);
  at::Tensor accum_nc = at::zeros({l, n}, at::kDouble).t();
  EXPECT_THROW(AccumulateMutualScores(z, options, 1.0, accum_nc), c10::Error);
  // Fewer than 2 images.
  at::Tensor accum_1 = at::zeros({1, l}, at::kDouble);
  EXPECT_THROW(AccumulateMutualScores(z.narrow(0, 0, 1).contiguous(), options, 1.0, accum_1),
               c10::Error);
  // Bad interval.
  MutualScoringOptions bad = options;
  bad.interval_high = 1.5;
  EXPECT_THROW(AccumulateMutualScores(z, bad, 1.0, accum), c10::Error);
  // Nothing was accumulated by the failed calls.
  EXPECT_EQ(accum.abs().sum().item<double>(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Properties

TEST(MutualScoresPropertyTest, PatchPastedFromAnotherImageScoresLow) {
  const int64_t n = 10, l = 49, c = 32;
  at::Tensor z = UnitRows(n, l, c, 404);
  z[0][5].copy_(z[3][17]);
  const at::Tensor scores = MutualScores(z, MutualScoringOptions{});
  const at::Tensor image0 = scores[0];
  const double pasted = image0[5].item<double>();
  EXPECT_LT(pasted, image0.median().item<double>());
  EXPECT_EQ(image0.argmin().item<int64_t>(), 5);
  // Its nearest image holds the very same vector: the smallest distance is ~0, so the score is
  // about half the typical one at k = 2.
  EXPECT_LT(pasted, 0.75 * image0.median().item<double>());
  // And the patch it was copied from scores low in its own image too.
  EXPECT_EQ(scores[3].argmin().item<int64_t>(), 17);
}

TEST(MutualScoresPropertyTest, InjectedOutlierScoresHighestInTheBatch) {
  for (int64_t n : {5, 8, 15}) {
    SCOPED_TRACE(testing::Message() << "N = " << n);
    const int64_t l = 36, c = 32;
    at::Tensor z = PrototypeBatch(n, l, c, 6, 0.15, 90 + n);
    // A random direction, checked to be far from every patch of the batch.
    const at::Tensor outlier = OutlierDirection(c, 7 * n);
    const at::Tensor sims = at::matmul(z.view({n * l, c}), outlier);
    ASSERT_LT(sims.max().item<float>(), 0.6f);
    const int64_t image = n / 2, patch = 13;
    z[image][patch].copy_(outlier);
    const at::Tensor scores = MutualScores(z, MutualScoringOptions{});
    EXPECT_EQ(scores.view({-1}).argmax().item<int64_t>(), image * l + patch);
  }
}

TEST(MutualScoresPropertyTest, PermutingTheBatchPermutesTheScores) {
  for (int64_t budget : {int64_t{1}, MutualScoringOptions{}.block_budget_bytes}) {
    for (int64_t n : {3, 7, 12}) {
      SCOPED_TRACE(testing::Message() << "N = " << n << ", budget " << budget);
      const int64_t l = 25;
      const at::Tensor z = UnitRows(n, l, 16, 60 + n);
      const at::Tensor perm =
          at::randperm(n, at::detail::createCPUGenerator(n), at::TensorOptions(at::kLong));
      MutualScoringOptions options;
      options.block_budget_bytes = budget;
      const at::Tensor scores = MutualScores(z, options);
      const at::Tensor permuted = MutualScores(z.index_select(0, perm).contiguous(), options);
      EXPECT_LT(naive::MaxAbsDiff(permuted, scores.index_select(0, perm)), 1e-6);
    }
  }
}

TEST(MutualScoresPropertyTest, PermutingPatchesWithinImagesPermutesTheirScores) {
  const int64_t n = 6, l = 20;
  const at::Tensor z = UnitRows(n, l, 16, 8);
  const at::Tensor perm =
      at::randperm(l, at::detail::createCPUGenerator(1), at::TensorOptions(at::kLong));
  const at::Tensor scores = MutualScores(z, MutualScoringOptions{});
  const at::Tensor permuted = MutualScores(z.index_select(1, perm).contiguous(), {});
  EXPECT_LT(naive::MaxAbsDiff(permuted, scores.index_select(1, perm)), 1e-6);
}

TEST(MutualScoresPropertyTest, IdenticalImagesScoreZero) {
  // Every patch has an exact copy in every other image: all distances are 0 (up to float
  // rounding of 2 − 2⟨a,a⟩ under the square root).
  const at::Tensor one = UnitRows(1, 16, 8, 4);
  const at::Tensor z = one.expand({5, 16, 8}).contiguous();
  EXPECT_LT(MutualScores(z, MutualScoringOptions{}).abs().max().item<double>(), 1e-3);
}

// ---------------------------------------------------------------------------------------------
// Composition used by the engine: LNAMD per layer and degree + MSM, mean over both.

TEST(MutualScoringPipelineTest, LayersOfDifferentGridsAndWidthsMatchNaive) {
  const int64_t n = 7;
  const std::vector<at::Tensor> layers = {
      naive::Randn({n, 16, 6, 5}, 1) * 2.0 + 1.0,  // First layer: defines the grid.
      naive::Randn({n, 24, 3, 3}, 2),              // Coarser, wider: upsampled.
      naive::Randn({n, 8, 9, 7}, 3) * 0.5,         // Finer, narrower: downsampled.
  };
  const std::vector<int64_t> degrees = {1, 3, 5};
  at::Tensor accum = at::zeros({n, 30}, at::kDouble);
  const double weight = 1.0 / static_cast<double>(layers.size() * degrees.size());
  for (const at::Tensor& maps : layers) {
    const at::Tensor normed = LayerNormPerImage(maps.contiguous());
    for (int64_t r : degrees) {
      AccumulateMutualScores(AggregateNeighbourhood(normed, r, 6, 5), MutualScoringOptions{},
                             weight, accum);
    }
  }
  EXPECT_LT(naive::MaxAbsDiff(accum.view({n, 6, 5}), naive::PatchScores(layers, degrees, 0.0, 0.3)),
            kTolerance);
}

}  // namespace
}  // namespace musc
