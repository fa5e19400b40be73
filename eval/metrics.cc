#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace musc {
namespace {

// Folds the distinct thresholds, visited from the highest score down, into AUROC, AP and F1-max.
// Each step mirrors the floating-point expression scikit-learn (and MuSc for F1) evaluates, so the
// results agree to the last few bits; AUROC is kept in integers until the final division.
class DetectionAccumulator {
 public:
  DetectionAccumulator(uint64_t positives, uint64_t negatives)
      : positives_(positives), negatives_(negatives) {}

  // One distinct threshold: `tp_group` positives and `fp_group` negatives share its score.
  void Add(uint64_t tp_group, uint64_t fp_group) {
    // Each negative here is outranked by every positive above and ties with those in the group
    // (half credit, so doubled). Fits in 64 bits up to ~6e9 samples.
    auc_twice_ += fp_group * (2 * tp_ + tp_group);
    tp_ += tp_group;
    fp_ += fp_group;
    const double tps = static_cast<double>(tp_);
    const double precision = tps / (tps + static_cast<double>(fp_));
    const double recall = tps / static_cast<double>(positives_);
    // average_precision_score: -sum(diff(recall) * precision[:-1]) over the reversed curve.
    average_precision_ += (recall - previous_recall_) * precision;
    previous_recall_ = recall;
    // MuSc drops non-finite F1 values: 0/0 where no true positive has been reached yet.
    if (tp_ > 0) f1_max_ = std::max(f1_max_, (2 * precision * recall) / (precision + recall));
  }

  DetectionMetrics Finish() const {
    DetectionMetrics m;
    m.auroc = static_cast<double>(auc_twice_) /
              (2.0 * static_cast<double>(positives_) * static_cast<double>(negatives_));
    m.average_precision = average_precision_;
    m.f1_max = f1_max_;
    return m;
  }

 private:
  const uint64_t positives_, negatives_;
  uint64_t tp_ = 0, fp_ = 0;
  uint64_t auc_twice_ = 0;
  double average_precision_ = 0;
  double previous_recall_ = 0;
  // The curve's appended (P = 1, R = 0) point has F1 = 0, so the maximum starts there.
  double f1_max_ = 0;
};

// Validates `count` (score, label) pairs, splits the scores by class, sorts each class once
// (highest first) and walks both in step, one distinct threshold at a time. Sorting the classes
// apart keeps the extra memory at one score per sample (no index or pair arrays).
// `label_at(i)` returns the raw label; anything but 0 or 1 is an error.
template <typename Score, typename ScoreAt, typename LabelAt>
absl::StatusOr<DetectionMetrics> SweepThresholds(const char* what, size_t count, ScoreAt score_at,
                                                 LabelAt label_at) {
  if (count == 0) return absl::InvalidArgumentError(absl::StrCat(what, ": no samples"));
  size_t positives = 0;
  for (size_t i = 0; i < count; ++i) {
    const int label = label_at(i);
    if (label != 0 && label != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": label ", label, " at index ", i, " is neither 0 nor 1"));
    }
    if (!std::isfinite(score_at(i))) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": score at index ", i, " is ", score_at(i), " (not finite)"));
    }
    positives += static_cast<size_t>(label);
  }
  const size_t negatives = count - positives;
  if (positives == 0 || negatives == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is undefined without both classes present (", positives,
                     " anomalous, ", negatives, " normal)"));
  }
  std::vector<Score> pos, neg;
  pos.reserve(positives);
  neg.reserve(negatives);
  for (size_t i = 0; i < count; ++i) (label_at(i) ? pos : neg).push_back(score_at(i));
  std::sort(pos.begin(), pos.end(), std::greater<Score>());
  std::sort(neg.begin(), neg.end(), std::greater<Score>());

  DetectionAccumulator acc(positives, negatives);
  size_t i = 0, j = 0;
  while (i < pos.size() || j < neg.size()) {
    const bool take_pos = j == neg.size() || (i < pos.size() && pos[i] >= neg[j]);
    const Score threshold = take_pos ? pos[i] : neg[j];
    uint64_t tp_group = 0, fp_group = 0;
    for (; i < pos.size() && pos[i] == threshold; ++i) ++tp_group;
    for (; j < neg.size() && neg[j] == threshold; ++j) ++fp_group;
    acc.Add(tp_group, fp_group);
  }
  return acc.Finish();
}

