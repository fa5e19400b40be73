#include "core/engine_internal.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <vector>

#include "absl/strings/str_cat.h"

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

absl::Status FromTorchError(const c10::Error& e, const char* stage) {
  return absl::InternalError(absl::StrCat(stage, ": ", e.what_without_backtrace()));
}

}  // namespace musc
