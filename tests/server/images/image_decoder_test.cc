// Image decoding as the service does it, on hostile and unusual input: every refusal is
// INVALID_ARGUMENT with a reason, sizes are refused from the header before decoding, and 16-bit,
// grey, alpha, palette, CMYK and EXIF-oriented images come out as documented in docs/INPUT.md.
// Also built with ASan/UBSan (MUSC_SANITIZE).
#include "server/images/image_decoder.h"

#include <gtest/gtest.h>

#include <cstring>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>
#include <vector>

#include "server/images/image_header.h"
#include "tests/server/images/image_bytes.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::AppendBe16;
using ::musc::testing::JpegSegment;
using ::musc::testing::MakePng;
using ::musc::testing::MakeTiff;
using ::musc::testing::MessageHas;
using ::musc::testing::PngChunk;

// An 8×6 CMYK JPEG (C=0 M=255 Y=255 K=0: red) with Adobe's APP14 marker, written by Pillow; OpenCV
// cannot write CMYK.
const char kCmykJpeg[] =
    "\xff\xd8\xff\xee\x00\x0e\x41\x64\x6f\x62\x65\x00\x64\x00\x00\x00\x00\x00\xff\xdb\x00\x43\x00"
    "\x03"
    "\x02\x02\x03\x02\x02\x03\x03\x03\x03\x04\x03\x03\x04\x05\x08\x05\x05\x04\x04\x05\x0a\x07\x07"
    "\x06"
    "\x08\x0c\x0a\x0c\x0c\x0b\x0a\x0b\x0b\x0d\x0e\x12\x10\x0d\x0e\x11\x0e\x0b\x0b\x10\x16\x10\x11"
    "\x13"
    "\x14\x15\x15\x15\x0c\x0f\x17\x18\x16\x14\x18\x12\x14\x15\x14\xff\xc0\x00\x14\x08\x00\x06\x00"
    "\x08"
    "\x04\x43\x11\x00\x4d\x11\x00\x59\x11\x00\x4b\x11\x00\xff\xc4\x00\x1f\x00\x00\x01\x05\x01\x01"
    "\x01"
    "\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\xff"
    "\xc4"
    "\x00\xb5\x10\x00\x02\x01\x03\x03\x02\x04\x03\x05\x05\x04\x04\x00\x00\x01\x7d\x01\x02\x03\x00"
    "\x04"
    "\x11\x05\x12\x21\x31\x41\x06\x13\x51\x61\x07\x22\x71\x14\x32\x81\x91\xa1\x08\x23\x42\xb1\xc1"
    "\x15"
    "\x52\xd1\xf0\x24\x33\x62\x72\x82\x09\x0a\x16\x17\x18\x19\x1a\x25\x26\x27\x28\x29\x2a\x34\x35"
    "\x36"
    "\x37\x38\x39\x3a\x43\x44\x45\x46\x47\x48\x49\x4a\x53\x54\x55\x56\x57\x58\x59\x5a\x63\x64\x65"
    "\x66"
    "\x67\x68\x69\x6a\x73\x74\x75\x76\x77\x78\x79\x7a\x83\x84\x85\x86\x87\x88\x89\x8a\x92\x93\x94"
    "\x95"
    "\x96\x97\x98\x99\x9a\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba"
    "\xc2"
    "\xc3\xc4\xc5\xc6\xc7\xc8\xc9\xca\xd2\xd3\xd4\xd5\xd6\xd7\xd8\xd9\xda\xe1\xe2\xe3\xe4\xe5\xe6"
    "\xe7"
    "\xe8\xe9\xea\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa\xff\xda\x00\x0e\x04\x43\x00\x4d\x00\x59"
    "\x00"
    "\x4b\x00\x00\x3f\x00\xfd\x53\xaf\xca\xaa\xfc\xaa\xaf\xd5\x3a\xff\xd9";

std::string Encode(const cv::Mat& image, const std::string& ext, std::vector<int> params = {}) {
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(ext, image, bytes, params)) << ext;
  return std::string(bytes.begin(), bytes.end());
}

