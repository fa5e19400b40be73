// Maps and image scores (MUSC-SPEC §5) against explicit bilinear loops: the align_corners = true
// upsampling of patch grids to S×S, the align_corners = false resize to a client's resolution,
// and the maximum of each map.
#include "core/musc/anomaly_map.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/full.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cstdint>

#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

struct UpsampleCase {
  int64_t n, h, w, out_h, out_w;
};

class UpsamplePatchScoresTest : public ::testing::TestWithParam<UpsampleCase> {};

TEST_P(UpsamplePatchScoresTest, MatchesNaiveAlignCornersLoops) {
  const UpsampleCase uc = GetParam();
  const at::Tensor grid = naive::Randn({uc.n, uc.h, uc.w}, uc.h * 100 + uc.w).abs();
  const at::Tensor expected =
      naive::ResizeBilinear(grid.unsqueeze(1), uc.out_h, uc.out_w, /*align_corners=*/true)
          .squeeze(1);
  for (const at::ScalarType type : {at::kFloat, at::kDouble}) {
    const at::Tensor got = UpsamplePatchScores(grid.to(type), uc.out_h, uc.out_w);
    ASSERT_EQ(got.sizes(), (at::IntArrayRef{uc.n, uc.out_h, uc.out_w}));
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    // float32 arithmetic on source coordinates up to ~500: a few float ulps of O(1) values.
    EXPECT_LT(naive::MaxAbsDiff(got, expected), 2e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, UpsamplePatchScoresTest,
                         ::testing::Values(UpsampleCase{3, 8, 8, 64, 64},
                                           UpsampleCase{2, 5, 7, 33, 20},
                                           UpsampleCase{1, 37, 37, 518, 518},
                                           UpsampleCase{4, 6, 6, 48, 48},
                                           UpsampleCase{2, 1, 1, 5, 4}, UpsampleCase{1, 4, 4, 4, 4},
                                           UpsampleCase{2, 9, 3, 5, 2}));

TEST(UpsamplePatchScoresTest, CornersAndGridPointsAreKeptExactly) {
  // align_corners = true with (S−1) a multiple of (G−1): every grid value appears in the map.
  const at::Tensor grid = naive::Randn({2, 8, 8}, 5);
  const at::Tensor map = UpsamplePatchScores(grid, 64, 64);  // 63 = 9·7.
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t y = 0; y < 8; ++y) {
      for (int64_t x = 0; x < 8; ++x) {
        ASSERT_NEAR(map[i][9 * y][9 * x].item<float>(), grid[i][y][x].item<float>(), 1e-6);
      }
    }
  }
  // So the image score (max of the map) is the max of the patch grid: bilinear interpolation
  // never exceeds its corners.
  const at::Tensor maxima = MaxOfMaps(map);
  for (int64_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(maxima[i].item<float>(), grid[i].max().item<float>(), 1e-6);
  }
}

TEST(UpsamplePatchScoresTest, ConstantGridGivesConstantMap) {
  const at::Tensor map = UpsamplePatchScores(at::full({1, 5, 5}, 0.375, at::kDouble), 17, 23);
  EXPECT_LT(naive::MaxAbsDiff(map, at::full({1, 17, 23}, 0.375, at::kDouble)), 1e-7);
}

TEST(UpsamplePatchScoresTest, LinearRampIsReproduced) {
  // f(y, x) = y + 2x on a G×G grid, upsampled to S×S with align_corners = true, is exactly the
  // same plane at the scaled coordinates.
  const int64_t g = 4, s = 10;
  const at::Tensor ys = at::arange(g, at::kDouble).view({g, 1});
  const at::Tensor xs = at::arange(g, at::kDouble).view({1, g});
  const at::Tensor grid = (ys + 2.0 * xs).unsqueeze(0);
  const at::Tensor map = UpsamplePatchScores(grid, s, s).to(at::kDouble);
  const double scale = static_cast<double>(g - 1) / static_cast<double>(s - 1);
  for (int64_t y = 0; y < s; ++y) {
    for (int64_t x = 0; x < s; ++x) {
      ASSERT_NEAR(map[0][y][x].item<double>(), scale * y + 2.0 * scale * x, 1e-5);
    }
  }
}

TEST(UpsamplePatchScoresTest, RejectsBadShapes) {
  EXPECT_THROW(UpsamplePatchScores(naive::Randn({8, 8}, 1), 16, 16), c10::Error);
  EXPECT_THROW(UpsamplePatchScores(naive::Randn({1, 8, 8}, 1), 0, 16), c10::Error);
}

struct ResizeCase {
  int64_t h, w, out_h, out_w;
};

class ResizeMapTest : public ::testing::TestWithParam<ResizeCase> {};

TEST_P(ResizeMapTest, MatchesNaiveHalfPixelLoops) {
  const ResizeCase rc = GetParam();
  const at::Tensor map = naive::Randn({rc.h, rc.w}, rc.out_h * 7 + rc.out_w).abs();
  const at::Tensor got = ResizeMap(map, rc.out_h, rc.out_w);
  ASSERT_EQ(got.sizes(), (at::IntArrayRef{rc.out_h, rc.out_w}));
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  const at::Tensor expected =
      naive::ResizeBilinear(map.view({1, 1, rc.h, rc.w}), rc.out_h, rc.out_w, false)[0][0];
  EXPECT_LT(naive::MaxAbsDiff(got, expected), 2e-5);
}

INSTANTIATE_TEST_SUITE_P(Sizes, ResizeMapTest,
                         ::testing::Values(ResizeCase{64, 64, 100, 150}, ResizeCase{64, 64, 30, 20},
                                           ResizeCase{48, 48, 48, 48}, ResizeCase{64, 64, 480, 640},
                                           ResizeCase{10, 7, 1, 1}));

TEST(ResizeMapTest, RejectsBadShapes) {
  EXPECT_THROW(ResizeMap(naive::Randn({1, 8, 8}, 1), 16, 16), c10::Error);
  EXPECT_THROW(ResizeMap(naive::Randn({8, 8}, 1), 16, -1), c10::Error);
}

TEST(MaxOfMapsTest, MatchesNaive) {
  const at::Tensor maps = naive::Randn({5, 13, 17}, 77);
  const at::Tensor got = MaxOfMaps(maps);
  ASSERT_EQ(got.sizes(), (at::IntArrayRef{5}));
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_EQ(naive::MaxAbsDiff(got, naive::MaxOfMaps(maps)), 0.0);
  // The maximum is found wherever it is, including the last pixel.
  at::Tensor spiky = at::full({2, 4, 4}, -1.0f, at::kFloat);
  spiky[0][3][3] = 5.0f;
  spiky[1][0][0] = 2.0f;
  const at::Tensor m = MaxOfMaps(spiky);
  EXPECT_EQ(m[0].item<float>(), 5.0f);
  EXPECT_EQ(m[1].item<float>(), 2.0f);
  EXPECT_THROW(MaxOfMaps(naive::Randn({4, 4}, 1)), c10::Error);
}

TEST(MaxOfMapsTest, ReturnsFloat32ForAnyFloatingInput) {
  // anomaly_map.h: "maps: N×H×W → N float32".
  const at::Tensor maps = naive::Randn({3, 5, 6}, 8).to(at::kDouble);
  const at::Tensor got = MaxOfMaps(maps);
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_LT(naive::MaxAbsDiff(got, naive::MaxOfMaps(maps)), 1e-6);
}

}  // namespace
}  // namespace musc
