#include "server/image_decoder.h"

#include <cstdlib>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

#include "absl/strings/str_cat.h"

namespace musc {
namespace {

// The formats we promise, recognised by their magic bytes (OpenCV would also try others).
const char* SniffFormat(std::string_view b) {
  auto starts = [&](std::string_view magic) { return b.substr(0, magic.size()) == magic; };
  if (starts("\x89PNG\r\n\x1a\n")) return "PNG";
  if (starts("\xff\xd8\xff")) return "JPEG";
  if (starts("BM")) return "BMP";
  if (starts(std::string_view("II*\0", 4)) || starts(std::string_view("MM\0*", 4))) return "TIFF";
  return nullptr;
}

}  // namespace

void ConfigureDecoderLimits(const DecodeLimits& limits) {
  const std::string pixels = std::to_string(limits.max_pixels);
  setenv("OPENCV_IO_MAX_IMAGE_PIXELS", pixels.c_str(), /*overwrite=*/1);
}

absl::StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.empty()) return absl::InvalidArgumentError("image is empty (0 bytes)");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", bytes.size(), " bytes; the limit is ", limits.max_bytes));
  }
  const char* format = SniffFormat(bytes);
  if (format == nullptr) {
    return absl::InvalidArgumentError("unsupported image format (expected PNG, JPEG, BMP or TIFF)");
  }
  cv::Mat decoded;
  try {
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1,
                         const_cast<char*>(bytes.data()));
    decoded = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    // OpenCV throws when the header announces more pixels than allowed (decompression bombs).
    return absl::InvalidArgumentError(absl::StrCat(format, " image refused: ", e.msg));
  }
  if (decoded.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(format, " image is truncated or corrupt"));
  }
  if (static_cast<int64_t>(decoded.total()) > limits.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat("image has ", decoded.cols, "×", decoded.rows,
                                                   " pixels; the limit is ", limits.max_pixels));
  }
  if (decoded.depth() != CV_8U && decoded.depth() != CV_16U) {
    return absl::InvalidArgumentError(
        absl::StrCat(format, " image has an unsupported sample type (8 or 16 bit integers only)"));
  }
  DecodedImage out;
  switch (decoded.channels()) {
    case 1:
      out.pixels = decoded;
      break;
    case 3:
      cv::cvtColor(decoded, out.pixels, cv::COLOR_BGR2RGB);
      break;
    case 4:
      cv::cvtColor(decoded, out.pixels, cv::COLOR_BGRA2RGB);
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(format, " image has ", decoded.channels(), " channels"));
  }
  return out;
}

}  // namespace musc
