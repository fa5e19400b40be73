#include "core/musc/anomaly_map.h"

#include <ATen/ops/amax.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <c10/util/Exception.h>

namespace musc {

at::Tensor UpsamplePatchScores(const at::Tensor& patch_scores, int64_t out_h, int64_t out_w) {
  TORCH_CHECK(patch_scores.dim() == 3, "patch scores must be N×H×W, got ", patch_scores.sizes());
  TORCH_CHECK(out_h > 0 && out_w > 0, "map size must be positive");
  return at::upsample_bilinear2d(patch_scores.to(at::kFloat).unsqueeze(1), {out_h, out_w},
                                 /*align_corners=*/true)
      .squeeze(1);
}

at::Tensor ResizeMap(const at::Tensor& map, int64_t out_h, int64_t out_w) {
  TORCH_CHECK(map.dim() == 2, "map must be H×W, got ", map.sizes());
  TORCH_CHECK(out_h > 0 && out_w > 0, "map size must be positive");
  return at::upsample_bilinear2d(map.to(at::kFloat).unsqueeze(0).unsqueeze(0), {out_h, out_w},
                                 /*align_corners=*/false)
      .squeeze(0)
      .squeeze(0);
}

at::Tensor MaxOfMaps(const at::Tensor& maps) {
  TORCH_CHECK(maps.dim() == 3, "maps must be N×H×W, got ", maps.sizes());
  return at::amax(maps.reshape({maps.size(0), -1}), {1}).to(at::kFloat);
}

}  // namespace musc
