#include "core/musc/lnamd.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <c10/util/Exception.h>

namespace musc {

at::Tensor LayerNormPerImage(const at::Tensor& maps) {
  TORCH_CHECK(maps.dim() == 4, "feature maps must be N×C×H×W, got ", maps.sizes());
  TORCH_CHECK(maps.scalar_type() == at::kFloat, "feature maps must be float32");
  // No affine parameters: the reference builds a fresh nn.LayerNorm (weight 1, bias 0).
  return at::layer_norm(maps, {maps.size(1), maps.size(2), maps.size(3)}, {}, {}, 1e-5);
}

at::Tensor AggregateNeighbourhood(const at::Tensor& normed_maps, int64_t r, int64_t grid_h,
                                  int64_t grid_w) {
  TORCH_CHECK(normed_maps.dim() == 4, "feature maps must be N×C×H×W, got ", normed_maps.sizes());
  TORCH_CHECK(r >= 1 && r % 2 == 1, "aggregation degree must be odd and >= 1, got ", r);
  TORCH_CHECK(grid_h > 0 && grid_w > 0, "grid must be positive");
  // Channels-last storage makes the final N×L×C view free and keeps pooling cache-friendly.
  at::Tensor x = normed_maps.contiguous(at::MemoryFormat::ChannelsLast);
  if (r > 1) {
    const int64_t pad = (r - 1) / 2;
    x = at::avg_pool2d(x, {r, r}, {1, 1}, {pad, pad}, /*ceil_mode=*/false,
                       /*count_include_pad=*/true);
  }
  // Pooling then resizing equals the reference's unfold → resize → mean: all three are linear
  // and the mean is per channel.
  if (x.size(2) != grid_h || x.size(3) != grid_w) {
    x = at::upsample_bilinear2d(x, {grid_h, grid_w}, /*align_corners=*/false);
  }
  x = x.permute({0, 2, 3, 1}).reshape({x.size(0), grid_h * grid_w, x.size(1)}).contiguous();
  // The reference divides by the norm without an epsilon; the clamp only guards an all-zero
  // vector (which LayerNorm output practically never has) against 0/0.
  return x / at::linalg_vector_norm(x, 2, {-1}, /*keepdim=*/true).clamp_min(1e-12);
}

}  // namespace musc