absl::StatusOr<DetectionMetrics> SweepVectors(const char* what, const std::vector<double>& scores,
                                              const std::vector<bool>& labels) {
  if (scores.size() != labels.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", scores.size(), " scores but ", labels.size(), " labels"));
  }
  return SweepThresholds<double>(
      what, scores.size(), [&](size_t i) { return scores[i]; },
      [&](size_t i) { return labels[i] ? 1 : 0; });
}

// Connected defect regions of one H×W mask, 8-connectivity (scikit-image's label() default in
// 2-D). Iterative flood fill with an explicit stack, so one huge region cannot overflow the call
// stack. Calls `on_region(pixels)` with the flat indices of each region.
class RegionFinder {
 public:
  RegionFinder(int64_t h, int64_t w) : h_(h), w_(w), seen_(static_cast<size_t>(h * w)) {}

  template <typename OnRegion>
  void ForEachRegion(const uint8_t* mask, OnRegion on_region) {
    std::fill(seen_.begin(), seen_.end(), uint8_t{0});
    const size_t plane = seen_.size();
    for (size_t start = 0; start < plane; ++start) {
      if (!mask[start] || seen_[start]) continue;
      region_.clear();
      stack_.clear();
      stack_.push_back(start);
      seen_[start] = 1;
      while (!stack_.empty()) {
        const size_t p = stack_.back();
        stack_.pop_back();
        region_.push_back(p);
        const int64_t y = static_cast<int64_t>(p) / w_, x = static_cast<int64_t>(p) % w_;
        for (int64_t ny = std::max<int64_t>(y - 1, 0); ny <= std::min(y + 1, h_ - 1); ++ny) {
          for (int64_t nx = std::max<int64_t>(x - 1, 0); nx <= std::min(x + 1, w_ - 1); ++nx) {
            const size_t q = static_cast<size_t>(ny * w_ + nx);
            if (mask[q] && !seen_[q]) {
              seen_[q] = 1;
              stack_.push_back(q);
            }
          }
        }
      }
      on_region(region_);
    }
  }

 private:
  const int64_t h_, w_;
  std::vector<uint8_t> seen_;
  std::vector<size_t> stack_, region_;
};

// The thresholds of np.arange(lo, hi, (hi - lo) / steps) on float64, bit for bit: numpy takes
// the length as ceil((hi - lo) / delta) — steps or, after rounding, steps + 1 — sets the first two
// values to lo and lo + delta, and fills the rest as lo + i * (second - first).
absl::StatusOr<std::vector<double>> ArangeThresholds(double lo, double hi, int steps) {
  const double delta = (hi - lo) / steps;
  if (!(delta > 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat("PRO: map range ", hi - lo, " is too small for ", steps, " thresholds"));
  }
  const double length = std::ceil((hi - lo) / delta);
  if (!(length >= 1 && length <= static_cast<double>(steps) + 1)) {
    return absl::InternalError(absl::StrCat("PRO: unexpected threshold count ", length));
  }
  std::vector<double> thresholds(static_cast<size_t>(length));
  thresholds[0] = lo;
  if (thresholds.size() > 1) thresholds[1] = lo + delta;
  const double step = thresholds.size() > 1 ? thresholds[1] - thresholds[0] : 0.0;
  for (size_t i = 2; i < thresholds.size(); ++i) {
    thresholds[i] = lo + static_cast<double>(i) * step;
  }
  // Counting flagged thresholds by binary search below needs them in order.
  if (!std::is_sorted(thresholds.begin(), thresholds.end())) {
    return absl::InternalError("PRO: thresholds are not ascending");
  }
  return thresholds;
}

}  // namespace

