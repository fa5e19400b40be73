#include "server/images/image_decoder.h"

#include <limits>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/images/image_header.h"

namespace musc {

absl::StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.empty()) return absl::InvalidArgumentError("image is empty (0 bytes)");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes ||
      bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", bytes.size(), " bytes; the limit is ", limits.max_bytes));
  }
  // The header decides before OpenCV does: OpenCV's own pixel limit (2^30 unless
  // OPENCV_IO_MAX_IMAGE_PIXELS is set in the environment the process starts with) is process-wide,
  // and does not cover what its TIFF decoder allocates per tile.
  MUSC_ASSIGN_OR_RETURN(ImageHeader header, ReadImageHeader(bytes));
  const char* format = ImageFormatName(header.format);
  // Both factors are at most kMaxImageDimension (2^20): the products cannot overflow.
  const int64_t pixels = header.width * header.height;
  if (pixels > limits.max_pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat(format, " image declares ", header.width, "×", header.height, " = ", pixels,
                     " pixels; the limit is ", limits.max_pixels, " (refused before decoding)"));
  }
  if (header.tile_width * header.tile_height > limits.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat(
        format, " image declares tiles of ", header.tile_width, "×", header.tile_height,
        " pixels; the limit is ", limits.max_pixels, " (refused before decoding)"));
  }

  cv::Mat decoded;
  try {
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1,
                         const_cast<char*>(bytes.data()));
    // IMREAD_UNCHANGED keeps 16-bit samples and, unlike the other modes, ignores EXIF orientation:
    // the map must align with the pixels as the camera sent them (docs/INPUT.md).
    decoded = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    // OpenCV throws for limits of its own and for some corrupt data.
    return absl::InvalidArgumentError(absl::StrCat(format, " image refused: ", e.msg));
  }
  if (decoded.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(format, " image is truncated or corrupt"));
  }
  // The limits were checked against the header's dimensions; an image that decodes to others is
  // not what its header says it is.
  if (decoded.cols != header.width || decoded.rows != header.height) {
    return absl::InvalidArgumentError(
        absl::StrCat(format, " image decoded to ", decoded.cols, "×", decoded.rows,
                     " pixels, but its header declares ", header.width, "×", header.height));
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
    case 2:  // Grey + alpha (TIFF).
      cv::extractChannel(decoded, out.pixels, 0);
      break;
    case 3:
      cv::cvtColor(decoded, out.pixels, cv::COLOR_BGR2RGB);
      break;
    case 4:
      if (header.channels == 2) {
        // OpenCV expands grey + alpha PNGs to BGRA with B = G = R; they stay grey here.
        cv::extractChannel(decoded, out.pixels, 0);
      } else {
        cv::cvtColor(decoded, out.pixels, cv::COLOR_BGRA2RGB);
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(format, " image has ", decoded.channels(), " channels"));
  }
  return out;
}

}  // namespace musc
