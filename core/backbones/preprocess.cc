#include "core/backbones/preprocess.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/_upsample_bilinear2d_aa.h>
#include <ATen/ops/tensor.h>
#include <c10/util/Exception.h>

namespace musc {

at::Tensor PreprocessImage(const at::Tensor& image, const PreprocessSpec& spec,
                           bool source_is_8bit) {
  TORCH_CHECK(image.dim() == 3 && (image.size(2) == 1 || image.size(2) == 3),
              "image must be H×W×C with C = 1 or 3, got ", image.sizes());
  TORCH_CHECK(image.size(0) > 0 && image.size(1) > 0, "image is empty: ", image.sizes());
  TORCH_CHECK(spec.input_size > 0, "input size must be positive");
  at::Tensor x = image.to(at::kFloat).permute({2, 0, 1}).unsqueeze(0);  // 1×C×H×W
  if (x.size(1) == 1) x = x.expand({1, 3, x.size(2), x.size(3)});
  x = x.contiguous();
  const std::vector<int64_t> size{spec.input_size, spec.input_size};
  if (x.size(2) != spec.input_size || x.size(3) != spec.input_size) {
    switch (spec.filter) {
      case ResizeFilter::kBicubicAntialias:
        x = at::_upsample_bicubic2d_aa(x, size, /*align_corners=*/false);
        break;
      case ResizeFilter::kBilinear:
        x = at::_upsample_bilinear2d_aa(x, size, /*align_corners=*/false);
        break;
    }
  }
  // Bicubic overshoots; PIL clamps to the pixel range (and rounds to 8 bits for 8-bit images).
  x = x.clamp(0.0, 1.0);
  if (source_is_8bit) x = (x * 255.0).round() / 255.0;
  const at::Tensor mean = at::tensor({spec.mean[0], spec.mean[1], spec.mean[2]}).view({1, 3, 1, 1});
  const at::Tensor std = at::tensor({spec.std[0], spec.std[1], spec.std[2]}).view({1, 3, 1, 1});
  return ((x - mean) / std).squeeze(0).contiguous();
}

}  // namespace musc
