// `musc-client eval`: scores a labelled test split through a server and computes the paper's
// metrics (MUSC-SPEC §7).
#ifndef MUSC_CLIENT_EVALUATION_H_
#define MUSC_CLIENT_EVALUATION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "client/dataset.h"
#include "client/musc_client.h"

namespace musc {

struct EvaluationOptions {
  std::string product;
  int64_t batch_size = 0;  // Images per session; 0 = the whole split as one batch (the paper).
  bool progress = true;    // Progress lines on stderr.
};

struct EvaluationReport {
  double image_auroc = 0, image_ap = 0, image_f1max = 0;
  double pixel_auroc = 0, pixel_ap = 0, pixel_f1max = 0, pro = 0;
  bool has_pixel_metrics = false;  // False when the set has no masks.
  int64_t n_images = 0;
  int64_t map_size = 0;
  double seconds = 0;  // Wall time from the first upload to the last result.
};

absl::StatusOr<EvaluationReport> Evaluate(MuscClient& client, const EvalSet& set,
                                          const EvaluationOptions& options);

}  // namespace musc

#endif  // MUSC_CLIENT_EVALUATION_H_
