#include "eval/evaluation.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "eval/metrics.h"

namespace musc {

absl::StatusOr<std::vector<uint8_t>> MaskAtModelSize(const std::string& mask_path, int size) {
  if (mask_path.empty()) return std::vector<uint8_t>(static_cast<size_t>(size) * size, 0);
  const cv::Mat raw = cv::imread(mask_path, cv::IMREAD_GRAYSCALE);
  if (raw.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot decode mask ", mask_path));
  }
  cv::Mat unit, resized;
  cv::Mat(raw > 0).convertTo(unit, CV_32F, 1.0 / 255.0);
  cv::resize(unit, resized, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  cv::Mat binary = resized >= 1.0f;  // 0 / 255
  binary.convertTo(binary, CV_8U, 1.0 / 255.0);
  return std::vector<uint8_t>(binary.data, binary.data + binary.total());
}

EvaluationAccumulator::EvaluationAccumulator(size_t n_images)
    : image_scores_(n_images), image_labels_(n_images) {}

absl::Status EvaluationAccumulator::AddImage(size_t index, double score, bool anomalous,
                                             const float* map, int width, int height,
                                             const std::string& mask_path) {
  image_scores_[index] = score;
  image_labels_[index] = anomalous;
  if (map_size_ == 0) map_size_ = width;
  if (width != map_size_ || height != map_size_) {
    return absl::InternalError("maps of one evaluation differ in size");
  }
  MUSC_ASSIGN_OR_RETURN(const std::vector<uint8_t> mask, MaskAtModelSize(mask_path, map_size_));
  any_mask_ = any_mask_ || !mask_path.empty();
  pixel_maps_.insert(pixel_maps_.end(), map, map + static_cast<size_t>(width) * height);
  pixel_masks_.insert(pixel_masks_.end(), mask.begin(), mask.end());
  return absl::OkStatus();
}

void EvaluationAccumulator::AddDecision(bool decided_anomalous, bool anomalous) {
  ++decided_;
  predicted_positives_ += decided_anomalous ? 1 : 0;
  actual_positives_ += anomalous ? 1 : 0;
  true_positives_ += decided_anomalous && anomalous ? 1 : 0;
}

absl::StatusOr<EvaluationReport> EvaluationAccumulator::Report() const {
  EvaluationReport report;
  if (decided_ > 0) {
    report.has_decisions = true;
    report.decided_images = decided_;
    report.decision_precision =
        predicted_positives_ == 0 ? 0 : static_cast<double>(true_positives_) / predicted_positives_;
    report.decision_recall =
        actual_positives_ == 0 ? 0 : static_cast<double>(true_positives_) / actual_positives_;
    const double pr = report.decision_precision + report.decision_recall;
    report.decision_f1 = pr == 0 ? 0 : 2 * report.decision_precision * report.decision_recall / pr;
  }
  report.n_images = static_cast<int64_t>(image_scores_.size());
  report.map_size = map_size_;
  MUSC_ASSIGN_OR_RETURN(report.image_auroc, Auroc(image_scores_, image_labels_));
  MUSC_ASSIGN_OR_RETURN(report.image_ap, AveragePrecision(image_scores_, image_labels_));
  MUSC_ASSIGN_OR_RETURN(report.image_f1max, F1Max(image_scores_, image_labels_));
  if (any_mask_) {
    report.has_pixel_metrics = true;
    const std::vector<double> scores(pixel_maps_.begin(), pixel_maps_.end());
    const std::vector<bool> labels(pixel_masks_.begin(), pixel_masks_.end());
    MUSC_ASSIGN_OR_RETURN(report.pixel_auroc, Auroc(scores, labels));
    MUSC_ASSIGN_OR_RETURN(report.pixel_ap, AveragePrecision(scores, labels));
    MUSC_ASSIGN_OR_RETURN(report.pixel_f1max, F1Max(scores, labels));
    MUSC_ASSIGN_OR_RETURN(report.pro,
                          Pro(pixel_maps_, pixel_masks_, report.n_images, map_size_, map_size_));
  }
  return report;
}

}  // namespace musc
