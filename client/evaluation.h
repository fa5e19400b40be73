// `musc-client eval`: scores a labelled test split through a server (in batches, or through line
// mode) and reports the paper's metrics (MUSC-SPEC §7), which eval/evaluation.h computes.
#ifndef MUSC_CLIENT_EVALUATION_H_
#define MUSC_CLIENT_EVALUATION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "client/musc_client.h"
#include "eval/dataset.h"
#include "eval/evaluation.h"

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

absl::StatusOr<EvaluationReport> Evaluate(MuscClient& client, const EvalSet& set,
                                          const EvaluationOptions& options);

}  // namespace musc

#endif  // MUSC_CLIENT_EVALUATION_H_
