#include "eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

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

// By hand from the step-function definitions. Scores 0.8 (+), 0.4 (−), 0.35 (+), 0.1 (−):
// thresholds give (P, R) = (1, ½), (½, ½), (⅔, 1), (½, 1).
TEST(MetricsTest, AveragePrecisionAndF1MaxByHand) {
  const std::vector<double> scores = {0.1, 0.4, 0.35, 0.8};
  const std::vector<bool> labels = {false, false, true, true};
  // AP = ½·1 + 0·½ + ½·⅔ = 5/6.
  EXPECT_DOUBLE_EQ(*AveragePrecision(scores, labels), 5.0 / 6.0);
  // F1: 2/3, 1/2, 4/5, 2/3 → 0.8.
  EXPECT_DOUBLE_EQ(*F1Max(scores, labels), 0.8);
  // A tie across classes is one threshold: {0.5+, 0.5−} then 0.2−, 0.7+ first.
  // (P, R): 0.7 → (1, ½); 0.5 → (⅔, 1); 0.2 → (½, 1). AP = ½ + ½·⅔ = 5/6, F1-max = 0.8.
  EXPECT_DOUBLE_EQ(*AveragePrecision({0.2, 0.5, 0.5, 0.7}, labels), 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(*F1Max({0.2, 0.5, 0.5, 0.7}, labels), 0.8);
}

TEST(MetricsTest, CombinedCallsAgreeWithSingleMetrics) {
  const std::vector<double> scores = {0.3, 0.3, 0.9, 0.1, 0.5, 0.5, 0.7};
  const std::vector<bool> labels = {true, false, true, false, false, true, false};
  const absl::StatusOr<DetectionMetrics> all = ComputeDetectionMetrics(scores, labels);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->auroc, *Auroc(scores, labels));
  EXPECT_EQ(all->average_precision, *AveragePrecision(scores, labels));
  EXPECT_EQ(all->f1_max, *F1Max(scores, labels));
}

