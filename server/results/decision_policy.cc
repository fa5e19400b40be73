#include "server/results/decision_policy.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace musc {
namespace {

// Map values kept per part for mask estimates: enough for a stable pooled median/MAD, small
// enough that a window of 200 parts holds 50 k doubles.
constexpr size_t kPixelsPerMap = 256;
// MAD × 1.4826 estimates the standard deviation of normally distributed data.
constexpr double kMadToSigma = 1.4826;

std::vector<double> SubsamplePixels(absl::Span<const float> map) {
  std::vector<double> out;
  if (map.empty()) return out;
  const size_t step = std::max<size_t>(1, map.size() / kPixelsPerMap);
  for (size_t k = step / 2; k < map.size(); k += step) out.push_back(map[k]);
  return out;
}

bool IsAnomalous(float score, double threshold) { return score > threshold; }

}  // namespace

void DecisionToProto(const Decision& d, v1::Decision* out) {
  out->set_decided(d.decided);
  out->set_is_anomalous(d.is_anomalous);
  out->set_threshold(d.threshold);
  out->set_policy(d.policy);
  if (d.mask_threshold) out->set_mask_threshold(*d.mask_threshold);
  out->set_scores_used(static_cast<uint32_t>(d.scores_used));
  out->set_alarm(d.alarm);
  out->set_anomalous_fraction(d.anomalous_fraction);
}

const char* ThresholdKindName(ThresholdKind kind) {
  switch (kind) {
    case ThresholdKind::kNone:
      return "none";
    case ThresholdKind::kFixed:
      return "fixed";
    case ThresholdKind::kRobust:
      return "robust";
    case ThresholdKind::kQuantile:
      return "quantile";
  }
  return "none";
}

absl::Status ValidateDecisionConfig(const DecisionConfig& c) {
  for (const auto& [name, t] :
       {std::pair<const char*, const ThresholdConfig&>{"image", c.image}, {"mask", c.mask}}) {
    if (t.kind == ThresholdKind::kRobust && !(t.k > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": robust k must be > 0"));
    }
    if (t.kind == ThresholdKind::kQuantile &&
        !(t.expected_defect_rate > 0 && t.expected_defect_rate < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": expected_defect_rate must be in (0, 1)"));
    }
    if (t.kind == ThresholdKind::kFixed && !std::isfinite(t.threshold)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": threshold must be finite"));
    }
  }
  if (c.window < 2) return absl::InvalidArgumentError("decision window must be at least 2");
  if (c.min_scores < 2 || c.min_scores > c.window) {
    return absl::InvalidArgumentError("decision min_scores must be in [2, window]");
  }
  if (!(c.alarm_fraction > 0 && c.alarm_fraction <= 1)) {
    return absl::InvalidArgumentError("decision alarm_fraction must be in (0, 1]");
  }
  return absl::OkStatus();
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  const double upper = values[mid];
  if (values.size() % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + mid);
  return 0.5 * (lower + upper);
}

double MedianAbsoluteDeviation(const std::vector<double>& values, double median) {
  std::vector<double> deviations;
  deviations.reserve(values.size());
  for (double v : values) deviations.push_back(std::abs(v - median));
  return Median(std::move(deviations));
}

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double position = std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(values.size() - 1, below + 1);
  const double t = position - static_cast<double>(below);
  return values[below] * (1 - t) + values[above] * t;
}

std::optional<double> EstimateThreshold(const ThresholdConfig& config,
                                        const std::vector<double>& sample) {
  switch (config.kind) {
    case ThresholdKind::kNone:
      return std::nullopt;
    case ThresholdKind::kFixed:
      return config.threshold;
    case ThresholdKind::kRobust: {
      if (sample.empty()) return std::nullopt;
      const double median = Median(sample);
      return median + config.k * kMadToSigma * MedianAbsoluteDeviation(sample, median);
    }
    case ThresholdKind::kQuantile:
      if (sample.empty()) return std::nullopt;
      return Quantile(sample, 1.0 - config.expected_defect_rate);
  }
  return std::nullopt;
}