absl::StatusOr<double> Auroc(const std::vector<double>& scores, const std::vector<bool>& labels) {
  MUSC_ASSIGN_OR_RETURN(DetectionMetrics m, SweepVectors("AUROC", scores, labels));
  return m.auroc;
}

absl::StatusOr<double> AveragePrecision(const std::vector<double>& scores,
                                        const std::vector<bool>& labels) {
  MUSC_ASSIGN_OR_RETURN(DetectionMetrics m, SweepVectors("AP", scores, labels));
  return m.average_precision;
}

absl::StatusOr<double> F1Max(const std::vector<double>& scores, const std::vector<bool>& labels) {
  MUSC_ASSIGN_OR_RETURN(DetectionMetrics m, SweepVectors("F1-max", scores, labels));
  return m.f1_max;
}

absl::StatusOr<DetectionMetrics> ComputeDetectionMetrics(const std::vector<double>& scores,
                                                         const std::vector<bool>& labels) {
  return SweepVectors("detection metrics", scores, labels);
}

absl::StatusOr<DetectionMetrics> ComputePixelMetrics(absl::Span<const float> maps,
                                                     absl::Span<const uint8_t> masks) {
  if (maps.size() != masks.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pixel metrics: ", maps.size(), " map values but ", masks.size(), " mask values"));
  }
  return SweepThresholds<float>(
      "pixel metrics", maps.size(), [&](size_t i) { return maps[i]; },
      [&](size_t i) { return static_cast<int>(masks[i]); });
}

