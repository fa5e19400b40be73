// Detection metrics, in one place for the CLI's eval, the benchmarks and the tests.
// LibTorch-free (also built under ASan/UBSan).
#ifndef MUSC_CLIENT_METRICS_H_
#define MUSC_CLIENT_METRICS_H_

#include <vector>

#include "absl/status/statusor.h"

namespace musc {

// Area under the ROC curve of `scores` against binary `labels` (true = anomalous, the positive
// class), computed exactly as the Mann–Whitney U statistic with tied scores given half credit —
// the same value as scikit-learn's roc_auc_score. Errors if the sizes differ or a class is absent.
absl::StatusOr<double> Auroc(const std::vector<double>& scores, const std::vector<bool>& labels);

}  // namespace musc

#endif  // MUSC_CLIENT_METRICS_H_