// A gradient with distinct channel values, so that channel order and depth are checkable.
cv::Mat Pattern(int rows, int cols, int type) {
  cv::Mat m(rows, cols, type);
  const double scale = CV_MAT_DEPTH(type) == CV_16U ? 257.0 : 1.0;
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      for (int c = 0; c < m.channels(); ++c) {
        const double v = scale * ((x * 16 + y * 8 + c * 60) % 256);
        if (CV_MAT_DEPTH(type) == CV_16U) {
          m.ptr<uint16_t>(y)[x * m.channels() + c] = static_cast<uint16_t>(v);
        } else {
          m.ptr<uint8_t>(y)[x * m.channels() + c] = static_cast<uint8_t>(v);
        }
      }
    }
  }
  return m;
}

bool SamePixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

DecodeLimits Limits(int64_t max_bytes, int64_t max_pixels) {
  DecodeLimits limits;
  limits.max_bytes = max_bytes;
  limits.max_pixels = max_pixels;
  return limits;
}

absl::StatusCode DecodeCode(std::string_view bytes, const DecodeLimits& limits = {}) {
  return DecodeImage(bytes, limits).status().code();
}

TEST(DecodeImageTest, EmptyRandomAndWrongFormatAreInvalidArgument) {
  EXPECT_TRUE(MessageHas(DecodeImage("", {}).status(), "empty (0 bytes)"));
  EXPECT_EQ(DecodeCode(""), absl::StatusCode::kInvalidArgument);
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string noise(1 + rng() % 400, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    EXPECT_EQ(DecodeCode(noise), absl::StatusCode::kInvalidArgument);
    // The same noise behind each format's magic bytes.
    for (const char* magic : {"\x89PNG\r\n\x1a\n", "\xff\xd8\xff", "BM", "II*"}) {
      std::string disguised = std::string(magic, magic[0] == 'I' ? 4 : strlen(magic)) + noise;
      EXPECT_EQ(DecodeCode(disguised), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_TRUE(MessageHas(DecodeImage("GIF89a\x01\x00\x01\x00", {}).status(), "unsupported"));
  std::vector<uchar> webp;
  if (cv::imencode(".webp", Pattern(8, 8, CV_8UC3), webp)) {  // OpenCV decodes WebP; we do not.
    EXPECT_TRUE(MessageHas(DecodeImage(std::string(webp.begin(), webp.end()), {}).status(),
                           "unsupported image format"));
  }
}

TEST(DecodeImageTest, TruncatedImagesAreInvalidArgument) {
  const cv::Mat image = Pattern(40, 50, CV_8UC3);
  for (const char* ext : {".png", ".jpg", ".tiff", ".bmp"}) {
    const std::string bytes = Encode(image, ext);
    ASSERT_TRUE(DecodeImage(bytes, {}).ok()) << ext;
    // Cut at many points, including just before the end (where decoders are most lenient).
    for (size_t n : {size_t{1}, size_t{10}, size_t{40}, bytes.size() / 3, bytes.size() / 2,
                     bytes.size() - 20, bytes.size() - 2, bytes.size() - 1}) {
      absl::StatusOr<DecodedImage> d = DecodeImage(std::string_view(bytes).substr(0, n), {});
      EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument)
          << ext << " cut to " << n << " of " << bytes.size() << " bytes";
    }
  }
}

TEST(DecodeImageTest, CorruptImageDataIsInvalidArgument) {
  // A PNG whose pixel data is not a zlib stream.
  std::string png = MakePng(4, 4, 8, 0, {"abcd", "efgh", "ijkl", "mnop"});
  const size_t idat = png.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  png[idat + 4] = '\x00';  // The zlib header's compression method.
  EXPECT_TRUE(MessageHas(DecodeImage(png, {}).status(), "PNG image is truncated or corrupt"));
  // A TIFF directory that names pixel data which is not there.
  const std::string tiff = MakeTiff(true, {{256, 3, 1, 8},
                                           {257, 3, 1, 8},
                                           {258, 3, 1, 8},
                                           {262, 3, 1, 1},
                                           {273, 4, 1, 4000},
                                           {278, 3, 1, 8},
                                           {279, 4, 1, 64}});
  EXPECT_EQ(DecodeCode(tiff), absl::StatusCode::kInvalidArgument);
}

TEST(DecodeImageTest, DecompressionBombPngIsRefusedFromItsHeader) {
  // 100000 × 100000 grey pixels (10 GB) announced by a 60-byte file with one row of data.
  const std::string bomb = MakePng(100000, 100000, 8, 0, {std::string(16, '\0')});
  ASSERT_LT(bomb.size(), 100u);
  absl::StatusOr<DecodedImage> d = DecodeImage(bomb, {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(d.status(), "declares 100000×100000 = 10000000000 pixels"));
  EXPECT_TRUE(MessageHas(d.status(), "refused before decoding"));
}

TEST(DecodeImageTest, DecompressionBombJpegAndTiffTilesAreRefusedFromTheirHeaders) {
  std::string jpeg = Encode(Pattern(16, 16, CV_8UC3), ".jpg");
  const size_t sof = jpeg.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  jpeg[sof + 5] = jpeg[sof + 6] = jpeg[sof + 7] = jpeg[sof + 8] = '\xfe';  // 65278 × 65278.
  EXPECT_TRUE(MessageHas(DecodeImage(jpeg, {}).status(), "refused before decoding"));
  // A 16 × 16 TIFF whose tiles would make OpenCV allocate 64 Ki × 64 Ki pixels per tile.
  const std::string tiled =
      MakeTiff(true, {{256, 3, 1, 16}, {257, 3, 1, 16}, {322, 4, 1, 65536}, {323, 4, 1, 65536}});
  EXPECT_TRUE(MessageHas(DecodeImage(tiled, {}).status(), "tiles of 65536×65536"));
}

TEST(DecodeImageTest, LimitsAreTheCallersNotOpenCvs) {
  const std::string png = Encode(Pattern(100, 100, CV_8UC1), ".png");
  EXPECT_TRUE(DecodeImage(png, Limits(1 << 20, 10000)).ok());
  EXPECT_TRUE(MessageHas(DecodeImage(png, Limits(1 << 20, 9999)).status(), "the limit is 9999"));
  EXPECT_TRUE(
      MessageHas(DecodeImage(png, Limits(static_cast<int64_t>(png.size()) - 1, 10000)).status(),
                 "bytes; the limit is"));
}

TEST(DecodeImageTest, ColourComesOutRgbAndGreyStaysGrey) {
  const cv::Mat bgr = Pattern(12, 10, CV_8UC3);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  for (const char* ext : {".png", ".bmp", ".tiff"}) {
    absl::StatusOr<DecodedImage> d = DecodeImage(Encode(bgr, ext), {});
    ASSERT_TRUE(d.ok()) << ext << ": " << d.status();
    EXPECT_TRUE(SamePixels(d->pixels, rgb)) << ext;
  }
  const cv::Mat grey = Pattern(12, 10, CV_8UC1);
  for (const char* ext : {".png", ".bmp", ".tiff"}) {
    absl::StatusOr<DecodedImage> d = DecodeImage(Encode(grey, ext), {});
    ASSERT_TRUE(d.ok()) << ext << ": " << d.status();
    EXPECT_TRUE(SamePixels(d->pixels, grey)) << ext;
  }
  absl::StatusOr<DecodedImage> jpeg = DecodeImage(Encode(grey, ".jpg"), {});
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  EXPECT_EQ(jpeg->pixels.type(), CV_8UC1);
  jpeg = DecodeImage(Encode(bgr, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}), {});
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  EXPECT_EQ(jpeg->pixels.type(), CV_8UC3);
}

TEST(DecodeImageTest, SixteenBitPngAndTiffKeepTheirSamples) {
  for (const char* ext : {".png", ".tiff"}) {
    const cv::Mat grey16 = Pattern(9, 7, CV_16UC1);
    absl::StatusOr<DecodedImage> d = DecodeImage(Encode(grey16, ext), {});
    ASSERT_TRUE(d.ok()) << ext << ": " << d.status();
    EXPECT_TRUE(SamePixels(d->pixels, grey16)) << ext;

    const cv::Mat bgr16 = Pattern(9, 7, CV_16UC3);
    cv::Mat rgb16;
    cv::cvtColor(bgr16, rgb16, cv::COLOR_BGR2RGB);
    d = DecodeImage(Encode(bgr16, ext), {});
    ASSERT_TRUE(d.ok()) << ext << ": " << d.status();
    EXPECT_TRUE(SamePixels(d->pixels, rgb16)) << ext;
  }
}

TEST(DecodeImageTest, AlphaIsDropped) {
  const cv::Mat bgra = Pattern(5, 6, CV_8UC4);
  cv::Mat rgb;
  cv::cvtColor(bgra, rgb, cv::COLOR_BGRA2RGB);
  for (const char* ext : {".png", ".tiff"}) {
    absl::StatusOr<DecodedImage> d = DecodeImage(Encode(bgra, ext), {});
    ASSERT_TRUE(d.ok()) << ext << ": " << d.status();
    EXPECT_TRUE(SamePixels(d->pixels, rgb)) << ext;
  }
  // Grey + alpha (colour type 4) stays one grey channel.
  const std::string la =
      MakePng(3, 2, 8, 4, {std::string("\x10\xff\x20\x80\x30\x00", 6), "\x40\xff\x50\xff\x60\xff"});
  absl::StatusOr<DecodedImage> d = DecodeImage(la, {});
  ASSERT_TRUE(d.ok()) << d.status();
  const cv::Mat expected = (cv::Mat_<uint8_t>(2, 3) << 0x10, 0x20, 0x30, 0x40, 0x50, 0x60);
  EXPECT_TRUE(SamePixels(d->pixels, expected)) << d->pixels;
}

TEST(DecodeImageTest, PalettePngBecomesRgb) {
  const std::string palette = PngChunk("PLTE", std::string("\xff\x00\x00\x00\x00\xff", 6));
  absl::StatusOr<DecodedImage> d =
      DecodeImage(MakePng(2, 1, 8, 3, {std::string("\x00\x01", 2)}, palette), {});
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->pixels.type(), CV_8UC3);
  EXPECT_EQ(d->pixels.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 0, 0));
  EXPECT_EQ(d->pixels.at<cv::Vec3b>(0, 1), cv::Vec3b(0, 0, 255));
}

