// Image header reader: dimensions, depth and channels from PNG, JPEG, BMP and TIFF headers, and a
// clear refusal (never a crash: this suite also runs under ASan/UBSan) for every malformed one.
#include "server/images/image_header.h"

#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "tests/server/images/image_bytes.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::AppendBe16;
using ::musc::testing::AppendLe16;
using ::musc::testing::AppendLe32;
using ::musc::testing::JpegScan;
using ::musc::testing::JpegSegment;
using ::musc::testing::JpegSof;
using ::musc::testing::MakePng;
using ::musc::testing::MakeTiff;
using ::musc::testing::MessageHas;
using ::musc::testing::TiffEntry;

std::string Encode(const cv::Mat& image, const std::string& ext, std::vector<int> params = {}) {
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(ext, image, bytes, params));
  return std::string(bytes.begin(), bytes.end());
}

cv::Mat Noise(int rows, int cols, int type) {
  cv::Mat m(rows, cols, type);
  cv::randu(m, 0, 255);
  return m;
}

// Every strict prefix of `bytes` must be refused (a stride keeps big files quick).
void ExpectEveryPrefixRefused(const std::string& bytes, size_t stride = 1) {
  for (size_t n = 0; n < bytes.size(); n += stride) {
    absl::StatusOr<ImageHeader> h = ReadImageHeader(std::string_view(bytes).substr(0, n));
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << "prefix of " << n;
  }
}

TEST(SniffImageFormatTest, RecognisesOnlyTheFourFormats) {
  EXPECT_EQ(SniffImageFormat("\x89PNG\r\n\x1a\n...."), ImageFormat::kPng);
  EXPECT_EQ(SniffImageFormat("\xff\xd8\xff\xe0"), ImageFormat::kJpeg);
  EXPECT_EQ(SniffImageFormat("BM...."), ImageFormat::kBmp);
  EXPECT_EQ(SniffImageFormat(std::string("II*\0", 4)), ImageFormat::kTiff);
  EXPECT_EQ(SniffImageFormat(std::string("MM\0*", 4)), ImageFormat::kTiff);
  EXPECT_EQ(SniffImageFormat(""), std::nullopt);
  EXPECT_EQ(SniffImageFormat("GIF89a"), std::nullopt);
  EXPECT_EQ(SniffImageFormat("\x89PNG"), std::nullopt);                // Cut signature.
  EXPECT_EQ(SniffImageFormat(std::string("II+\0", 4)), std::nullopt);  // BigTIFF.
  EXPECT_EQ(SniffImageFormat("RIFF....WEBPVP8 "), std::nullopt);
  EXPECT_EQ(ReadImageHeader("GIF89a").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ImageHeaderTest, PngDimensionsDepthAndChannels) {
  const struct {
    int colour, depth, channels;
  } cases[] = {{0, 16, 1}, {0, 1, 1}, {2, 8, 3}, {3, 4, 1}, {4, 8, 2}, {6, 16, 4}};
  for (const auto& c : cases) {
    absl::StatusOr<ImageHeader> h = ReadImageHeader(MakePng(640, 480, c.depth, c.colour, {}));
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->format, ImageFormat::kPng);
    EXPECT_EQ(h->width, 640);
    EXPECT_EQ(h->height, 480);
    EXPECT_EQ(h->bit_depth, c.depth);
    EXPECT_EQ(h->channels, c.channels) << "colour type " << c.colour;
  }
  const std::string real = Encode(Noise(7, 5, CV_16UC1), ".png");
  absl::StatusOr<ImageHeader> h = ReadImageHeader(real);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->width, 5);
  EXPECT_EQ(h->height, 7);
  EXPECT_EQ(h->bit_depth, 16);
  EXPECT_EQ(h->channels, 1);
}

TEST(ImageHeaderTest, PngRefusesBadHeaders) {
  // A decompression bomb's header is still a valid header: the decoder refuses it by its limit.
  absl::StatusOr<ImageHeader> bomb = ReadImageHeader(MakePng(100000, 100000, 8, 0, {}));
  ASSERT_TRUE(bomb.ok()) << bomb.status();
  EXPECT_EQ(bomb->width * bomb->height, int64_t{10000000000});

  EXPECT_TRUE(MessageHas(ReadImageHeader(MakePng(0, 10, 8, 0, {})).status(), "dimensions 0×10"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(MakePng(10, 0x80000000u, 8, 0, {})).status(),
                         "outside 1..1048576"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(MakePng(10, 10, 16, 3, {})).status(), "bit depth 16"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(MakePng(10, 10, 8, 5, {})).status(), "colour type 5"));
  std::string not_ihdr = MakePng(10, 10, 8, 0, {});
  not_ihdr.replace(12, 4, "IDAT");
  EXPECT_TRUE(MessageHas(ReadImageHeader(not_ihdr).status(), "first chunk"));
  std::string interlace = MakePng(10, 10, 8, 0, {});
  interlace[28] = 2;
  EXPECT_TRUE(MessageHas(ReadImageHeader(interlace).status(), "interlace"));
  ExpectEveryPrefixRefused(MakePng(10, 10, 8, 0, {}).substr(0, 29));
}

