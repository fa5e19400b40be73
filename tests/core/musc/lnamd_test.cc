// LNAMD (MUSC-SPEC §3) against the naive float64 loops of naive_reference.h: the per-image
// LayerNorm, the r×r mean with counted zero padding, the bilinear resize to the first layer's grid,
// the L2 normalisation and the N×L×C row-major layout.
#include "core/musc/lnamd.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/ones_like.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

constexpr double kTolerance = 1e-5;

// Feature maps with a per-image offset and scale, as real backbone layers have.
at::Tensor RandomMaps(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  const at::Tensor base = naive::Randn({n, c, h, w}, seed);
  const at::Tensor scale = 0.5 + naive::Randn({n, 1, 1, 1}, seed + 1).abs() * 3.0;
  const at::Tensor offset = naive::Randn({n, 1, 1, 1}, seed + 2) * 2.0;
  return (base * scale + offset).contiguous();
}

struct Shape {
  int64_t n, c, h, w;
};

class LnamdShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(LnamdShapeTest, LayerNormMatchesNaive) {
  const Shape s = GetParam();
  const at::Tensor maps = RandomMaps(s.n, s.c, s.h, s.w, 11 * s.h + s.w);
  const at::Tensor before = maps.clone();
  const at::Tensor got = LayerNormPerImage(maps);
  ASSERT_EQ(got.sizes(), maps.sizes());
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_LT(naive::MaxAbsDiff(got, naive::LayerNormPerImage(maps)), kTolerance);
  EXPECT_TRUE(maps.equal(before)) << "LayerNormPerImage modified its input";
}

TEST_P(LnamdShapeTest, AggregationMatchesNaiveForEveryDegree) {
  const Shape s = GetParam();
  const at::Tensor normed = LayerNormPerImage(RandomMaps(s.n, s.c, s.h, s.w, 7 * s.c + s.n));
  for (int64_t r : {1, 3, 5, 7}) {
    SCOPED_TRACE(testing::Message() << "r = " << r);
    const at::Tensor z = AggregateNeighbourhood(normed, r, s.h, s.w);
    ASSERT_EQ(z.sizes(), (at::IntArrayRef{s.n, s.h * s.w, s.c}));
    EXPECT_EQ(z.scalar_type(), at::kFloat);
    EXPECT_TRUE(z.is_contiguous());
    EXPECT_LT(naive::MaxAbsDiff(z, naive::AggregateNeighbourhood(normed, r, s.h, s.w)), kTolerance);
  }
}

