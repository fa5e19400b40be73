// The tensor-op MSM path — the one every accelerator tensor takes — run on CPU tensors: one stripe
// and many, the rounding its half-precision GEMMs add, and its option checks. Its agreement with
// the float64 definition (exact) and with the blocked path (approximate) over the shape table is
// in mutual_scoring_test.cc (MutualScoresNaiveTest). No GPU is needed to check its logic; only
// the device transfer itself is left to bench/gpu_check.sh.
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cstdint>

#include "core/musc/mutual_scoring.h"
#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

using naive::UnitRows;

at::Tensor Scores(const at::Tensor& z, const MutualScoringOptions& options,
                  MutualScoringStats* stats = nullptr) {
  at::Tensor scores = at::zeros({z.size(0), z.size(1)}, at::kDouble);
  const MutualScoringStats s = AccumulateMutualScores(z, options, 1.0, scores);
  if (stats != nullptr) *stats = s;
  return scores;
}

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
