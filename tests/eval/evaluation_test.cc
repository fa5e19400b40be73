#include "eval/evaluation.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "eval/metrics.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::MessageHas;
using ::musc::testing::ScratchDir;

// A binary greyscale PGM (P5), which OpenCV decodes like the PNG masks of the data sets; written
// by hand so this test needs no image encoder.
std::string Pgm(int width, int height, const std::vector<uint8_t>& pixels) {
  std::string bytes = "P5\n" + std::to_string(width) + " " + std::to_string(height) + "\n255\n";
  bytes.append(pixels.begin(), pixels.end());
  return bytes;
}

TEST(MaskAtModelSizeTest, NoMaskIsAllNormal) {
  absl::StatusOr<std::vector<uint8_t>> mask = MaskAtModelSize("", 3);
  ASSERT_TRUE(mask.ok()) << mask.status();
  EXPECT_EQ(*mask, std::vector<uint8_t>(9, 0));
}

TEST(MaskAtModelSizeTest, AnyNonZeroValueIsDefect) {
  ScratchDir dir;
  dir.Write("m.pgm", Pgm(2, 2, {0, 255, 7, 0}));
  absl::StatusOr<std::vector<uint8_t>> mask = MaskAtModelSize(dir.Path("m.pgm"), 2);
  ASSERT_TRUE(mask.ok()) << mask.status();
  EXPECT_EQ(*mask, (std::vector<uint8_t>{0, 1, 1, 0}));
}

// Halving bilinearly averages each 2×2 block: only a block that is all defect reaches 1; a block
// three quarters defect (0.75) counts as normal.
TEST(MaskAtModelSizeTest, ResizedValuesBelowOneAreNormal) {
  ScratchDir dir;
  // clang-format off
  dir.Write("m.pgm", Pgm(4, 4, {255, 255, 255, 255,
                                255, 255, 255, 0,
                                0,   0,   0,   0,
                                0,   0,   0,   0}));
  // clang-format on
  absl::StatusOr<std::vector<uint8_t>> mask = MaskAtModelSize(dir.Path("m.pgm"), 2);
  ASSERT_TRUE(mask.ok()) << mask.status();
  EXPECT_EQ(*mask, (std::vector<uint8_t>{1, 0, 0, 0}));
}

TEST(MaskAtModelSizeTest, UndecodableMaskIsAnError) {
  ScratchDir dir;
  dir.Write("m.png", "not an image");
  absl::StatusOr<std::vector<uint8_t>> mask = MaskAtModelSize(dir.Path("m.png"), 2);
  EXPECT_EQ(mask.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(mask.status(), "cannot decode mask"));
}

// Four images with 2×2 maps; the two anomalous ones have masks (one and two defect pixels).
class EvaluationAccumulatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("2.pgm", Pgm(2, 2, {255, 0, 0, 0}));
    dir_.Write("3.pgm", Pgm(2, 2, {255, 255, 0, 0}));
  }

  // Added out of index order: image scores are kept by index, pixels in the order added.
  void AddAll(EvaluationAccumulator& accumulator) {
    for (size_t i : {3u, 0u, 2u, 1u}) {
      ASSERT_TRUE(accumulator
                      .AddImage(i, kScores[i], kLabels[i], kMaps[i].data(), 2, 2,
                                kLabels[i] ? dir_.Path(std::to_string(i) + ".pgm") : "")
                      .ok());
    }
  }

  static constexpr double kScores[4] = {0.1, 0.4, 0.35, 0.8};
  static constexpr bool kLabels[4] = {false, false, true, true};
  const std::vector<float> kMaps[4] = {{0.1f, 0.2f, 0.1f, 0.2f},
                                       {0.3f, 0.1f, 0.2f, 0.1f},
                                       {0.9f, 0.2f, 0.3f, 0.1f},
                                       {0.8f, 0.25f, 0.2f, 0.4f}};
  ScratchDir dir_;
};

