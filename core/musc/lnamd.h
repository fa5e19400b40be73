// LNAMD — Local Neighbourhood Aggregation with Multiple Degrees (MUSC-SPEC §3).
#ifndef MUSC_CORE_MUSC_LNAMD_H_
#define MUSC_CORE_MUSC_LNAMD_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace musc {

// LayerNorm of each image's whole C×H×W block (no affine, eps 1e-5). maps: N×C×H×W float32.
// Returns a new tensor; the input is left untouched.
at::Tensor LayerNormPerImage(const at::Tensor& maps);

// Aggregates a layer-normalised N×C×H×W map with degree r (odd, ≥ 1): the mean of the r×r window
// centred on each position with zero padding (r−1)/2, padded zeros counted. If the grid differs
// from (grid_h, grid_w), the aggregated map is resized bilinearly (align_corners=false) to it.
// Finally each position's C-vector is L2-normalised.
// Returns Z: N×L×C contiguous float32 with L = grid_h·grid_w, positions in row-major order.
at::Tensor AggregateNeighbourhood(const at::Tensor& normed_maps, int64_t r, int64_t grid_h,
                                  int64_t grid_w);

}  // namespace musc

#endif  // MUSC_CORE_MUSC_LNAMD_H_