absl::StatusOr<double> Pro(absl::Span<const float> maps, absl::Span<const uint8_t> masks, int64_t n,
                           int64_t h, int64_t w, int num_thresholds, double max_fpr) {
  if (n <= 0 || h <= 0 || w <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("PRO: map dimensions ", n, "×", h, "×", w, " must all be positive"));
  }
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  if (h > kMax / w || n > kMax / (h * w)) {
    return absl::InvalidArgumentError("PRO: map dimensions overflow");
  }
  const size_t plane = static_cast<size_t>(h * w);
  const size_t total = static_cast<size_t>(n) * plane;
  if (maps.size() != total || masks.size() != total) {
    return absl::InvalidArgumentError(absl::StrCat("PRO: ", n, "×", h, "×", w, " = ", total,
                                                   " pixels, but ", maps.size(), " map and ",
                                                   masks.size(), " mask values"));
  }
  if (num_thresholds < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PRO: num_thresholds ", num_thresholds, " must be positive"));
  }
  if (!(max_fpr > 0) || !std::isfinite(max_fpr)) {
    return absl::InvalidArgumentError(absl::StrCat("PRO: max_fpr ", max_fpr, " must be > 0"));
  }
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (size_t i = 0; i < total; ++i) {
    if (!std::isfinite(maps[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("PRO: map value at index ", i, " is ", maps[i], " (not finite)"));
    }
    if (masks[i] > 1) {
      return absl::InvalidArgumentError(absl::StrCat("PRO: mask value ", static_cast<int>(masks[i]),
                                                     " at index ", i, " is neither 0 nor 1"));
    }
    lo = std::min(lo, maps[i]);
    hi = std::max(hi, maps[i]);
  }
  if (!(hi > lo)) {
    return absl::FailedPreconditionError("PRO is undefined for constant maps (no thresholds)");
  }
  MUSC_ASSIGN_OR_RETURN(std::vector<double> thresholds, ArangeThresholds(lo, hi, num_thresholds));
  const size_t steps = thresholds.size();

  // A pixel is flagged at threshold k (map > threshold) exactly for k < flagged_count, so one
  // histogram over flagged_count per class replaces re-thresholding the maps `steps` times.
  auto flagged_count = [&](size_t i) -> size_t {
    const double v = maps[i];  // Compared in double, as the reference's float64 maps are.
    return static_cast<size_t>(std::lower_bound(thresholds.begin(), thresholds.end(), v) -
                               thresholds.begin());
  };
  std::vector<uint64_t> normal_hist(steps + 1, 0);
  // Region r contributes tp_r(k) / area_r to the sum behind the mean. Its pixels are counted per
  // flagged_count bin in integers first and each bin added as count / area, so a region whose
  // pixels share few bins adds few rounded terms (one per bin, not one 1/area per pixel).
  std::vector<double> overlap_hist(steps + 1, 0.0);
  std::vector<uint64_t> region_hist(steps + 1, 0);
  std::vector<size_t> region_bins;
  uint64_t normals = 0, regions = 0;
  RegionFinder finder(h, w);
  for (int64_t image = 0; image < n; ++image) {
    const size_t offset = static_cast<size_t>(image) * plane;
    const uint8_t* mask = masks.data() + offset;
    finder.ForEachRegion(mask, [&](const std::vector<size_t>& pixels) {
      region_bins.clear();
      for (size_t p : pixels) {
        const size_t bin = flagged_count(offset + p);
        if (region_hist[bin]++ == 0) region_bins.push_back(bin);
      }
      const double area = static_cast<double>(pixels.size());
      for (size_t bin : region_bins) {
        overlap_hist[bin] += static_cast<double>(region_hist[bin]) / area;
        region_hist[bin] = 0;
      }
      ++regions;
    });
    for (size_t p = 0; p < plane; ++p) {
      if (mask[p]) continue;
      ++normal_hist[flagged_count(offset + p)];
      ++normals;
    }
  }
  if (regions == 0) {
    return absl::FailedPreconditionError("PRO is undefined: the masks have no defect region");
  }
  if (normals == 0) {
    return absl::FailedPreconditionError("PRO is undefined: the masks have no normal pixel");
  }

  // Per threshold (ascending): PRO = mean overlap, FPR = flagged normals / normals, from the
  // histograms' suffix sums. Kept only where FPR < max_fpr (strictly, as the reference).
  std::vector<double> kept_fpr, kept_pro;
  uint64_t flagged_normals = 0;
  double overlap_sum = 0;
  std::vector<double> fpr(steps), pro(steps);
  for (size_t k = steps; k-- > 0;) {
    flagged_normals += normal_hist[k + 1];
    overlap_sum += overlap_hist[k + 1];
    fpr[k] = static_cast<double>(flagged_normals) / static_cast<double>(normals);
    pro[k] = overlap_sum / static_cast<double>(regions);
  }
  for (size_t k = 0; k < steps; ++k) {
    if (fpr[k] < max_fpr) {
      kept_fpr.push_back(fpr[k]);
      kept_pro.push_back(pro[k]);
    }
  }
  if (kept_fpr.size() < 2) {
    return absl::FailedPreconditionError(absl::StrCat("PRO is undefined: ", kept_fpr.size(), " of ",
                                                      steps, " thresholds have FPR < ", max_fpr,
                                                      ", at least 2 are needed"));
  }
  const auto [fpr_min, fpr_max] = std::minmax_element(kept_fpr.begin(), kept_fpr.end());
  const double lo_fpr = *fpr_min, span = *fpr_max - *fpr_min;
  if (!(span > 0)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PRO is undefined: every threshold with FPR < ", max_fpr, " has the same FPR ", lo_fpr));
  }
  for (double& x : kept_fpr) x = (x - lo_fpr) / span;

  // sklearn.metrics.auc: the trapezoid rule, negated when x only decreases (as FPR does with a
  // rising threshold).
  bool any_decrease = false, all_non_increasing = true;
  double area = 0;
  for (size_t k = 0; k + 1 < kept_fpr.size(); ++k) {
    const double dx = kept_fpr[k + 1] - kept_fpr[k];
    any_decrease = any_decrease || dx < 0;
    all_non_increasing = all_non_increasing && dx <= 0;
    area += dx * (kept_pro[k] + kept_pro[k + 1]) / 2.0;
  }
  if (any_decrease && !all_non_increasing) {
    return absl::InternalError("PRO: FPR is not monotonic in the threshold");
  }
  return any_decrease ? -area : area;
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<size_t>(q * static_cast<double>(values.size())))];
}

}  // namespace musc
