// Bounded decoding of client images (PNG, JPEG, BMP, TIFF; 8/16-bit; grey or colour).
// What is accepted and how it is interpreted (alpha, 16-bit, EXIF orientation): docs/INPUT.md.
#ifndef MUSC_SERVER_IMAGES_IMAGE_DECODER_H_
#define MUSC_SERVER_IMAGES_IMAGE_DECODER_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/engine_types.h"

namespace musc {

struct DecodeLimits {
  int64_t max_bytes = int64_t{64} << 20;
  int64_t max_pixels = int64_t{64} << 20;  // Width × height, checked from the header.
};

// DecodeImage enforces DecodeLimits itself, from the header, before OpenCV runs. (Setting
// OPENCV_IO_MAX_IMAGE_PIXELS at run time cannot: OpenCV 4.6 reads it in a static initialiser
// when libopencv_imgcodecs is loaded, before main() — measured.)

// A decoded image: RGB (CV_8UC3 / CV_16UC3) or grey (CV_8UC1 / CV_16UC1). Alpha is dropped.
// EXIF orientation is NOT applied: maps are returned in the stored pixel layout.
struct DecodedImage {
  cv::Mat pixels;
};

// The engine's borrowed view of decoded pixels (valid while the Mat lives).
inline ImageView ViewOf(const cv::Mat& m) {
  return ImageView{m.data, m.rows, m.cols, m.channels(),
                   m.depth() == CV_16U ? PixelType::kUint16 : PixelType::kUint8};
}

// INVALID_ARGUMENT for empty, oversized, unsupported, truncated or corrupt data. The size limits
// are checked from the header (server/images/image_header.h) before OpenCV sees the data, so a
// small file announcing a huge image is refused without allocating for it.
absl::StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeLimits& limits);

}  // namespace musc

#endif  // MUSC_SERVER_IMAGES_IMAGE_DECODER_H_
