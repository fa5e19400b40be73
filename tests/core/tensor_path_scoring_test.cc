// The tensor-op MSM path — the one every accelerator tensor takes — run on CPU tensors and held
// to the same float64 definition as the blocked CPU path: exact and approximate, one stripe and
// many, and the rounding its half-precision GEMMs add. No GPU is needed to check its logic; only
// the device transfer itself is left to bench/gpu_check.sh.
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cstdint>

#include "core/mutual_scoring.h"
#include "tests/core/naive_reference.h"

namespace musc {
namespace {

at::Tensor UnitRows(int64_t n, int64_t l, int64_t c, uint64_t seed) {
  return naive::NormaliseRows(naive::Randn({n * l, c}, seed))
      .to(at::kFloat)
      .view({n, l, c})
      .contiguous();
}

at::Tensor Scores(const at::Tensor& z, const MutualScoringOptions& options,
                  MutualScoringStats* stats = nullptr) {
  at::Tensor scores = at::zeros({z.size(0), z.size(1)}, at::kDouble);
  const MutualScoringStats s = AccumulateMutualScores(z, options, 1.0, scores);
  if (stats != nullptr) *stats = s;
  return scores;
}

struct TensorPathCase {
  int64_t n, l, c;
  double low, high;
};

class TensorPathTest : public ::testing::TestWithParam<TensorPathCase> {};

TEST_P(TensorPathTest, ExactMatchesNaive) {
  const TensorPathCase tc = GetParam();
  const at::Tensor z = UnitRows(tc.n, tc.l, tc.c, 500 + tc.n * 7 + tc.l);
  MutualScoringOptions options;
  options.interval_low = tc.low;
  options.interval_high = tc.high;
  options.force_tensor_path = true;
  EXPECT_LT(naive::MaxAbsDiff(Scores(z, options), naive::MutualScores(z, tc.low, tc.high)), 1e-5);
}

TEST_P(TensorPathTest, ApproximateMatchesTheBlockedPath) {
  const TensorPathCase tc = GetParam();
  if (tc.n < 4) GTEST_SKIP() << "approximate mode needs M < N-1";
  const at::Tensor z = UnitRows(tc.n, tc.l, tc.c, 900 + tc.n);
  MutualScoringOptions blocked;
  blocked.interval_low = tc.low;
  blocked.interval_high = tc.high;
  blocked.approximate_neighbours = tc.n / 2;
  MutualScoringOptions tensor_ops = blocked;
  tensor_ops.force_tensor_path = true;
  EXPECT_LT(naive::MaxAbsDiff(Scores(z, tensor_ops), Scores(z, blocked)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, TensorPathTest,
                         ::testing::Values(TensorPathCase{2, 5, 8, 0.0, 0.3},
                                           TensorPathCase{7, 9, 16, 0.0, 0.3},
                                           TensorPathCase{12, 16, 24, 0.1, 0.6},
                                           TensorPathCase{20, 6, 32, 0.0, 1.0}));

TEST(TensorPathBudgetTest, StripesDoNotChangeResults) {
  const at::Tensor z = UnitRows(24, 36, 16, 77);
  MutualScoringOptions large;
  large.force_tensor_path = true;
  MutualScoringOptions tiny = large;
  tiny.block_budget_bytes = 1;  // One image per stripe, one partner per GEMM.
  MutualScoringStats stats;
  const at::Tensor a = Scores(z, large), b = Scores(z, tiny, &stats);
  EXPECT_GT(stats.stripes, 1);
  EXPECT_LT(naive::MaxAbsDiff(a, b), 1e-6);
  EXPECT_LT(naive::MaxAbsDiff(a, naive::MutualScores(z, 0.0, 0.3)), 1e-5);
}

// Whether this LibTorch multiplies `type` matrices on the CPU (1.13 has bf16 but not fp16 there).
bool CpuGemmSupports(at::ScalarType type) {
  try {
    const at::Tensor a = at::ones({2, 2}, at::TensorOptions().dtype(type));
    (void)at::mm(a, a);
    return true;
  } catch (const c10::Error& e) {
    return false;  // "not implemented for 'Half'": the caller skips, naming the type.
  }
}

class TensorPathPrecisionTest : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(TensorPathPrecisionTest, HalfPrecisionGemmsStayClose) {
  // The GEMM's rounding of the similarities reaches the distances (bf16 keeps 8 mantissa bits,
  // fp16 11). On these random rows the change must stay small. Real features, whose best matches
  // sit near s = 1 where d = sqrt(2-2s) magnifies it, are measured by bench/gpu_check.sh.
  if (!CpuGemmSupports(GetParam())) {
    GTEST_SKIP() << "this LibTorch has no CPU GEMM for " << c10::toString(GetParam())
                 << "; the path runs it on accelerators only";
  }
  const at::Tensor z = UnitRows(10, 16, 32, 5);
  MutualScoringOptions fp32;
  fp32.force_tensor_path = true;
  MutualScoringOptions half = fp32;
  half.gemm_dtype = GetParam();
  const double error = naive::MaxAbsDiff(Scores(z, half), Scores(z, fp32));
  EXPECT_GT(error, 0.0) << "a half-precision GEMM changed nothing: was it really used?";
  EXPECT_LT(error, 0.05);
}

INSTANTIATE_TEST_SUITE_P(Types, TensorPathPrecisionTest,
                         ::testing::Values(at::kBFloat16, at::kHalf));

TEST(TensorPathOptionsTest, CpuBlockedPathRejectsHalfGemms) {
  const at::Tensor z = UnitRows(4, 4, 8, 1);
  MutualScoringOptions options;
  options.gemm_dtype = at::kHalf;
  EXPECT_THROW(Scores(z, options), c10::Error);
  options.gemm_dtype = at::kInt;
  options.force_tensor_path = true;
  EXPECT_THROW(Scores(z, options), c10::Error);
}

}  // namespace
}  // namespace musc
