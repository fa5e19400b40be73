// libFuzzer target: the decode path every uploaded image takes (server/images/image_decoder.h:
// header checks, then OpenCV). Beyond "no crash, no leak, no UB", it checks what the service relies
// on: every refusal is INVALID_ARGUMENT, and an accepted image is non-empty, of a documented type,
// within the limits, with the dimensions its header declares.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <string_view>

#include "server/images/image_decoder.h"
#include "server/images/image_header.h"

namespace {

// Smaller than the service's defaults so that each input decodes quickly and memory stays bounded;
// the code paths are the same.
musc::DecodeLimits FuzzLimits() {
  musc::DecodeLimits limits;
  limits.max_bytes = int64_t{1} << 20;
  limits.max_pixels = int64_t{1} << 20;
  return limits;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  cv::setNumThreads(0);  // Colour conversion on the calling thread: reproducible and leak-free.
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const musc::DecodeLimits limits = FuzzLimits();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<musc::ImageHeader> header = musc::ReadImageHeader(bytes);
  const absl::StatusOr<musc::DecodedImage> image = musc::DecodeImage(bytes, limits);
  if (!image.ok()) {
    if (image.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (!header.ok()) std::abort();  // Decoded although its header was refused.
  const cv::Mat& m = image->pixels;
  const int type = m.type();
  if (m.empty() || (type != CV_8UC1 && type != CV_8UC3 && type != CV_16UC1 && type != CV_16UC3) ||
      m.cols != header->width || m.rows != header->height ||
      static_cast<int64_t>(m.total()) > limits.max_pixels) {
    std::abort();
  }
  return 0;
}