TEST(DecodeImageTest, CmykJpegBecomesRgb) {
  absl::StatusOr<ImageHeader> h = ReadImageHeader(std::string(kCmykJpeg, sizeof(kCmykJpeg) - 1));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->channels, 4);
  absl::StatusOr<DecodedImage> d = DecodeImage(std::string(kCmykJpeg, sizeof(kCmykJpeg) - 1), {});
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->pixels.type(), CV_8UC3);
  EXPECT_EQ(d->pixels.cols, 8);
  EXPECT_EQ(d->pixels.rows, 6);
  const cv::Vec3b p = d->pixels.at<cv::Vec3b>(3, 4);
  EXPECT_GT(p[0], 200) << p;  // Red.
  EXPECT_LT(p[1], 60) << p;
  EXPECT_LT(p[2], 60) << p;
}

TEST(DecodeImageTest, UnsupportedSampleTypesAreRefused) {
  const cv::Mat f32(4, 4, CV_32FC1, cv::Scalar(0.5));
  EXPECT_TRUE(
      MessageHas(DecodeImage(Encode(f32, ".tiff"), {}).status(), "unsupported sample type"));
}

// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise to display" (orientation 6).
std::string WithExifOrientation(const std::string& jpeg, int orientation) {
  std::string tiff("II*\0\x08\0\0\0", 8);
  tiff += std::string("\x01\x00", 2);                          // One entry.
  tiff += std::string("\x12\x01\x03\x00\x01\x00\x00\x00", 8);  // 0x0112 SHORT × 1.
  tiff += static_cast<char>(orientation);
  tiff += std::string(3, '\0');
  tiff += std::string(4, '\0');  // No next IFD.
  return jpeg.substr(0, 2) + JpegSegment(0xE1, std::string("Exif\0\0", 6) + tiff) + jpeg.substr(2);
}

TEST(DecodeImageTest, ExifOrientationIsIgnored) {
  const cv::Mat bgr = Pattern(20, 40, CV_8UC3);  // Landscape: 40 wide, 20 high.
  const std::string plain = Encode(bgr, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 100});
  const std::string rotated = WithExifOrientation(plain, 6);
  // The tag is real: OpenCV's default mode applies it.
  std::vector<uchar> buffer(rotated.begin(), rotated.end());
  const cv::Mat shown = cv::imdecode(buffer, cv::IMREAD_COLOR);
  ASSERT_EQ(shown.cols, 20);
  ASSERT_EQ(shown.rows, 40);
  // The service returns the pixels as stored, so maps align with what the camera sent.
  absl::StatusOr<DecodedImage> as_sent = DecodeImage(plain, {});
  absl::StatusOr<DecodedImage> d = DecodeImage(rotated, {});
  ASSERT_TRUE(as_sent.ok()) << as_sent.status();
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(SamePixels(d->pixels, as_sent->pixels));
}

}  // namespace
}  // namespace musc