TEST_P(LnamdShapeTest, WholeStageFromRawMapsMatchesNaive) {
  const Shape s = GetParam();
  const at::Tensor maps = RandomMaps(s.n, s.c, s.h, s.w, 3 * s.w + 5);
  const at::Tensor expected_normed = naive::LayerNormPerImage(maps);
  const at::Tensor normed = LayerNormPerImage(maps);
  for (int64_t r : {1, 3, 5}) {
    SCOPED_TRACE(testing::Message() << "r = " << r);
    EXPECT_LT(naive::MaxAbsDiff(AggregateNeighbourhood(normed, r, s.h, s.w),
                                naive::AggregateNeighbourhood(expected_normed, r, s.h, s.w)),
              kTolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LnamdShapeTest,
                         ::testing::Values(Shape{5, 16, 7, 7}, Shape{3, 32, 4, 9},
                                           Shape{6, 8, 9, 5}, Shape{2, 64, 8, 8},
                                           Shape{4, 12, 1, 6}, Shape{1, 5, 2, 2}));

TEST(LayerNormPerImageTest, EachImageHasZeroMeanAndUnitVariance) {
  const at::Tensor got = LayerNormPerImage(RandomMaps(4, 24, 6, 5, 99)).to(at::kDouble);
  for (int64_t i = 0; i < 4; ++i) {
    const at::Tensor x = got[i];
    EXPECT_NEAR(x.mean().item<double>(), 0.0, 1e-6);
    // Biased variance of a normalised block: var / (var + eps), ~1 for these scales.
    EXPECT_NEAR((x * x).mean().item<double>(), 1.0, 1e-4);
  }
}

TEST(LayerNormPerImageTest, ImagesAreNormalisedIndependently) {
  const at::Tensor maps = RandomMaps(3, 8, 4, 4, 5);
  const at::Tensor all = LayerNormPerImage(maps);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_LT(naive::MaxAbsDiff(all[i], LayerNormPerImage(maps.narrow(0, i, 1))[0]), 1e-6);
  }
}

TEST(LayerNormPerImageTest, RejectsNon4dOrNonFloat) {
  EXPECT_THROW(LayerNormPerImage(naive::Randn({3, 4, 5}, 1)), c10::Error);
  EXPECT_THROW(LayerNormPerImage(naive::Randn({2, 3, 4, 5}, 1).to(at::kDouble)), c10::Error);
}

// Layers with other grids and widths are resized to the first layer's grid after pooling.
struct ResizeCase {
  Shape layer;
  int64_t grid_h, grid_w;
};

class LnamdResizeTest : public ::testing::TestWithParam<ResizeCase> {};

TEST_P(LnamdResizeTest, PoolThenResizeMatchesNaive) {
  const ResizeCase rc = GetParam();
  const Shape s = rc.layer;
  const at::Tensor normed = LayerNormPerImage(RandomMaps(s.n, s.c, s.h, s.w, 31 + s.h * s.w));
  for (int64_t r : {1, 3, 5}) {
    SCOPED_TRACE(testing::Message() << "r = " << r << ", " << s.h << "×" << s.w << " → "
                                    << rc.grid_h << "×" << rc.grid_w);
    const at::Tensor z = AggregateNeighbourhood(normed, r, rc.grid_h, rc.grid_w);
    ASSERT_EQ(z.sizes(), (at::IntArrayRef{s.n, rc.grid_h * rc.grid_w, s.c}));
    EXPECT_LT(naive::MaxAbsDiff(z, naive::AggregateNeighbourhood(normed, r, rc.grid_h, rc.grid_w)),
              kTolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Grids, LnamdResizeTest,
                         ::testing::Values(ResizeCase{{4, 24, 4, 4}, 7, 7},   // Upsample.
                                           ResizeCase{{3, 16, 9, 9}, 6, 5},   // Down, non-square.
                                           ResizeCase{{5, 40, 3, 5}, 8, 8},   // Non-square up.
                                           ResizeCase{{2, 8, 6, 6}, 6, 9}));  // One axis only.

TEST(AggregateNeighbourhoodTest, DegreeOneIsTheNormalisedFeature) {
  const at::Tensor normed = LayerNormPerImage(RandomMaps(3, 10, 4, 6, 17));
  const at::Tensor z = AggregateNeighbourhood(normed, 1, 4, 6);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t y = 0; y < 4; ++y) {
      for (int64_t x = 0; x < 6; ++x) {
        at::Tensor v = normed[i].select(1, y).select(1, x).to(at::kDouble);
        v = v / at::linalg_vector_norm(v, 2, {}, false);
        ASSERT_LT(naive::MaxAbsDiff(z[i][y * 6 + x], v), 1e-6) << i << "," << y << "," << x;
      }
    }
  }
}

TEST(AggregateNeighbourhoodTest, RowsAreUnitVectors) {
  const at::Tensor normed = LayerNormPerImage(RandomMaps(4, 20, 5, 7, 23));
  for (int64_t r : {1, 3, 5, 9}) {
    const at::Tensor norms =
        at::linalg_vector_norm(AggregateNeighbourhood(normed, r, 5, 7).to(at::kDouble), 2, {-1},
                               /*keepdim=*/false);
    EXPECT_LT(naive::MaxAbsDiff(norms, at::ones_like(norms)), 1e-6) << "r = " << r;
  }
}

TEST(AggregateNeighbourhoodTest, NaivePoolCountsPaddedZeros) {
  at::Tensor maps = at::ones({1, 2, 4, 4}, at::kFloat);
  maps[0][1].fill_(3.0);
  const at::Tensor pooled = naive::MeanPoolCountPad(maps, 3);
  EXPECT_DOUBLE_EQ(pooled[0][0][0][0].item<double>(), 4.0 / 9.0);
  EXPECT_DOUBLE_EQ(pooled[0][0][1][1].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(pooled[0][0][0][1].item<double>(), 6.0 / 9.0);
  EXPECT_DOUBLE_EQ(pooled[0][1][3][3].item<double>(), 12.0 / 9.0);
}

TEST(AggregateNeighbourhoodTest, PaddedZerosAreCountedInTheMean) {
  // At one grid, dividing by the true count instead of r² rescales whole C-vectors and vanishes
  // in the L2 normalisation; through a resize it mixes positions with different weights, so the
  // two conventions give different Z. The core must agree with count_include_pad.
  const at::Tensor normed = LayerNormPerImage(RandomMaps(2, 6, 3, 4, 8));
  const int64_t r = 3;
  const at::Tensor counted = naive::AggregateNeighbourhood(normed, r, 7, 6);
  // The other convention: the mean over real cells only.
  const at::Tensor real_cells = naive::MeanPoolCountPad(at::ones_like(normed), r);
  at::Tensor excluded = naive::MeanPoolCountPad(normed, r) / real_cells;
  excluded = naive::ResizeBilinear(excluded, 7, 6, /*align_corners=*/false);
  excluded = naive::NormaliseRows(excluded.permute({0, 2, 3, 1}).reshape({-1, 6})).view({2, 42, 6});
  ASSERT_GT(naive::MaxAbsDiff(counted, excluded), 1e-3) << "test does not discriminate";
  EXPECT_LT(naive::MaxAbsDiff(AggregateNeighbourhood(normed, r, 7, 6), counted), kTolerance);
}

TEST(AggregateNeighbourhoodTest, NonContiguousInputGivesTheSameResult) {
  // Backbones hand over permuted (channels-last) views.
  const at::Tensor normed = LayerNormPerImage(RandomMaps(3, 12, 5, 6, 41));
  const at::Tensor nhwc = normed.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
  ASSERT_FALSE(nhwc.is_contiguous());
  for (int64_t r : {1, 3}) {
    EXPECT_LT(naive::MaxAbsDiff(AggregateNeighbourhood(nhwc, r, 5, 6),
                                AggregateNeighbourhood(normed, r, 5, 6)),
              1e-6);
  }
  EXPECT_LT(naive::MaxAbsDiff(LayerNormPerImage(nhwc), LayerNormPerImage(normed)), 1e-6);
}

TEST(AggregateNeighbourhoodTest, RejectsBadDegreesAndShapes) {
  const at::Tensor normed = LayerNormPerImage(RandomMaps(2, 4, 3, 3, 1));
  EXPECT_THROW(AggregateNeighbourhood(normed, 2, 3, 3), c10::Error);
  EXPECT_THROW(AggregateNeighbourhood(normed, 0, 3, 3), c10::Error);
  EXPECT_THROW(AggregateNeighbourhood(normed, -1, 3, 3), c10::Error);
  EXPECT_THROW(AggregateNeighbourhood(normed, 1, 0, 3), c10::Error);
  EXPECT_THROW(AggregateNeighbourhood(normed[0], 1, 3, 3), c10::Error);
}

}  // namespace
}  // namespace musc
