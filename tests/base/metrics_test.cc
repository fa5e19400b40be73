#include "client/metrics.h"

#include <gtest/gtest.h>

namespace musc {
namespace {

// Expected values worked out by hand from the pair-counting definition:
// AUROC = P(score_pos > score_neg) + 0.5·P(score_pos = score_neg).
TEST(AurocTest, PerfectAndInvertedSeparation) {
  EXPECT_DOUBLE_EQ(*Auroc({0.1, 0.2, 0.8, 0.9}, {false, false, true, true}), 1.0);
  EXPECT_DOUBLE_EQ(*Auroc({0.9, 0.8, 0.2, 0.1}, {false, false, true, true}), 0.0);
}

TEST(AurocTest, PartialOverlapCountsPairs) {
  // Positives {0.35, 0.8}, negatives {0.1, 0.4}: pairs won 1+2 of 4.
  EXPECT_DOUBLE_EQ(*Auroc({0.1, 0.4, 0.35, 0.8}, {false, false, true, true}), 0.75);
}

TEST(AurocTest, TiesGetHalfCredit) {
  // Positive 0.5 ties negative 0.5 (½), beats 0.2 (1); positive 0.7 beats both (2) → 3.5/4.
  EXPECT_DOUBLE_EQ(*Auroc({0.2, 0.5, 0.5, 0.7}, {false, false, true, true}), 0.875);
  EXPECT_DOUBLE_EQ(*Auroc({1.0, 1.0, 1.0}, {false, true, true}), 0.5);
}

TEST(AurocTest, RejectsBadInput) {
  EXPECT_FALSE(Auroc({0.1, 0.2}, {true}).ok());
  EXPECT_FALSE(Auroc({0.1, 0.2}, {true, true}).ok());
  EXPECT_FALSE(Auroc({}, {}).ok());
}

}  // namespace
}  // namespace musc
