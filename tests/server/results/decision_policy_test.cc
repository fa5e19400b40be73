// Label-free decisions: the robust statistics, each threshold policy, batch and rolling (line)
// decisions, the alarm, and the products-file keys that configure them.
#include "server/results/decision_policy.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "server/product_config.h"
#include "tests/test_support.h"

namespace musc {
namespace {

TEST(RobustStatisticsTest, MedianMadAndQuantile) {
  EXPECT_DOUBLE_EQ(Median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(Median({4, 1, 3, 2}), 2.5);
  EXPECT_DOUBLE_EQ(Median({}), 0);
  EXPECT_DOUBLE_EQ(MedianAbsoluteDeviation({1, 2, 3, 4, 100}, 3), 1);
  EXPECT_DOUBLE_EQ(Quantile({0, 10, 20, 30, 40}, 0.5), 20);
  EXPECT_DOUBLE_EQ(Quantile({0, 10, 20, 30, 40}, 0.9), 36);
  EXPECT_DOUBLE_EQ(Quantile({5}, 0.3), 5);
}

TEST(EstimateThresholdTest, EachPolicy) {
  const std::vector<double> sample = {1, 2, 3, 4, 100};  // median 3, MAD 1
  ThresholdConfig robust{ThresholdKind::kRobust, 0, 2.0, 0};
  EXPECT_NEAR(*EstimateThreshold(robust, sample), 3 + 2.0 * 1.4826, 1e-12);
  ThresholdConfig quantile{ThresholdKind::kQuantile, 0, 0, 0.25};
  EXPECT_NEAR(*EstimateThreshold(quantile, sample), 4, 1e-12);
  ThresholdConfig fixed{ThresholdKind::kFixed, 0.7, 0, 0};
  EXPECT_DOUBLE_EQ(*EstimateThreshold(fixed, {}), 0.7);
  EXPECT_FALSE(EstimateThreshold(ThresholdConfig{}, sample).has_value());
  EXPECT_FALSE(EstimateThreshold(robust, {}).has_value());
}

TEST(DecideBatchTest, AMinorityOfOutliersIsFlaggedAndCannotDragTheThreshold) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(1.0f, 0.05f);
  std::vector<float> scores;
  for (int i = 0; i < 40; ++i) scores.push_back(normal(rng));
  scores.push_back(3.0f);
  scores.push_back(2.5f);
  DecisionConfig config;
  config.image = {ThresholdKind::kRobust, 0, 4.0, 0};
  const std::vector<Decision> d = DecideBatch(config, scores, {});
  ASSERT_EQ(d.size(), scores.size());
  int flagged = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    EXPECT_TRUE(d[i].decided);
    EXPECT_STREQ(d[i].policy, "robust");
    EXPECT_EQ(d[i].is_anomalous, scores[i] > d[i].threshold);
    flagged += d[i].is_anomalous ? 1 : 0;
  }
  EXPECT_TRUE(d[40].is_anomalous && d[41].is_anomalous);
  EXPECT_LE(flagged, 3);
  EXPECT_LT(d[0].threshold, 1.5f);  // Set by the normal parts, not the outliers.
  EXPECT_FALSE(d[0].alarm);
}

TEST(DecideBatchTest, EstimatedMaskThresholdFromPooledMapValues) {
  std::vector<float> a(1024, 0.2f), b(1024, 0.2f);
  for (int k = 0; k < 30; ++k) b[k * 7] = 0.9f;  // A few hot pixels.
  DecisionConfig config;
  config.mask = {ThresholdKind::kQuantile, 0, 0, 0.01};
  const std::vector<Decision> d = DecideBatch(config, {0.2f, 0.9f}, {a, b});
  ASSERT_TRUE(d[0].mask_threshold.has_value());
  EXPECT_GE(*d[0].mask_threshold, 0.2f);
  EXPECT_FALSE(d[0].decided);  // No image policy: no verdict.
}

TEST(LineDeciderTest, WaitsForEnoughScoresThenJudgesEachPartByThoseBeforeIt) {
  DecisionConfig config;
  config.image = {ThresholdKind::kRobust, 0, 3.0, 0};
  config.window = 20;
  config.min_scores = 5;
  config.alarm_fraction = 0.3;
  LineDecider decider(config);
  for (int i = 0; i < 5; ++i) {
    const Decision d = decider.Decide(1.0f + 0.01f * i);
    EXPECT_FALSE(d.decided) << i;
    decider.Observe(1.0f + 0.01f * i, {}, d);
  }
  const Decision normal = decider.Decide(1.01f);
  EXPECT_TRUE(normal.decided);
  EXPECT_FALSE(normal.is_anomalous);
  EXPECT_EQ(normal.scores_used, 5u);
  const Decision defect = decider.Decide(5.0f);
  EXPECT_TRUE(defect.is_anomalous);
  // The window forgets: it never holds more than `window` scores.
  for (int i = 0; i < 50; ++i) decider.Observe(1.0f, {}, decider.Decide(1.0f));
  EXPECT_EQ(decider.window_size(), 20u);
}

TEST(LineDeciderTest, AlarmWhenAnomalousPartsBecomeCommon) {
  DecisionConfig config;
  config.image = {ThresholdKind::kFixed, 2.0, 0, 0};
  config.window = 10;
  config.min_scores = 4;
  config.alarm_fraction = 0.3;
  LineDecider decider(config);
  for (int i = 0; i < 10; ++i) decider.Observe(1.0f, {}, decider.Decide(1.0f));
  EXPECT_FALSE(decider.Decide(1.0f).alarm);
  for (int i = 0; i < 4; ++i) decider.Observe(3.0f, {}, decider.Decide(3.0f));
  const Decision d = decider.Decide(1.0f);
  EXPECT_TRUE(d.alarm);
  EXPECT_NEAR(d.anomalous_fraction, 0.4, 1e-9);
}

TEST(DecisionConfigTest, ProductsFileKeysAndTheirErrors) {
  const std::string base = R"(
products:
  - name: p
    backbone: {model: vit-tiny-random}
)";
  absl::StatusOr<std::vector<ProductConfig>> ok =
      ParseProducts(base + R"(    line: {bank_size: 32, warmup_images: 6, admit_anomalous: false}
    decision:
      image: {policy: quantile, expected_defect_rate: 0.05}
      mask: {policy: robust, k: 5}
      window: 100
      min_scores: 10
      alarm_fraction: 0.25
)",
                    "t.yaml", "/");
  ASSERT_TRUE(ok.ok()) << ok.status();
  const ProductConfig& p = (*ok)[0];
  ASSERT_TRUE(p.line.has_value());
  EXPECT_EQ(p.line->bank_size, 32u);
  EXPECT_EQ(p.line->warmup_images, 6u);
  EXPECT_FALSE(p.line->admit_anomalous);
  EXPECT_EQ(p.decision.image.kind, ThresholdKind::kQuantile);
  EXPECT_DOUBLE_EQ(p.decision.image.expected_defect_rate, 0.05);
  EXPECT_EQ(p.decision.mask.kind, ThresholdKind::kRobust);
  EXPECT_EQ(p.decision.window, 100u);

  struct Bad {
    const char* yaml;
    const char* message;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"    line: {bank_size: 1}\n", "bank_size"},
           {"    line: {bank_size: 8, warmup_images: 9}\n", "warmup_images"},
           {"    line: {admit_anomalous: false}\n", "needs a decision policy"},
           {"    line: {bank: 8}\n", "unknown key 'bank'"},
           {"    decision: {image: {policy: fixed}}\n", "needs 'threshold'"},
           {"    decision: {image: {policy: median}}\n", "not one of"},
           {"    decision: {image: {policy: quantile, expected_defect_rate: 1.5}}\n", "(0, 1)"},
           {"    decision: {image: {policy: robust}, min_scores: 500}\n", "min_scores"},
       }) {
    absl::StatusOr<std::vector<ProductConfig>> r = ParseProducts(base + bad.yaml, "t.yaml", "/");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad.yaml;
    EXPECT_TRUE(testing::MessageHas(r.status(), bad.message)) << bad.yaml;
  }
}

}  // namespace
}  // namespace musc