TEST(ImageHeaderTest, JpegFromOpenCvBaselineProgressiveAndGrey) {
  absl::StatusOr<ImageHeader> h = ReadImageHeader(Encode(Noise(30, 41, CV_8UC3), ".jpg"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->format, ImageFormat::kJpeg);
  EXPECT_EQ(h->width, 41);
  EXPECT_EQ(h->height, 30);
  EXPECT_EQ(h->bit_depth, 8);
  EXPECT_EQ(h->channels, 3);
  EXPECT_EQ(h->jpeg_scans, 1);

  h = ReadImageHeader(Encode(Noise(30, 41, CV_8UC3), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_GT(h->jpeg_scans, 1);

  h = ReadImageHeader(Encode(Noise(9, 8, CV_8UC1), ".jpg"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->channels, 1);
}

TEST(ImageHeaderTest, JpegCutShortAnywhereIsRefused) {
  const std::string jpeg = Encode(Noise(16, 16, CV_8UC3), ".jpg");
  ExpectEveryPrefixRefused(jpeg);
  EXPECT_TRUE(MessageHas(ReadImageHeader(jpeg.substr(0, jpeg.size() - 2)).status(), "truncated"));
  // Trailing bytes after EOI (camera vendors append data) are allowed.
  EXPECT_TRUE(ReadImageHeader(jpeg + "trailing").ok());
}

TEST(ImageHeaderTest, JpegRefusesUnsupportedFrames) {
  const std::string soi = "\xff\xd8";
  const std::string scan = JpegScan("\x12\x34") + "\xff\xd9";
  EXPECT_TRUE(ReadImageHeader(soi + JpegSof(8, 8, 3) + scan).ok());
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + JpegSof(8, 8, 3, 12) + scan).status(), "12-bit"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + JpegSof(8, 0, 1) + scan).status(), "DNL"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + JpegSof(0, 8, 1) + scan).status(), "dimensions"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + JpegSof(8, 8, 2) + scan).status(), "2 components"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + JpegSof(8, 8, 1) + JpegSof(8, 8, 1) + scan).status(),
                         "more than one frame"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + scan).status(), "scan before the frame"));
  EXPECT_TRUE(
      MessageHas(ReadImageHeader(soi + JpegSof(8, 8, 1) + "\xff\xd9").status(), "no image data"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + "\xff\xd9").status(), "no frame header"));
  // A segment length running past the end.
  EXPECT_TRUE(
      MessageHas(ReadImageHeader(soi + std::string("\xff\xe1\x7f\xff", 4)).status(), "length"));
  // Garbage where a marker must be.
  EXPECT_TRUE(MessageHas(ReadImageHeader(soi + JpegSof(8, 8, 1) + "xyz" + scan).status(),
                         "expected a marker"));
  // Stuffed zeros, restart markers and fill bytes inside the entropy-coded data are data.
  EXPECT_TRUE(ReadImageHeader(soi + JpegSof(8, 8, 1) +
                              JpegScan(std::string("\x01\xff\x00\x02\xff\xd3\x03\xff", 8)) +
                              "\xff\xd9")
                  .ok());
}

TEST(ImageHeaderTest, JpegScanBombIsRefused) {
  std::string many = "\xff\xd8" + JpegSof(8, 8, 1);
  for (int i = 0; i < kMaxJpegScans; ++i) many += JpegScan("\x00");
  absl::StatusOr<ImageHeader> h = ReadImageHeader(many + "\xff\xd9");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->jpeg_scans, kMaxJpegScans);
  EXPECT_TRUE(MessageHas(ReadImageHeader(many + JpegScan("\x00") + "\xff\xd9").status(),
                         "more than 256 scans"));
}

TEST(ImageHeaderTest, BmpInfoAndCoreHeaders) {
  absl::StatusOr<ImageHeader> h = ReadImageHeader(Encode(Noise(6, 9, CV_8UC3), ".bmp"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->format, ImageFormat::kBmp);
  EXPECT_EQ(h->width, 9);
  EXPECT_EQ(h->height, 6);
  EXPECT_EQ(h->bit_depth, 24);
  EXPECT_EQ(h->channels, 3);

  auto info = [](int32_t width, int32_t height, int bpp, uint32_t size = 40) {
    std::string b = "BM";
    AppendLe32(b, 54);  // File size (unchecked).
    AppendLe32(b, 0);
    AppendLe32(b, 54);  // Pixel data offset.
    AppendLe32(b, size);
    AppendLe32(b, static_cast<uint32_t>(width));
    AppendLe32(b, static_cast<uint32_t>(height));
    AppendLe16(b, 1);
    AppendLe16(b, static_cast<uint32_t>(bpp));
    return b + std::string(size - 16, '\0');
  };
  h = ReadImageHeader(info(10, -20, 8));  // Top-down.
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->height, 20);
  EXPECT_EQ(h->channels, 1);
  h = ReadImageHeader(info(10, 20, 32, 124));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->channels, 4);
  EXPECT_TRUE(MessageHas(ReadImageHeader(info(10, INT32_MIN, 24)).status(), "dimensions"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(info(-10, 20, 24)).status(), "dimensions"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(info(10, 20, 7)).status(), "7 bits per pixel"));
  EXPECT_TRUE(MessageHas(ReadImageHeader(info(10, 20, 24, 200)).status(), "200 bytes"));
  ExpectEveryPrefixRefused(info(10, 20, 24).substr(0, 30));

  std::string core = "BM";
  AppendLe32(core, 0);
  AppendLe32(core, 0);
  AppendLe32(core, 26);
  AppendLe32(core, 12);
  AppendLe16(core, 300);
  AppendLe16(core, 200);
  AppendLe16(core, 1);
  AppendLe16(core, 24);
  h = ReadImageHeader(core);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->width, 300);
  EXPECT_EQ(h->height, 200);
  ExpectEveryPrefixRefused(core);
}

