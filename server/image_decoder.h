// Bounded decoding of client images (PNG, JPEG, BMP, TIFF; 8/16-bit; grey or colour).
#ifndef MUSC_SERVER_IMAGE_DECODER_H_
#define MUSC_SERVER_IMAGE_DECODER_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string_view>

#include "absl/status/statusor.h"

namespace musc {

struct DecodeLimits {
  int64_t max_bytes = int64_t{64} << 20;
  int64_t max_pixels = int64_t{64} << 20;  // Width × height, checked from the header.
};

// Must run before the first decode (OpenCV reads its size limits from the environment once):
// makes OpenCV refuse images whose header announces more than max_pixels, before allocating.
void ConfigureDecoderLimits(const DecodeLimits& limits);

// A decoded image: RGB (CV_8UC3 / CV_16UC3) or grey (CV_8UC1 / CV_16UC1). Alpha is dropped.
// EXIF orientation is NOT applied: maps are returned in the stored pixel layout.
struct DecodedImage {
  cv::Mat pixels;
};

// INVALID_ARGUMENT for empty, oversized, unsupported, truncated or corrupt data.
absl::StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeLimits& limits);

}  // namespace musc

#endif  // MUSC_SERVER_IMAGE_DECODER_H_
