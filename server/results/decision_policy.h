// Label-free decisions: turning MuSc's raw scores (and map values) into "anomalous or not"
// without labelled examples. A product chooses a fixed threshold, or one estimated from the score
// distribution of recent parts:
//   robust    median + k · 1.4826 · MAD — a normal-consistent z-score that a minority of defective
//             parts cannot drag (breakdown point 50 %);
//   quantile  the (1 − expected_defect_rate) quantile — for lines with a known defect rate.
// Pixel masks choose the same way, over pooled map values of recent parts.
//
// Thread-compatible: the owner serialises calls (a product's line, or one batch at a time).
#ifndef MUSC_SERVER_RESULTS_DECISION_POLICY_H_
#define MUSC_SERVER_RESULTS_DECISION_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "musc/v1/musc_service.pb.h"

namespace musc {

enum class ThresholdKind { kNone, kFixed, kRobust, kQuantile };

struct ThresholdConfig {
  ThresholdKind kind = ThresholdKind::kNone;
  double threshold = 0;             // kFixed.
  double k = 4.0;                   // kRobust: MADs above the median.
  double expected_defect_rate = 0;  // kQuantile: in (0, 1).
};

struct DecisionConfig {
  ThresholdConfig image;   // On raw scores.
  ThresholdConfig mask;    // On map values.
  size_t window = 200;     // Recent parts whose scores the estimates use (line mode).
  size_t min_scores = 16;  // Estimates start once this many scores are known.
  // Alarm when more than this fraction of the window was judged anomalous: most often a defect
  // that has become common (see docs/LINE_MODE.md), or a changed product.
  double alarm_fraction = 0.3;
};

// "none" | "fixed" | "robust" | "quantile".
const char* ThresholdKindName(ThresholdKind kind);
absl::Status ValidateDecisionConfig(const DecisionConfig& config);

struct Decision {
  bool decided = false;  // False until a threshold exists (policy none, or too few scores).
  bool is_anomalous = false;
  float threshold = 0;                  // The raw-score threshold used.
  std::optional<float> mask_threshold;  // The map threshold used, if any.
  const char* policy = "none";
  size_t scores_used = 0;  // Scores the estimate came from (0 for fixed).
  bool alarm = false;      // The recent anomalous fraction exceeds alarm_fraction.
  double anomalous_fraction = 0;
};

void DecisionToProto(const Decision& decision, v1::Decision* out);

// Robust statistics on a sample (copied; the input is unchanged). Empty input gives 0.
double Median(std::vector<double> values);
double MedianAbsoluteDeviation(const std::vector<double>& values, double median);
double Quantile(std::vector<double> values, double q);  // Linear interpolation, q in [0, 1].

// One threshold from a sample under a config; nullopt for kNone or an empty sample.
std::optional<double> EstimateThreshold(const ThresholdConfig& config,
                                        const std::vector<double>& sample);

// Decisions for a whole batch, estimated from the batch itself: MuSc's own premise is that most
// of a batch is normal, so the batch is its own reference. `maps` holds each image's map values
// (may be empty: no mask decision).
std::vector<Decision> DecideBatch(const DecisionConfig& config,
                                  const std::vector<float>& raw_scores,
                                  const std::vector<absl::Span<const float>>& maps);

// Rolling decisions for a line: each part is judged against the window of parts before it, then
// joins the window.
class LineDecider {
 public:
  explicit LineDecider(DecisionConfig config) : config_(std::move(config)) {}

  // The decision for a part with this raw score (and map), from the parts seen so far.
  Decision Decide(float raw_score) const;
  // Adds the part to the window (after Decide), with its verdict for the alarm.
  void Observe(float raw_score, const std::vector<float>& map, const Decision& decision);
  size_t window_size() const { return scores_.size(); }

  // The window as text (one "score verdict" line per part; verdict -1 = undecided), to persist it
  // with a line's state, and back. Restore ignores malformed lines. Map samples are not kept: an
  // estimated mask threshold starts again after a restart.
  std::string SerializeWindow() const;
  void RestoreWindow(const std::string& text);

 private:
  const DecisionConfig config_;
  std::deque<double> scores_;
  std::deque<int> score_verdicts_;  // Per score: 1 anomalous, 0 normal, -1 undecided.
  std::deque<bool> verdicts_;
  // A subsample of each recent map's values, for estimated mask thresholds.
  std::deque<std::vector<double>> pixel_samples_;
};

}  // namespace musc

#endif  // MUSC_SERVER_RESULTS_DECISION_POLICY_H_
