#include "core/engine_internal.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/stack.h>
#include <c10/util/Exception.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/backbones/preprocess.h"
#include "core/stopwatch.h"

namespace musc {
namespace {

// Images larger than this many pixels are refused: beyond any camera, and a sign of a bad header.
constexpr int64_t kMaxPixels = int64_t{1} << 28;

}  // namespace

void WaitForDevice(const at::Tensor& t) {
  // Reading one element back to the host waits for every kernel queued before it on the stream:
  // the one synchronisation LibTorch offers without the CUDA headers.
  if (t.defined() && !t.is_cpu() && t.numel() > 0) (void)t.reshape({-1})[0].item<double>();
}

absl::Status ValidateImage(const ImageView& image, size_t index) {
  if (image.data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("image ", index, ": no pixel data"));
  }
  if (image.height <= 0 || image.width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image ", index, ": size ", image.height, "×", image.width, " is empty"));
  }
  if (image.channels != 1 && image.channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat("image ", index, ": ", image.channels,
                                                   " channels; expected 1 (grey) or 3 (RGB)"));
  }
  if (image.height > kMaxPixels / image.width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image ", index, ": ", image.height, "×", image.width, " exceeds ", kMaxPixels, " pixels"));
  }
  return absl::OkStatus();
}

at::Tensor ToFloatImage(const ImageView& image) {
  const std::vector<int64_t> shape{image.height, image.width, image.channels};
  switch (image.type) {
    case PixelType::kUint8:
      return at::from_blob(const_cast<void*>(image.data), shape, at::kByte).to(at::kFloat) / 255.0;
    case PixelType::kUint16: {
      // LibTorch 1.13 has no uint16 dtype: widen by hand.
      at::Tensor out = at::empty(shape, at::kFloat);
      const auto* src = static_cast<const uint16_t*>(image.data);
      float* dst = out.data_ptr<float>();
      const int64_t count = out.numel();
      for (int64_t k = 0; k < count; ++k) dst[k] = static_cast<float>(src[k]) / 65535.0f;
      return out;
    }
    case PixelType::kFloat32:
      return at::from_blob(const_cast<void*>(image.data), shape, at::kFloat).clone();
  }
  TORCH_CHECK(false, "unknown pixel type");
}

BackboneFeatures RunBackbone(EngineState& engine, absl::Span<const ImageView> images,
                             StageTimings& spent) {
  Backbone& backbone = *engine.backbone;
  const PreprocessSpec& spec = backbone.preprocess_spec();
  Stopwatch watch;
  std::vector<at::Tensor> inputs;
  for (const ImageView& image : images) {
    inputs.push_back(PreprocessImage(ToFloatImage(image), spec, image.type == PixelType::kUint8));
  }
  at::Tensor batch = at::stack(inputs, 0);
  if (!engine.device.is_cpu()) {
    // From pinned memory the copy is asynchronous: the host preprocesses the next chunk while the
    // device copies and runs this one.
    batch = batch.pin_memory().to(engine.device, /*non_blocking=*/true);
  }
  spent.preprocess_s += watch.Lap();
  BackboneFeatures features = backbone.Forward(batch);
  TORCH_CHECK(!features.layer_maps.empty(), backbone.name(), " returned no feature layers");
  spent.backbone_s += watch.Lap();
  return features;
}

at::ScalarType ScalarTypeOf(NumericType type) {
  switch (type) {
    case NumericType::kFloat32:
      return at::kFloat;
    case NumericType::kBFloat16:
      return at::kBFloat16;
    case NumericType::kFloat16:
      return at::kHalf;
  }
  TORCH_CHECK(false, "unknown numeric type");
}

MutualScoringOptions MsmOptionsFor(const ScoringOptions& scoring, const at::Device& device) {
  MutualScoringOptions msm;
  msm.interval_low = scoring.interval_low;
  msm.interval_high = scoring.interval_high;
  msm.block_budget_bytes = scoring.block_budget_bytes;
  msm.gemm_dtype = device.is_cpu() ? at::kFloat : ScalarTypeOf(scoring.gemm_dtype);
  return msm;
}

}  // namespace musc