TEST_F(EvaluationAccumulatorTest, ImageAndPixelMetricsByHand) {
  EvaluationAccumulator accumulator(4);
  AddAll(accumulator);
  absl::StatusOr<EvaluationReport> report = accumulator.Report();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->n_images, 4);
  EXPECT_EQ(report->map_size, 2);
  // Images, highest score first: 0.8 defect, 0.4 good, 0.35 defect, 0.1 good. Of the four
  // (defect, good) pairs, 0.35 < 0.4 is the one ordered wrongly.
  EXPECT_DOUBLE_EQ(report->image_auroc, 0.75);
  // Recall steps to 1/2 at precision 1 (0.8) and to 1 at precision 2/3 (0.35).
  EXPECT_DOUBLE_EQ(report->image_ap, 0.5 * 1 + 0.5 * 2.0 / 3.0);
  // Best at 0.35: precision 2/3, recall 1.
  EXPECT_DOUBLE_EQ(report->image_f1max, 0.8);

  // Pixels: defects 0.9, 0.8 and 0.25; the 13 normal pixels are 0.1 ×5, 0.2 ×5, 0.3 ×2, 0.4.
  ASSERT_TRUE(report->has_pixel_metrics);
  // 0.9 and 0.8 beat all 13; 0.25 beats the ten at 0.1 and 0.2.
  EXPECT_DOUBLE_EQ(report->pixel_auroc, 36.0 / 39.0);
  // Recall steps by 1/3 at 0.9 (precision 1), 0.8 (1) and 0.25 (3 of 6).
  EXPECT_DOUBLE_EQ(report->pixel_ap, (1.0 + 1.0 + 0.5) / 3.0);
  // Best at 0.8: precision 1, recall 2/3.
  EXPECT_DOUBLE_EQ(report->pixel_f1max, 0.8);
  // PRO over the maps and masks in the order they were added (images 3, 0, 2, 1).
  std::vector<float> maps;
  for (size_t i : {3u, 0u, 2u, 1u}) maps.insert(maps.end(), kMaps[i].begin(), kMaps[i].end());
  const std::vector<uint8_t> masks = {1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
  absl::StatusOr<double> pro = Pro(maps, masks, 4, 2, 2);
  ASSERT_TRUE(pro.ok()) << pro.status();
  EXPECT_EQ(report->pro, *pro);

  EXPECT_FALSE(report->has_decisions);
  EXPECT_EQ(report->seconds, 0);
  EXPECT_EQ(report->line_latency_p50, 0);
}

TEST_F(EvaluationAccumulatorTest, DecisionsAgainstTheLabels) {
  EvaluationAccumulator accumulator(4);
  AddAll(accumulator);
  accumulator.AddDecision(/*decided_anomalous=*/true, /*anomalous=*/true);
  accumulator.AddDecision(true, false);
  accumulator.AddDecision(true, false);
  accumulator.AddDecision(false, true);
  absl::StatusOr<EvaluationReport> report = accumulator.Report();
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->has_decisions);
  EXPECT_EQ(report->decided_images, 4);
  // One true positive among three flagged, and among two defective.
  EXPECT_DOUBLE_EQ(report->decision_precision, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(report->decision_recall, 0.5);
  EXPECT_DOUBLE_EQ(report->decision_f1, 0.4);
}

TEST_F(EvaluationAccumulatorTest, NothingFlaggedGivesZeroPrecision) {
  EvaluationAccumulator accumulator(4);
  AddAll(accumulator);
  accumulator.AddDecision(false, true);
  absl::StatusOr<EvaluationReport> report = accumulator.Report();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->decision_precision, 0);
  EXPECT_EQ(report->decision_recall, 0);
  EXPECT_EQ(report->decision_f1, 0);
}

TEST_F(EvaluationAccumulatorTest, NoMasksMeansNoPixelMetrics) {
  EvaluationAccumulator accumulator(4);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(accumulator.AddImage(i, kScores[i], kLabels[i], kMaps[i].data(), 2, 2, "").ok());
  }
  absl::StatusOr<EvaluationReport> report = accumulator.Report();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->has_pixel_metrics);
  EXPECT_EQ(report->pixel_auroc, 0);
  EXPECT_EQ(report->pro, 0);
  EXPECT_DOUBLE_EQ(report->image_auroc, 0.75);
}

TEST_F(EvaluationAccumulatorTest, MapsMustBeSquareAndOfOneSize) {
  EvaluationAccumulator accumulator(4);
  const std::vector<float> six(6, 0.5f);
  absl::Status s = accumulator.AddImage(0, 0.1, false, six.data(), 3, 2, "");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(MessageHas(s, "differ in size"));

  EvaluationAccumulator sized(4);
  ASSERT_TRUE(sized.AddImage(0, 0.1, false, kMaps[0].data(), 2, 2, "").ok());
  const std::vector<float> nine(9, 0.5f);
  s = sized.AddImage(1, 0.2, false, nine.data(), 3, 3, "");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
}

TEST_F(EvaluationAccumulatorTest, UndecodableMaskFailsTheImage) {
  dir_.Write("bad.png", "not an image");
  EvaluationAccumulator accumulator(4);
  absl::Status s = accumulator.AddImage(2, 0.35, true, kMaps[2].data(), 2, 2, dir_.Path("bad.png"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

// A metric that cannot be computed (here: no anomalous image) fails the report.
TEST_F(EvaluationAccumulatorTest, OneClassOnlyFailsTheReport) {
  EvaluationAccumulator accumulator(2);
  ASSERT_TRUE(accumulator.AddImage(0, 0.1, false, kMaps[0].data(), 2, 2, "").ok());
  ASSERT_TRUE(accumulator.AddImage(1, 0.4, false, kMaps[1].data(), 2, 2, "").ok());
  EXPECT_FALSE(accumulator.Report().ok());
}

}  // namespace
}  // namespace musc
