// Detection metrics, in one place for the CLI's eval, the benchmarks and the tests: image- and
// pixel-level AUROC, AP and F1-max, and PRO, each matching the value the MuSc reference
// (xrli-U/MuSc utils/metrics.py, scikit-learn and scikit-image underneath) computes — see
// MUSC-SPEC §7. LibTorch-free (also built under ASan/UBSan).
//
// Sizes: pixel metrics run over N·H·W values (millions). Every function sorts at most once,
// O(n log n) time and O(n) extra memory; PRO is O(n log T) for T thresholds.
//
// Errors (absl::InvalidArgumentError): empty input, sizes that differ, a class that is absent,
// a score or map value that is NaN or infinite (scikit-learn rejects both), a mask value other
// than 0/1. PRO also fails (absl::FailedPreconditionError) where the reference would produce NaN
// or raise: no defect region, no normal pixel, constant maps, fewer than two kept thresholds or
// no spread in their FPRs.
#ifndef MUSC_EVAL_METRICS_H_
#define MUSC_EVAL_METRICS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace musc {

// The q-quantile of a sample by rank (the value at index ⌊q·n⌋ of the sorted values, the last one
// for q = 1), as latency reports use it. 0 for an empty sample.
double Percentile(std::vector<double> values, double q);

// Area under the ROC curve of `scores` against binary `labels` (true = anomalous, the positive
// class), computed exactly (integer pair counts) as the Mann–Whitney U statistic with tied
// scores given half credit — the same value as scikit-learn's roc_auc_score.
absl::StatusOr<double> Auroc(const std::vector<double>& scores, const std::vector<bool>& labels);

// scikit-learn's average_precision_score: Σ (R_k − R_{k−1}) · P_k over the distinct score
// thresholds, highest first (a step function, no interpolation; tied scores form one threshold).
absl::StatusOr<double> AveragePrecision(const std::vector<double>& scores,
                                        const std::vector<bool>& labels);

// The best F1 over all thresholds, as MuSc computes it from precision_recall_curve: the maximum
// of 2PR/(P+R) over the distinct thresholds and the curve's final (P=1, R=0) point, skipping
// the 0/0 points (no true positive yet). Never below 0.
absl::StatusOr<double> F1Max(const std::vector<double>& scores, const std::vector<bool>& labels);

struct DetectionMetrics {
  double auroc = 0;
  double average_precision = 0;
  double f1_max = 0;
};

// The three metrics above from one sort (the same values as the single-metric calls).
absl::StatusOr<DetectionMetrics> ComputeDetectionMetrics(const std::vector<double>& scores,
                                                         const std::vector<bool>& labels);

// Pixel level: AUROC, AP and F1-max of all map values against the masks (1 = defect), from one
// sort, without copying the inputs to doubles first. `maps` and `masks` are caller-owned flat
// arrays of equal length (e.g. N×H×W, any order, as long as both share it).
absl::StatusOr<DetectionMetrics> ComputePixelMetrics(absl::Span<const float> maps,
                                                     absl::Span<const uint8_t> masks);

// Per-region overlap (PRO) as MuSc's cal_pro_score: `maps` and `masks` are N×H×W, row-major,
// caller-owned; masks are 0/1. Thresholds are np.arange(min, max, (max − min) / num_thresholds)
// over all maps (usually num_thresholds values, one more when that division rounds up); at each,
// a pixel is flagged when its value is > the threshold; PRO is the mean over every 8-connected
// defect region of all images of its flagged fraction, FPR the flagged fraction of all normal
// pixels. Points with FPR < max_fpr are kept, their FPRs rescaled to [0, 1] by their own min and
// max, and the area under PRO(FPR) is taken with the trapezoid rule. Map values are compared in
// double precision, as the reference's float64 maps are.
absl::StatusOr<double> Pro(absl::Span<const float> maps, absl::Span<const uint8_t> masks, int64_t n,
                           int64_t h, int64_t w, int num_thresholds = 200, double max_fpr = 0.3);

}  // namespace musc

#endif  // MUSC_EVAL_METRICS_H_