std::vector<Decision> DecideBatch(const DecisionConfig& config,
                                  const std::vector<float>& raw_scores,
                                  const std::vector<absl::Span<const float>>& maps) {
  std::vector<Decision> out(raw_scores.size());
  const std::vector<double> sample(raw_scores.begin(), raw_scores.end());
  const std::optional<double> threshold = EstimateThreshold(config.image, sample);
  std::vector<double> pixels;
  for (absl::Span<const float> map : maps) {
    const std::vector<double> s = SubsamplePixels(map);
    pixels.insert(pixels.end(), s.begin(), s.end());
  }
  const std::optional<double> mask = EstimateThreshold(config.mask, pixels);
  size_t anomalous = 0;
  for (size_t i = 0; i < raw_scores.size(); ++i) {
    Decision& d = out[i];
    d.policy = ThresholdKindName(config.image.kind);
    d.scores_used = config.image.kind == ThresholdKind::kFixed ? 0 : sample.size();
    if (mask) d.mask_threshold = static_cast<float>(*mask);
    if (!threshold) continue;
    d.decided = true;
    d.threshold = static_cast<float>(*threshold);
    d.is_anomalous = IsAnomalous(raw_scores[i], *threshold);
    anomalous += d.is_anomalous ? 1 : 0;
  }
  const double fraction =
      raw_scores.empty() ? 0
                         : static_cast<double>(anomalous) / static_cast<double>(raw_scores.size());
  for (Decision& d : out) {
    d.anomalous_fraction = fraction;
    d.alarm = d.decided && fraction > config.alarm_fraction;
  }
  return out;
}

Decision LineDecider::Decide(float raw_score) const {
  Decision d;
  d.policy = ThresholdKindName(config_.image.kind);
  const bool estimated = config_.image.kind == ThresholdKind::kRobust ||
                         config_.image.kind == ThresholdKind::kQuantile;
  const std::vector<double> sample(scores_.begin(), scores_.end());
  std::optional<double> threshold;
  if (!estimated || sample.size() >= config_.min_scores) {
    threshold = EstimateThreshold(config_.image, sample);
  }
  if (threshold) {
    d.decided = true;
    d.threshold = static_cast<float>(*threshold);
    d.is_anomalous = IsAnomalous(raw_score, *threshold);
    d.scores_used = estimated ? sample.size() : 0;
  }
  const bool mask_estimated =
      config_.mask.kind == ThresholdKind::kRobust || config_.mask.kind == ThresholdKind::kQuantile;
  if (!mask_estimated || pixel_samples_.size() >= config_.min_scores) {
    std::vector<double> pixels;
    for (const std::vector<double>& s : pixel_samples_)
      pixels.insert(pixels.end(), s.begin(), s.end());
    if (const std::optional<double> mask = EstimateThreshold(config_.mask, pixels)) {
      d.mask_threshold = static_cast<float>(*mask);
    }
  }
  size_t anomalous = 0;
  for (bool v : verdicts_) anomalous += v ? 1 : 0;
  d.anomalous_fraction =
      verdicts_.empty() ? 0
                        : static_cast<double>(anomalous) / static_cast<double>(verdicts_.size());
  d.alarm = verdicts_.size() >= config_.min_scores && d.anomalous_fraction > config_.alarm_fraction;
  return d;
}

void LineDecider::Observe(float raw_score, const std::vector<float>& map,
                          const Decision& decision) {
  scores_.push_back(raw_score);
  score_verdicts_.push_back(decision.decided ? (decision.is_anomalous ? 1 : 0) : -1);
  if (decision.decided) verdicts_.push_back(decision.is_anomalous);
  if (config_.mask.kind == ThresholdKind::kRobust ||
      config_.mask.kind == ThresholdKind::kQuantile) {
    pixel_samples_.push_back(SubsamplePixels(map));
  }
  while (scores_.size() > config_.window) scores_.pop_front();
  while (score_verdicts_.size() > config_.window) score_verdicts_.pop_front();
  while (verdicts_.size() > config_.window) verdicts_.pop_front();
  while (pixel_samples_.size() > config_.window) pixel_samples_.pop_front();
}

std::string LineDecider::SerializeWindow() const {
  std::ostringstream out;
  out.precision(9);
  for (size_t k = 0; k < scores_.size(); ++k)
    out << scores_[k] << " " << score_verdicts_[k] << "\n";
  return out.str();
}

void LineDecider::RestoreWindow(const std::string& text) {
  std::istringstream in(text);
  double score = 0;
  int verdict = 0;
  while (in >> score >> verdict) {
    if (!std::isfinite(score) || verdict < -1 || verdict > 1) continue;
    scores_.push_back(score);
    score_verdicts_.push_back(verdict);
    if (verdict >= 0) verdicts_.push_back(verdict == 1);
  }
  while (scores_.size() > config_.window) scores_.pop_front();
  while (score_verdicts_.size() > config_.window) score_verdicts_.pop_front();
  while (verdicts_.size() > config_.window) verdicts_.pop_front();
}

}  // namespace musc
