// RsCIN (MUSC-SPEC §6) against explicit loops: min-max normalisation, W = F·Fᵀ, the k largest
// entries of each row, row-sum division, the mean over windows; plus the documented switches
// (no features, empty windows, a 0 window), clamping of windows above N and equal raw scores.
#include "core/musc/rscin.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

// Unit-norm image features that share a common direction (like embeddings of one product), so
// that rows of W are positive and their top-k sums are well away from zero.
at::Tensor ProductFeatures(int64_t n, int64_t d, uint64_t seed) {
  const at::Tensor common = naive::Randn({1, d}, seed);
  return naive::NormaliseRows(common + 0.7 * naive::Randn({n, d}, seed + 1)).to(at::kFloat);
}

at::Tensor RawScores(int64_t n, uint64_t seed) {
  return (1.5 + 0.3 * naive::Randn({n}, seed)).to(at::kFloat);
}

at::Tensor MinMax(const at::Tensor& raw) {
  const at::Tensor x = raw.to(at::kDouble);
  return (x - x.min()) / (x.max() - x.min());
}

struct RscinCase {
  int64_t n, d;
  std::vector<int64_t> windows;
};

class RscinNaiveTest : public ::testing::TestWithParam<RscinCase> {};

TEST_P(RscinNaiveTest, MatchesNaive) {
  const RscinCase rc = GetParam();
  const at::Tensor raw = RawScores(rc.n, rc.n * 3 + rc.d);
  const at::Tensor features = ProductFeatures(rc.n, rc.d, rc.n + 100);
  const at::Tensor got = RescoreWithImageNeighbourhood(raw, features, rc.windows);
  ASSERT_EQ(got.sizes(), (at::IntArrayRef{rc.n}));
  EXPECT_EQ(got.scalar_type(), at::kDouble);
  EXPECT_LT(naive::MaxAbsDiff(got, naive::Rescore(raw, features, rc.windows)), 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Windows, RscinNaiveTest,
                         ::testing::Values(RscinCase{5, 8, {1, 2, 3}}, RscinCase{10, 32, {1, 2, 3}},
                                           RscinCase{20, 16, {1, 8, 9}}, RscinCase{12, 32, {2}},
                                           RscinCase{7, 4, {3, 5}},
                                           RscinCase{15, 64, {1, 2, 3, 4, 5, 6}},
                                           RscinCase{6, 8, {6}}, RscinCase{9, 8, {4, 30}},
                                           RscinCase{2, 8, {1, 2}}, RscinCase{3, 8, {1, 2, 3}}));

TEST(RscinTest, UnnormalisedFeaturesMatchNaive) {
  // DINO / DINOv2 hand RsCIN their normed class tokens without L2 normalisation (as the reference
  // does): W = F·Fᵀ is then not a cosine matrix and a row's largest entry need not be itself.
  const int64_t n = 10;
  const at::Tensor scale = 0.5 + naive::Randn({n, 1}, 70).abs();
  const at::Tensor features = ProductFeatures(n, 16, 71) * scale;
  const at::Tensor raw = RawScores(n, 72);
  for (const std::vector<int64_t>& windows :
       std::vector<std::vector<int64_t>>{{1}, {1, 2, 3}, {1, 8, 9}}) {
    EXPECT_LT(naive::MaxAbsDiff(RescoreWithImageNeighbourhood(raw, features, windows),
                                naive::Rescore(raw, features, windows)),
              1e-9);
  }
}

TEST(RscinTest, HandComputedExample) {
  // f0 = e1, f1 = (0.6, 0.8), f2 = e2: W = [[1, .6, 0], [.6, 1, .8], [0, .8, 1]].
  const at::Tensor features =
      at::tensor({1.0f, 0.0f, 0.6f, 0.8f, 0.0f, 1.0f}, at::kFloat).view({3, 2});
  const at::Tensor raw = at::tensor({0.0f, 5.0f, 10.0f}, at::kFloat);  // c = (0, 0.5, 1).
  // k = 2: row 0 keeps {1, .6} → .6·.5/1.6; row 1 keeps {1, .8} → (.5 + .8)/1.8;
  // row 2 keeps {.8, 1} → (.8·.5 + 1)/1.8.
  const at::Tensor got = RescoreWithImageNeighbourhood(raw, features, {2});
  EXPECT_NEAR(got[0].item<double>(), 0.3 / 1.6, 1e-7);
  EXPECT_NEAR(got[1].item<double>(), 1.3 / 1.8, 1e-7);
  EXPECT_NEAR(got[2].item<double>(), 1.4 / 1.8, 1e-7);
  // Windows {1, 2}: the mean of c and the k = 2 result.
  const at::Tensor mixed = RescoreWithImageNeighbourhood(raw, features, {1, 2});
  EXPECT_NEAR(mixed[0].item<double>(), (0.0 + 0.3 / 1.6) / 2, 1e-7);
  EXPECT_NEAR(mixed[1].item<double>(), (0.5 + 1.3 / 1.8) / 2, 1e-7);
  EXPECT_NEAR(mixed[2].item<double>(), (1.0 + 1.4 / 1.8) / 2, 1e-7);
  // k = 3 = N: every row keeps everything.
  const at::Tensor all = RescoreWithImageNeighbourhood(raw, features, {3});
  EXPECT_NEAR(all[0].item<double>(), (0.6 * 0.5) / 1.6, 1e-7);
  EXPECT_NEAR(all[1].item<double>(), (0.5 + 0.8) / 2.4, 1e-7);
  EXPECT_NEAR(all[2].item<double>(), (0.4 + 1.0) / 1.8, 1e-7);
}

TEST(RscinTest, WindowOneIsTheNormalisedScores) {
  // rscin.h / MUSC-SPEC: k = 1 reproduces c, the min-max normalised raw scores (each image is its
  // own most similar image when features are distinct unit vectors).
  for (int64_t n : {2, 5, 13}) {
    const at::Tensor raw = RawScores(n, n);
    const at::Tensor got = RescoreWithImageNeighbourhood(raw, ProductFeatures(n, 16, n), {1});
    EXPECT_LT(naive::MaxAbsDiff(got, MinMax(raw)), 1e-12) << "N = " << n;
    EXPECT_DOUBLE_EQ(got.min().item<double>(), 0.0);
    EXPECT_DOUBLE_EQ(got.max().item<double>(), 1.0);
    // Repeating the window changes nothing.
    EXPECT_LT(
        naive::MaxAbsDiff(RescoreWithImageNeighbourhood(raw, ProductFeatures(n, 16, n), {1, 1, 1}),
                          MinMax(raw)),
        1e-12);
  }
}

TEST(RscinTest, OffSwitchesReturnTheRawScoresUnchanged) {
  const int64_t n = 8;
  const at::Tensor raw = RawScores(n, 3);
  const at::Tensor features = ProductFeatures(n, 16, 4);
  const at::Tensor expected = raw.to(at::kDouble);
  const std::vector<std::vector<int64_t>> off_windows = {{}, {0}, {1, 0, 3}, {0, 2}};
  for (const auto& windows : off_windows) {
    const at::Tensor got = RescoreWithImageNeighbourhood(raw, features, windows);
    EXPECT_EQ(got.scalar_type(), at::kDouble);
    EXPECT_TRUE(got.equal(expected)) << "windows of size " << windows.size();
  }
  // No image features (a backbone without an image-level embedding).
  const at::Tensor got = RescoreWithImageNeighbourhood(raw, at::Tensor(), {1, 2, 3});
  EXPECT_EQ(got.scalar_type(), at::kDouble);
  EXPECT_TRUE(got.equal(expected));
  // Any floating input type.
  const at::Tensor from_double =
      RescoreWithImageNeighbourhood(raw.to(at::kDouble), at::Tensor(), {1});
  EXPECT_TRUE(from_double.equal(expected));
  // The result is not an alias of the input.
  at::Tensor input = raw.to(at::kDouble);
  at::Tensor out = RescoreWithImageNeighbourhood(input, at::Tensor(), {0});
  out.fill_(-1.0);
  EXPECT_TRUE(input.equal(expected));
}

TEST(RscinTest, WindowsLargerThanTheBatchAreClamped) {
  const int64_t n = 6;
  const at::Tensor raw = RawScores(n, 9);
  const at::Tensor features = ProductFeatures(n, 8, 10);
  const at::Tensor clamped = RescoreWithImageNeighbourhood(raw, features, {n});
  EXPECT_LT(naive::MaxAbsDiff(RescoreWithImageNeighbourhood(raw, features, {n + 1}), clamped),
            1e-12);
  EXPECT_LT(naive::MaxAbsDiff(RescoreWithImageNeighbourhood(raw, features, {1000}), clamped),
            1e-12);
  // k = N: every image gets the W-weighted mean of all normalised scores.
  const at::Tensor f = features.to(at::kDouble);
  const at::Tensor w = at::matmul(f, f.t());
  const at::Tensor expected = at::matmul(w, MinMax(raw)) / w.sum(1);
  EXPECT_LT(naive::MaxAbsDiff(clamped, expected), 1e-12);
}

TEST(RscinTest, EqualRawScoresGiveZeros) {
  const int64_t n = 5;
  const at::Tensor raw = at::full({n}, 0.7, at::kFloat);
  const at::Tensor got = RescoreWithImageNeighbourhood(raw, ProductFeatures(n, 8, 1), {1, 2, 3});
  EXPECT_TRUE(got.equal(at::zeros({n}, at::kDouble)));
}

TEST(RscinTest, PermutingTheBatchPermutesTheScores) {
  const int64_t n = 11;
  const at::Tensor raw = RawScores(n, 5);
  const at::Tensor features = ProductFeatures(n, 16, 6);
  const at::Tensor perm =
      at::randperm(n, at::detail::createCPUGenerator(3), at::TensorOptions(at::kLong));
  const std::vector<int64_t> windows = {1, 2, 3};
  const at::Tensor base = RescoreWithImageNeighbourhood(raw, features, windows);
  const at::Tensor permuted = RescoreWithImageNeighbourhood(
      raw.index_select(0, perm), features.index_select(0, perm), windows);
  EXPECT_LT(naive::MaxAbsDiff(permuted, base.index_select(0, perm)), 1e-12);
}

TEST(RscinTest, InvariantToAffineRescalingOfRawScores) {
  // Only the min-max normalised scores enter: a·raw + b (a > 0) gives the same result.
  const int64_t n = 9;
  const at::Tensor raw = RawScores(n, 12).to(at::kDouble);
  const at::Tensor features = ProductFeatures(n, 16, 13);
  EXPECT_LT(naive::MaxAbsDiff(RescoreWithImageNeighbourhood(raw, features, {1, 2, 3}),
                              RescoreWithImageNeighbourhood(3.0 * raw + 2.0, features, {1, 2, 3})),
            1e-12);
}

TEST(RscinTest, NeighbourhoodPullsAnIsolatedHighScoreTowardsItsNeighbours) {
  // Six similar (distinct) images; one has a spuriously high raw score. With k = 3 its score is
  // pulled down towards its neighbours'; with k = 1 it stays at 1.
  const int64_t d = 8;
  std::vector<float> f;
  for (int i = 0; i < 6; ++i) {
    for (int k = 0; k < d; ++k) {
      f.push_back(k == 0 ? 1.0f : (k == 1 + i ? 0.1f + 0.02f * static_cast<float>(i) : 0.0f));
    }
  }
  const at::Tensor features =
      naive::NormaliseRows(at::tensor(f, at::kFloat).view({6, d})).to(at::kFloat);
  const at::Tensor raw = at::tensor({0.1f, 0.12f, 0.11f, 0.9f, 0.1f, 0.13f});
  const at::Tensor k1 = RescoreWithImageNeighbourhood(raw, features, {1});
  const at::Tensor k3 = RescoreWithImageNeighbourhood(raw, features, {3});
  EXPECT_DOUBLE_EQ(k1[3].item<double>(), 1.0);
  EXPECT_LT(k3[3].item<double>(), 0.6);
  EXPECT_LT(naive::MaxAbsDiff(k3, naive::Rescore(raw, features, {3})), 1e-9);
}

TEST(RscinTest, RejectsMalformedInput) {
  const at::Tensor features = ProductFeatures(4, 8, 1);
  EXPECT_THROW(RescoreWithImageNeighbourhood(RawScores(5, 1), features, {1, 2}), c10::Error);
  EXPECT_THROW(RescoreWithImageNeighbourhood(RawScores(4, 1).view({2, 2}), features, {1}),
               c10::Error);
  EXPECT_THROW(RescoreWithImageNeighbourhood(RawScores(4, 1), features[0], {1}), c10::Error);
  EXPECT_THROW(RescoreWithImageNeighbourhood(RawScores(4, 1), features, {1, -2}), c10::Error);
}

}  // namespace
}  // namespace musc