TEST(MetricsTest, RejectsBadInput) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (const auto& f : {&Auroc, &AveragePrecision, &F1Max}) {
    EXPECT_EQ(f({0.1, 0.2}, {true}).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(f({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(f({0.1, 0.2}, {false, false}).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(f({0.1, nan}, {false, true}).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(f({0.1, inf}, {false, true}).status().code(), absl::StatusCode::kInvalidArgument);
  }
  const absl::Status missing = F1Max({0.1, 0.2}, {true, true}).status();
  EXPECT_NE(missing.message().find("both classes"), std::string::npos) << missing;

  const std::vector<float> maps = {0.1f, 0.2f, 0.3f};
  EXPECT_FALSE(ComputePixelMetrics(maps, std::vector<uint8_t>{0, 1}).ok());
  EXPECT_FALSE(ComputePixelMetrics(maps, std::vector<uint8_t>{0, 1, 2}).ok());  // Not 0/1.
  EXPECT_FALSE(ComputePixelMetrics(maps, std::vector<uint8_t>{1, 1, 1}).ok());
  EXPECT_FALSE(ComputePixelMetrics({}, {}).ok());
  const std::vector<float> nan_maps = {0.1f, std::numeric_limits<float>::quiet_NaN(), 0.3f};
  EXPECT_FALSE(ComputePixelMetrics(nan_maps, std::vector<uint8_t>{0, 1, 0}).ok());
}

TEST(ProTest, RejectsBadInput) {
  // One 2×3 image: a defect pixel, normal pixels with spread-out values.
  const std::vector<float> maps = {0.9f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  const std::vector<uint8_t> masks = {1, 0, 0, 0, 0, 0};
  EXPECT_EQ(Pro(maps, masks, 1, 2, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pro(maps, std::vector<uint8_t>(5), 1, 2, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pro({}, {}, 0, 2, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pro(maps, masks, 1, 2, 3, 0).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> bad_mask = masks;
  bad_mask[2] = 255;
  EXPECT_EQ(Pro(maps, bad_mask, 1, 2, 3).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> nan_maps = maps;
  nan_maps[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(Pro(nan_maps, masks, 1, 2, 3).status().code(), absl::StatusCode::kInvalidArgument);
  // Where the reference yields NaN or raises.
  EXPECT_EQ(Pro(maps, std::vector<uint8_t>(6, 0), 1, 2, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);  // No defect region.
  EXPECT_EQ(Pro(maps, std::vector<uint8_t>(6, 1), 1, 2, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);  // No normal pixel.
  EXPECT_EQ(Pro(std::vector<float>(6, 0.5f), masks, 1, 2, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);  // Constant maps.
  // Maps equal to the masks: every kept threshold has FPR 0, so the rescale is 0/0.
  EXPECT_EQ(Pro(std::vector<float>{1, 0, 0, 0, 0, 0}, masks, 1, 2, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// One region covering all but the first row of a 1000×1000 image (999,000 pixels: an iterative
// fill, no recursion), scored 1 while the normal row ramps over [0, 1): every kept threshold
// flags the whole region, so PRO is 1 at every point and the area is 1.
TEST(ProTest, HugeRegionFullyDetected) {
  const int64_t h = 1000, w = 1000;
  std::vector<float> maps(h * w, 1.0f);
  std::vector<uint8_t> masks(h * w, 1);
  for (int64_t x = 0; x < w; ++x) {
    maps[x] = static_cast<float>(x) / static_cast<float>(w);
    masks[x] = 0;
  }
  const absl::StatusOr<double> pro = Pro(maps, masks, 1, h, w);
  ASSERT_TRUE(pro.ok()) << pro.status();
  EXPECT_NEAR(*pro, 1.0, 1e-12);
}

// --- Reference values from scikit-learn / scikit-image (tests/fixtures/metrics) ---------------

struct BinaryCase {
  std::string name;
  std::vector<float> scores;
  std::vector<uint8_t> labels;
  double auroc = 0, ap = 0, f1max = 0;
};

struct ProCase {
  std::string name;
  int64_t n = 0, h = 0, w = 0;
  int steps = 0;
  double max_fpr = 0;
  std::vector<float> maps;
  std::vector<uint8_t> masks;
  double expect = 0;
};

struct Fixtures {
  std::vector<BinaryCase> binary;
  std::vector<ProCase> pro;
  std::string error;  // Non-empty when the file is missing or malformed.
};

// Reads metrics_fixtures.txt (format in make_metrics_fixtures.py). Values are float32 written
// in their shortest form, so strtof recovers the exact values the references saw.
Fixtures LoadFixtures() {
  Fixtures f;
  const std::string path = std::string(MUSC_FIXTURES_DIR) + "/metrics/metrics_fixtures.txt";
  std::ifstream in(path);
  if (!in) {
    f.error = "cannot open " + path;
    return f;
  }
  auto fail = [&](const std::string& why) {
    if (f.error.empty()) f.error = path + ": " + why;
    return false;
  };
  auto expect_word = [&](const std::string& want) {
    std::string got;
    return (in >> got && got == want) || fail("expected '" + want + "', got '" + got + "'");
  };
  auto read_double = [&](double* out) {
    std::string token;
    if (!(in >> token)) return fail("unexpected end of file");
    char* end = nullptr;
    *out = std::strtod(token.c_str(), &end);
    return *end == '\0' || fail("bad number '" + token + "'");
  };
  auto read_floats = [&](size_t count, std::vector<float>* out) {
    std::string token;
    for (size_t i = 0; i < count; ++i) {
      if (!(in >> token)) return fail("unexpected end of file");
      char* end = nullptr;
      out->push_back(std::strtof(token.c_str(), &end));
      if (*end != '\0') return fail("bad number '" + token + "'");
    }
    return true;
  };
  auto read_bits = [&](size_t count, std::vector<uint8_t>* out) {
    int v = 0;
    for (size_t i = 0; i < count; ++i) {
      if (!(in >> v) || (v != 0 && v != 1)) return fail("bad 0/1 value");
      out->push_back(static_cast<uint8_t>(v));
    }
    return true;
  };
  std::string word;
  while (f.error.empty() && in >> word) {
    if (word[0] == '#') {
      std::getline(in, word);
    } else if (word == "binary") {
      BinaryCase c;
      size_t count = 0;
      if (!(in >> c.name >> count)) {
        fail("bad binary header");
        break;
      }
      if (expect_word("scores") && read_floats(count, &c.scores) && expect_word("labels") &&
          read_bits(count, &c.labels) && expect_word("auroc") && read_double(&c.auroc) &&
          expect_word("ap") && read_double(&c.ap) && expect_word("f1max") &&
          read_double(&c.f1max)) {
        f.binary.push_back(std::move(c));
      }
    } else if (word == "pro") {
      ProCase c;
      if (!(in >> c.name >> c.n >> c.h >> c.w >> c.steps >> c.max_fpr)) {
        fail("bad pro header");
        break;
      }
      const size_t count = static_cast<size_t>(c.n * c.h * c.w);
      if (expect_word("maps") && read_floats(count, &c.maps) && expect_word("masks") &&
          read_bits(count, &c.masks) && expect_word("expect") && read_double(&c.expect)) {
        f.pro.push_back(std::move(c));
      }
    } else {
      fail("unknown record '" + word + "'");
    }
  }
  return f;
}

const Fixtures& GetFixtures() {
  static const Fixtures* const fixtures = new Fixtures(LoadFixtures());
  return *fixtures;
}

// The fixture is committed: a missing or truncated file is a failure, never a skip.
TEST(MetricsFixtureTest, FixtureFileIsComplete) {
  const Fixtures& f = GetFixtures();
  ASSERT_TRUE(f.error.empty()) << f.error;
  EXPECT_EQ(f.binary.size(), 14u);
  EXPECT_EQ(f.pro.size(), 7u);
}

TEST(MetricsFixtureTest, AurocApF1MatchScikitLearn) {
  const Fixtures& f = GetFixtures();
  ASSERT_TRUE(f.error.empty()) << f.error;
  ASSERT_FALSE(f.binary.empty());
  for (const BinaryCase& c : f.binary) {
    SCOPED_TRACE(c.name);
    const std::vector<double> scores(c.scores.begin(), c.scores.end());
    const std::vector<bool> labels(c.labels.begin(), c.labels.end());
    const absl::StatusOr<double> auroc = Auroc(scores, labels);
    const absl::StatusOr<double> ap = AveragePrecision(scores, labels);
    const absl::StatusOr<double> f1 = F1Max(scores, labels);
    ASSERT_TRUE(auroc.ok() && ap.ok() && f1.ok());
    EXPECT_NEAR(*auroc, c.auroc, 1e-9);
    EXPECT_NEAR(*ap, c.ap, 1e-9);
    EXPECT_NEAR(*f1, c.f1max, 1e-9);
    // The same values through the one-sort entry points, double and float.
    const absl::StatusOr<DetectionMetrics> all = ComputeDetectionMetrics(scores, labels);
    const absl::StatusOr<DetectionMetrics> pixel = ComputePixelMetrics(c.scores, c.labels);
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_TRUE(pixel.ok()) << pixel.status();
    for (const DetectionMetrics& m : {*all, *pixel}) {
      EXPECT_NEAR(m.auroc, c.auroc, 1e-9);
      EXPECT_NEAR(m.average_precision, c.ap, 1e-9);
      EXPECT_NEAR(m.f1_max, c.f1max, 1e-9);
    }
  }
}

TEST(MetricsFixtureTest, ProMatchesMuscReference) {
  const Fixtures& f = GetFixtures();
  ASSERT_TRUE(f.error.empty()) << f.error;
  ASSERT_FALSE(f.pro.empty());
  for (const ProCase& c : f.pro) {
    SCOPED_TRACE(c.name);
    const absl::StatusOr<double> pro = Pro(c.maps, c.masks, c.n, c.h, c.w, c.steps, c.max_fpr);
    ASSERT_TRUE(pro.ok()) << pro.status();
    EXPECT_NEAR(*pro, c.expect, 1e-6);
  }
}

}  // namespace
}  // namespace musc
