// `musc-client eval`: scores a labelled test split through a server and computes the paper's
// metrics (MUSC-SPEC §7).
#ifndef MUSC_CLIENT_EVALUATION_H_
#define MUSC_CLIENT_EVALUATION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "client/musc_client.h"
#include "eval/dataset.h"

namespace musc {

struct EvaluationOptions {
  std::string product;
  int64_t batch_size = 0;  // Images per session; 0 = the whole split as one batch (the paper).
  bool progress = true;    // Progress lines on stderr.
  // Line mode: replay the split through ScoreImage one image at a time instead of batches, in a
  // shuffled order fixed by the seed (0: the set's order). The product must have line mode.
  bool line_mode = false;
  uint64_t shuffle_seed = 1;
};

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

absl::StatusOr<EvaluationReport> Evaluate(MuscClient& client, const EvalSet& set,
                                          const EvaluationOptions& options);

}  // namespace musc

#endif  // MUSC_CLIENT_EVALUATION_H_