TEST(ImageHeaderTest, TiffBothByteOrdersShortAndLong) {
  for (bool le : {true, false}) {
    SCOPED_TRACE(le ? "little-endian" : "big-endian");
    // BitsPerSample has 3 values (6 bytes): stored at an offset, here just after the IFD.
    const uint32_t array_at = 8 + 2 + 12 * 4 + 4;
    std::string bits;
    for (int i = 0; i < 3; ++i) {
      le ? AppendLe16(bits, 16) : AppendBe16(bits, 16);
    }
    absl::StatusOr<ImageHeader> h = ReadImageHeader(MakeTiff(
        le, {{256, 4, 1, 70000}, {257, 3, 1, 500}, {258, 3, 3, array_at}, {277, 3, 1, 3}}, bits));
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->format, ImageFormat::kTiff);
    EXPECT_EQ(h->width, 70000);
    EXPECT_EQ(h->height, 500);
    EXPECT_EQ(h->bit_depth, 16);
    EXPECT_EQ(h->channels, 3);
    EXPECT_EQ(h->tile_width, 0);

    h = ReadImageHeader(
        MakeTiff(le, {{256, 3, 1, 16}, {257, 3, 1, 16}, {322, 3, 1, 256}, {323, 4, 1, 512}}));
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->bit_depth, 1);  // The defaults: one sample of one bit.
    EXPECT_EQ(h->channels, 1);
    EXPECT_EQ(h->tile_width, 256);
    EXPECT_EQ(h->tile_height, 512);
  }
  absl::StatusOr<ImageHeader> h = ReadImageHeader(Encode(Noise(11, 13, CV_16UC1), ".tiff"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->width, 13);
  EXPECT_EQ(h->height, 11);
  EXPECT_EQ(h->bit_depth, 16);
  EXPECT_EQ(h->channels, 1);
}

TEST(ImageHeaderTest, TiffRefusesBadDirectories) {
  auto status = [](const std::vector<TiffEntry>& entries, const std::string& tail = "") {
    return ReadImageHeader(MakeTiff(true, entries, tail)).status();
  };
  EXPECT_TRUE(MessageHas(status({{256, 3, 1, 16}}), "no ImageWidth or ImageLength"));
  EXPECT_TRUE(MessageHas(status({{256, 3, 1, 0}, {257, 3, 1, 16}}), "dimensions 0×16"));
  EXPECT_TRUE(MessageHas(status({{256, 4, 1, 0xffffffffu}, {257, 3, 1, 16}}), "dimensions"));
  EXPECT_TRUE(MessageHas(status({{256, 5, 1, 16}, {257, 3, 1, 16}}), "tag 256"));  // RATIONAL.
  EXPECT_TRUE(MessageHas(status({{256, 3, 0, 16}, {257, 3, 1, 16}}), "tag 256"));  // No value.
  // BitsPerSample's array offset past the end of the data.
  EXPECT_TRUE(
      MessageHas(status({{256, 3, 1, 16}, {257, 3, 1, 16}, {258, 3, 3, 0xfffffff0u}}), "tag 258"));
  EXPECT_TRUE(
      MessageHas(status({{256, 3, 1, 16}, {257, 3, 1, 16}, {322, 3, 1, 16}}), "tiles of 16×0"));
  EXPECT_TRUE(MessageHas(status({{256, 3, 1, 16}, {257, 3, 1, 16}, {277, 3, 1, 0}}), "0 samples"));

  std::string bad_offset = MakeTiff(true, {{256, 3, 1, 16}, {257, 3, 1, 16}});
  bad_offset[4] = '\x7f';
  EXPECT_TRUE(MessageHas(ReadImageHeader(bad_offset).status(), "outside the data"));
  ExpectEveryPrefixRefused(MakeTiff(false, {{256, 3, 1, 16}, {257, 3, 1, 16}}).substr(0, 8 + 26));
}

}  // namespace
}  // namespace musc
