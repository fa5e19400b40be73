#include "client/metrics.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace musc {

absl::StatusOr<double> Auroc(const std::vector<double>& scores, const std::vector<bool>& labels) {
  if (scores.size() != labels.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("AUROC: ", scores.size(), " scores but ", labels.size(), " labels"));
  }
  const size_t positives = static_cast<size_t>(std::count(labels.begin(), labels.end(), true));
  const size_t negatives = labels.size() - positives;
  if (positives == 0 || negatives == 0) {
    return absl::InvalidArgumentError("AUROC is undefined without both classes present");
  }
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Sum of the positives' ranks, ties sharing their average rank (1-based).
  double positive_rank_sum = 0.0;
  for (size_t start = 0; start < order.size();) {
    size_t stop = start;
    while (stop < order.size() && scores[order[stop]] == scores[order[start]]) ++stop;
    const double average_rank = 0.5 * static_cast<double>(start + 1 + stop);
    for (size_t k = start; k < stop; ++k) {
      if (labels[order[k]]) positive_rank_sum += average_rank;
    }
    start = stop;
  }
  const double p = static_cast<double>(positives);
  const double u = positive_rank_sum - p * (p + 1.0) / 2.0;
  return u / (p * static_cast<double>(negatives));
}

}  // namespace musc
