// Line mode's MSM — one query image against a bank of M others (AccumulateQueryScores) — against
// the naive definition: the query's row of naive MSM over the batch made of the bank plus the
// query. Also its chunking, its accumulation contract, and its refusal of malformed input.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/musc/mutual_scoring.h"
#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

constexpr double kTolerance = 1e-5;

struct QueryCase {
  int64_t bank;  // M.
  int64_t l;
  int64_t c;
  double low;
  double high;
};

// The query's scores: weight 1 into zeros.
at::Tensor QueryScores(const at::Tensor& query, const at::Tensor& bank, double low, double high,
                       int64_t chunk) {
  MutualScoringOptions options;
  options.interval_low = low;
  options.interval_high = high;
  at::Tensor accum = at::zeros({query.size(0)}, at::kDouble);
  AccumulateQueryScores(query, bank, options, chunk, 1.0, accum);
  return accum;
}

class QueryScoresNaiveTest : public ::testing::TestWithParam<QueryCase> {};

TEST_P(QueryScoresNaiveTest, MatchesTheQueryRowOfNaiveMsm) {
  const QueryCase qc = GetParam();
  const at::Tensor z = naive::UnitRows(qc.bank + 1, qc.l, qc.c, 500 + qc.bank * 13 + qc.l);
  const at::Tensor bank = z.narrow(0, 0, qc.bank).contiguous();
  const at::Tensor query = z[qc.bank];
  const at::Tensor expected = naive::MutualScores(z, qc.low, qc.high)[qc.bank];
  for (const int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{8}}) {
    SCOPED_TRACE(chunk);
    const at::Tensor got = QueryScores(query, bank, qc.low, qc.high, chunk);
    ASSERT_EQ(got.sizes(), (at::IntArrayRef{qc.l}));
    EXPECT_LT(naive::MaxAbsDiff(got, expected), kTolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, QueryScoresNaiveTest,
                         ::testing::Values(QueryCase{1, 9, 8, 0.0, 0.3},  // Widened: nearest.
                                           QueryCase{2, 16, 12, 0.0, 0.3},
                                           QueryCase{5, 9, 16, 0.0, 0.3},
                                           QueryCase{12, 25, 32, 0.0, 0.3},
                                           QueryCase{12, 16, 8, 0.2, 0.7},
                                           QueryCase{7, 4, 24, 0.0, 1.0}));

TEST(QueryScoresTest, AccumulatesWeightedScores) {
  const at::Tensor z = naive::UnitRows(6, 9, 8, 77);
  const at::Tensor bank = z.narrow(0, 0, 5).contiguous();
  const at::Tensor query = z[5];
  const at::Tensor once = QueryScores(query, bank, 0.0, 0.3, 2);
  MutualScoringOptions options;
  at::Tensor accum = at::zeros({9}, at::kDouble) + 1.0;
  AccumulateQueryScores(query, bank, options, 2, 0.25, accum);
  EXPECT_LT(naive::MaxAbsDiff(accum, once * 0.25 + 1.0), 1e-12);
}

TEST(QueryScoresTest, RejectsMalformedInput) {
  const at::Tensor z = naive::UnitRows(4, 9, 8, 3);
  const at::Tensor bank = z.narrow(0, 0, 3).contiguous();
  const at::Tensor query = z[3];
  MutualScoringOptions options;
  at::Tensor accum = at::zeros({9}, at::kDouble);
  EXPECT_THROW(AccumulateQueryScores(query, bank.narrow(0, 0, 0), options, 2, 1.0, accum),
               c10::Error);  // An empty bank.
  EXPECT_THROW(AccumulateQueryScores(query, bank, options, 0, 1.0, accum), c10::Error);
  EXPECT_THROW(AccumulateQueryScores(query.narrow(1, 0, 4), bank, options, 2, 1.0, accum),
               c10::Error);  // Channels differ.
  EXPECT_THROW(AccumulateQueryScores(query, bank.to(at::kDouble), options, 2, 1.0, accum),
               c10::Error);
  at::Tensor short_accum = at::zeros({4}, at::kDouble);
  EXPECT_THROW(AccumulateQueryScores(query, bank, options, 2, 1.0, short_accum), c10::Error);
  at::Tensor float_accum = at::zeros({9}, at::kFloat);
  EXPECT_THROW(AccumulateQueryScores(query, bank, options, 2, 1.0, float_accum), c10::Error);
}

}  // namespace
}  // namespace musc
