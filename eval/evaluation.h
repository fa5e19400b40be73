// The evaluation of a labelled split (MUSC-SPEC §7), apart from how its images were scored: the
// masks at the model's size, the accumulated scores, labels, maps and masks, and the report of
// the paper's metrics over them. `musc-client eval` feeds it the server's results
// (client/evaluation.h); `musc-bench demo` uses the mask rule. OpenCV reads the masks; no gRPC.
#ifndef MUSC_EVAL_EVALUATION_H_
#define MUSC_EVAL_EVALUATION_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace musc {

struct EvaluationReport {
  double image_auroc = 0, image_ap = 0, image_f1max = 0;
  double pixel_auroc = 0, pixel_ap = 0, pixel_f1max = 0, pro = 0;
  bool has_pixel_metrics = false;  // False when the set has no masks.
  int64_t n_images = 0;
  int64_t map_size = 0;
  double seconds = 0;  // Wall time from the first upload to the last result.
  // The product's label-free decisions against the labels (images with decided=true only),
  // next to the oracle: image_f1max is the best F1 any threshold reaches with the labels.
  bool has_decisions = false;
  int64_t decided_images = 0;
  double decision_precision = 0, decision_recall = 0, decision_f1 = 0;
  // Line mode: per-image latency from send to answer, warm-up images excluded.
  double line_latency_p50 = 0, line_latency_p99 = 0;
};

// MUSC-SPEC §7: the mask at `mask_path` (any value > 0 is defect) resized to size×size
// bilinearly, values below 1 counted as normal; size×size values, row-major, 1 = defect. An empty
// path: all normal. INVALID_ARGUMENT when the file cannot be decoded.
absl::StatusOr<std::vector<uint8_t>> MaskAtModelSize(const std::string& mask_path, int size);

// Collects one evaluation's results, in any order, and computes its report. Each map is kept
// beside its own mask, which is all the pixel metrics and PRO need.
class EvaluationAccumulator {
 public:
  // `n_images`: the size of the split; every image is added once.
  explicit EvaluationAccumulator(size_t n_images);

  // Image `index` (< n_images): its final score and label, and its anomaly map (`width`×`height`
  // values, row-major) with the mask at `mask_path` read at the map's size (empty: no mask). The
  // first map fixes the size: maps must be square and all the same size (INTERNAL otherwise).
  absl::Status AddImage(size_t index, double score, bool anomalous, const float* map, int width,
                        int height, const std::string& mask_path);

  // A label-free decision (an image the product decided on; undecided ones are not added).
  void AddDecision(bool decided_anomalous, bool anomalous);

  // Image AUROC, AP and F1-max; the pixel ones and PRO when any image had a mask; the decisions'
  // precision, recall and F1 when any were added. `seconds` and the line latencies are left 0
  // for the caller, who measured them. Fails where a metric does (eval/metrics.h).
  absl::StatusOr<EvaluationReport> Report() const;

 private:
  std::vector<double> image_scores_;  // By image index.
  std::vector<bool> image_labels_;
  std::vector<float> pixel_maps_;  // In the order the images were added.
  std::vector<uint8_t> pixel_masks_;
  int map_size_ = 0;  // 0 until the first map.
  bool any_mask_ = false;
  int64_t decided_ = 0, true_positives_ = 0, predicted_positives_ = 0, actual_positives_ = 0;
};

}  // namespace musc

#endif  // MUSC_EVAL_EVALUATION_H_
