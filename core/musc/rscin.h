// RsCIN — Re-scoring with Constrained Image-level Neighbourhood (MUSC-SPEC §6).
#ifndef MUSC_CORE_MUSC_RSCIN_H_
#define MUSC_CORE_MUSC_RSCIN_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace musc {

// raw_scores: N float (any floating type). image_features: N×D or undefined — L2-normalised for
// CLIP; DINO/DINOv2 pass their normed class token as the reference does, rows not unit-norm.
// Returns N float64 final scores: the mean over windows k of D_k⁻¹(M_k ⊙ W)·c, where c is the
// min-max normalised raw scores, W = F·Fᵀ and M_k keeps each row's k largest entries (with
// unit-norm rows an image is its own nearest neighbour, so k = 1 reproduces c).
// Returned unchanged (as float64) when image_features is undefined, windows is empty or contains
// 0 (the reference's "off" switch). Windows larger than N are clamped to N. If all raw scores are
// equal, c is all zeros (nothing stands out) and so is the result.
at::Tensor RescoreWithImageNeighbourhood(const at::Tensor& raw_scores,
                                         const at::Tensor& image_features,
                                         const std::vector<int64_t>& windows);

}  // namespace musc

#endif  // MUSC_CORE_MUSC_RSCIN_H_
