// What an encoded image declares about itself, read from its header alone: format, dimensions,
// sample depth and channels. The decoder checks these against its limits before OpenCV runs, so a
// small file that announces a huge image (a decompression bomb) is refused without allocating,
// whatever limit OpenCV itself was configured with.
//
// Untrusted input: every read is bounds-checked, and this file is unit-tested and fuzzed under
// ASan/UBSan (tests/server/images/image_header_test.cc, fuzz/fuzz_image_decode.cc).
#ifndef MUSC_SERVER_IMAGES_IMAGE_HEADER_H_
#define MUSC_SERVER_IMAGES_IMAGE_HEADER_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"

namespace musc {

enum class ImageFormat { kPng, kJpeg, kBmp, kTiff };

// "PNG", "JPEG", "BMP", "TIFF".
const char* ImageFormatName(ImageFormat format);

// The formats we accept, recognised by their magic bytes only; nullopt for anything else (OpenCV
// would try more formats than we promise).
std::optional<ImageFormat> SniffImageFormat(std::string_view bytes);

// No dimension above this is plausible for a camera image; OpenCV refuses it too
// (CV_IO_MAX_IMAGE_WIDTH). It also keeps width × height within int64 without overflow checks.
inline constexpr int64_t kMaxImageDimension = int64_t{1} << 20;
// A progressive JPEG is decoded scan by scan, each scan touching the whole image: a small file
// with many tiny scans costs CPU time out of all proportion to its size. Encoders write about 10.
inline constexpr int kMaxJpegScans = 256;

struct ImageHeader {
  ImageFormat format = ImageFormat::kPng;
  int64_t width = 0;   // 1..kMaxImageDimension.
  int64_t height = 0;  // 1..kMaxImageDimension (BMP: the absolute value; negative = top-down).
  // Bits per sample: the PNG bit depth, the JPEG sample precision, TIFF BitsPerSample[0]; for BMP
  // the bits per pixel (1, 4, 8: palette indices; 16, 24, 32: packed colour).
  int bit_depth = 0;
  // Samples per pixel as stored: PNG by colour type (palette = 1 index, grey+alpha = 2), JPEG
  // components (1, 3, or 4 for CMYK/YCCK), TIFF SamplesPerPixel; BMP 1 (palette), 3 or 4.
  int channels = 0;
  // What the decoder buffers at once besides the image: TIFF tiles (TileWidth × TileLength).
  // 0 when the image is not tiled.
  int64_t tile_width = 0;
  int64_t tile_height = 0;
  // JPEG only: the number of scans (1 for baseline), counted up to the end-of-image marker.
  int jpeg_scans = 0;
};

// INVALID_ARGUMENT (naming the format and what is wrong) for data that is not one of the formats
// above, whose header is truncated or inconsistent, or whose dimensions are zero or above
// kMaxImageDimension. For JPEG the whole marker structure is walked, so a file cut short before its
// end-of-image marker is refused here too (libjpeg would pad it with grey and succeed).
absl::StatusOr<ImageHeader> ReadImageHeader(std::string_view bytes);

}  // namespace musc

#endif  // MUSC_SERVER_IMAGES_IMAGE_HEADER_H_
