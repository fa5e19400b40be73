#include "core/musc/rscin.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>

#include <algorithm>

namespace musc {

at::Tensor RescoreWithImageNeighbourhood(const at::Tensor& raw_scores,
                                         const at::Tensor& image_features,
                                         const std::vector<int64_t>& windows) {
  TORCH_CHECK(raw_scores.dim() == 1, "raw scores must be a vector, got ", raw_scores.sizes());
  const at::Tensor raw = raw_scores.to(at::kDouble);
  const bool off = !image_features.defined() || windows.empty() ||
                   std::find(windows.begin(), windows.end(), 0) != windows.end();
  if (off) return raw.clone();
  const int64_t n = raw.size(0);
  TORCH_CHECK(image_features.dim() == 2 && image_features.size(0) == n,
              "image features must be N×D with N = ", n, ", got ", image_features.sizes());
  for (int64_t k : windows) TORCH_CHECK(k > 0, "RsCIN windows must be positive, got ", k);
  if (n == 0) return raw.clone();

  const double lo = raw.min().item<double>();
  const double hi = raw.max().item<double>();
  const at::Tensor normalised = hi > lo ? (raw - lo) / (hi - lo) : at::zeros_like(raw);

  const at::Tensor features = image_features.to(at::kDouble);
  const at::Tensor similarity = at::matmul(features, features.t());  // W = F·Fᵀ
  at::Tensor sum = at::zeros_like(raw);
  for (int64_t k : windows) {
    const int64_t kept = std::min(k, n);
    const auto [values, indices] = at::topk(similarity, kept, /*dim=*/1);
    at::Tensor masked = at::zeros_like(similarity).scatter_(1, indices, values);
    at::Tensor row_sum = masked.sum(1, /*keepdim=*/true);
    // A row whose kept similarities sum to zero has no usable neighbourhood: keep its own score.
    const at::Tensor degenerate = row_sum.abs() < 1e-300;
    at::Tensor rescored = at::matmul(masked / row_sum.masked_fill(degenerate, 1.0), normalised);
    rescored = at::where(degenerate.squeeze(1), normalised, rescored);
    sum += rescored;
  }
  return sum / static_cast<double>(windows.size());
}

}  // namespace musc
