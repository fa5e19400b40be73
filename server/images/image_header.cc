#include "server/images/image_header.h"

#include <cstddef>

#include "absl/strings/str_cat.h"

namespace musc {
namespace {

// Bounds-checked little/big-endian reads from the encoded bytes. Every caller checks `Has` first;
// the readers themselves never look past `bytes`.
class Reader {
 public:
  Reader(std::string_view bytes, bool little_endian) : b_(bytes), le_(little_endian) {}
  size_t size() const { return b_.size(); }
  bool Has(uint64_t pos, uint64_t n) const { return pos <= b_.size() && n <= b_.size() - pos; }
  uint32_t U8(size_t pos) const { return static_cast<unsigned char>(b_[pos]); }
  uint32_t U16(size_t pos) const {
    return le_ ? U8(pos) | U8(pos + 1) << 8 : U8(pos) << 8 | U8(pos + 1);
  }
  uint32_t U32(size_t pos) const {
    return le_ ? U16(pos) | U16(pos + 2) << 16 : U16(pos) << 16 | U16(pos + 2);
  }

 private:
  std::string_view b_;
  bool le_;
};

absl::Status Invalid(ImageFormat format, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(ImageFormatName(format), " header: ", what));
}

absl::Status CheckDimensions(const ImageHeader& h) {
  if (h.width < 1 || h.width > kMaxImageDimension || h.height < 1 ||
      h.height > kMaxImageDimension) {
    return Invalid(h.format, absl::StrCat("dimensions ", h.width, "×", h.height, " are outside 1..",
                                          kMaxImageDimension));
  }
  return absl::OkStatus();
}

// PNG: the signature, then the IHDR chunk, which the specification requires to come first.
absl::StatusOr<ImageHeader> ReadPng(const Reader& r) {
  ImageHeader h;
  h.format = ImageFormat::kPng;
  // 8 signature + 4 length + 4 type + 13 data (the CRC is libpng's to check).
  if (!r.Has(0, 8 + 8 + 13)) return Invalid(h.format, "truncated before the end of IHDR");
  if (r.U32(8) != 13 || r.U32(12) != 0x49484452u /* "IHDR" */) {
    return Invalid(h.format, "the first chunk is not a 13-byte IHDR");
  }
  h.width = r.U32(16);
  h.height = r.U32(20);
  h.bit_depth = static_cast<int>(r.U8(24));
  const uint32_t colour = r.U8(25);
  // Allowed bit depths per colour type (PNG specification, table 11.1).
  bool depth_ok = false;
  const int d = h.bit_depth;
  switch (colour) {
    case 0:  // Grey.
      h.channels = 1;
      depth_ok = d == 1 || d == 2 || d == 4 || d == 8 || d == 16;
      break;
    case 2:  // RGB.
      h.channels = 3;
      depth_ok = d == 8 || d == 16;
      break;
    case 3:  // Palette indices.
      h.channels = 1;
      depth_ok = d == 1 || d == 2 || d == 4 || d == 8;
      break;
    case 4:  // Grey + alpha.
      h.channels = 2;
      depth_ok = d == 8 || d == 16;
      break;
    case 6:  // RGBA.
      h.channels = 4;
      depth_ok = d == 8 || d == 16;
      break;
    default:
      return Invalid(h.format, absl::StrCat("colour type ", colour, " is not 0, 2, 3, 4 or 6"));
  }
  if (!depth_ok) {
    return Invalid(h.format, absl::StrCat("bit depth ", d, " is invalid for colour type ", colour));
  }
  if (r.U8(26) != 0 || r.U8(27) != 0 || r.U8(28) > 1) {
    return Invalid(h.format, "unknown compression, filter or interlace method");
  }
  if (absl::Status s = CheckDimensions(h); !s.ok()) return s;
  return h;
}

// JPEG: walks every marker segment from SOI to EOI, skipping entropy-coded data, to find the frame
// header (SOFn) and count the scans. Reaching EOI is required: libjpeg only warns about a file
// that ends early and returns the missing rows as grey, which would be scored as a real image.
absl::StatusOr<ImageHeader> ReadJpeg(const Reader& r) {
  ImageHeader h;
  h.format = ImageFormat::kJpeg;
  bool have_frame = false;
  size_t pos = 2;  // After SOI (FF D8), which the sniffer checked.
  while (true) {
    if (!r.Has(pos, 1)) return Invalid(h.format, "truncated (no end-of-image marker)");
    if (r.U8(pos) != 0xFF) {
      return Invalid(h.format, absl::StrCat("expected a marker at byte ", pos));
    }
    while (r.Has(pos, 1) && r.U8(pos) == 0xFF) ++pos;  // Fill bytes may precede a marker.
    if (!r.Has(pos, 1)) return Invalid(h.format, "truncated (no end-of-image marker)");
    const uint32_t marker = r.U8(pos++);
    if (marker == 0xD9) break;                                           // EOI.
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // No length field.
    if (marker == 0x00 || marker == 0xD8) {
      return Invalid(h.format,
                     absl::StrCat("unexpected marker 0x", absl::Hex(marker), " at byte ", pos - 1));
    }
    if (!r.Has(pos, 2)) return Invalid(h.format, "truncated inside a marker segment");
    const uint32_t length = r.U16(pos);  // Includes the two length bytes.
    if (length < 2 || !r.Has(pos, length)) {
      return Invalid(h.format, absl::StrCat("marker 0x", absl::Hex(marker), " at byte ", pos - 1,
                                            " has length ", length, " past the end of the data"));
    }
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
    const bool frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      if (have_frame) return Invalid(h.format, "more than one frame header (hierarchical JPEG)");
      if (length < 8) return Invalid(h.format, "frame header too short");
      have_frame = true;
      h.bit_depth = static_cast<int>(r.U8(pos + 2));
      h.height = r.U16(pos + 3);
      h.width = r.U16(pos + 5);
      h.channels = static_cast<int>(r.U8(pos + 7));
      if (length != 8 + 3 * static_cast<uint32_t>(h.channels)) {
        return Invalid(h.format, absl::StrCat("frame header of length ", length, " for ",
                                              h.channels, " components"));
      }
      if (h.channels != 1 && h.channels != 3 && h.channels != 4) {
        return Invalid(h.format, absl::StrCat(h.channels, " components (1, 3 or 4 supported)"));
      }
      if (h.bit_depth != 8) {
        return Invalid(h.format,
                       absl::StrCat(h.bit_depth, "-bit samples are not supported (8 bits only)"));
      }
      if (h.height == 0) {
        return Invalid(h.format, "height 0 (defined later by a DNL marker) is not supported");
      }
      if (absl::Status s = CheckDimensions(h); !s.ok()) return s;
    }
    pos += length;
    if (marker != 0xDA) continue;  // Not SOS: the next marker follows the segment.
    if (!have_frame) return Invalid(h.format, "scan before the frame header");
    if (++h.jpeg_scans > kMaxJpegScans) {
      return Invalid(h.format, absl::StrCat("more than ", kMaxJpegScans, " scans"));
    }
    // Entropy-coded data: runs until a marker other than a stuffed zero (FF 00) or a restart
    // marker (FF D0..D7).
    while (true) {
      while (r.Has(pos, 1) && r.U8(pos) != 0xFF) ++pos;
      if (!r.Has(pos, 2)) return Invalid(h.format, "truncated inside the image data");
      const uint32_t next = r.U8(pos + 1);
      if (next == 0x00 || (next >= 0xD0 && next <= 0xD7)) {
        pos += 2;
      } else if (next == 0xFF) {
        ++pos;  // Fill byte: the marker starts at the next 0xFF.
      } else {
        break;  // `pos` is at the 0xFF of the next marker.
      }
    }
  }
  if (!have_frame) return Invalid(h.format, "no frame header before the end-of-image marker");
  if (h.jpeg_scans == 0) return Invalid(h.format, "no image data before the end-of-image marker");
  return h;
}

// BMP: the 14-byte file header, then a core (12-byte) or info (40..124-byte) header.
absl::StatusOr<ImageHeader> ReadBmp(const Reader& r) {
  ImageHeader h;
  h.format = ImageFormat::kBmp;
  if (!r.Has(0, 18)) return Invalid(h.format, "truncated before the info header");
  const uint32_t info_size = r.U32(14);
  int64_t height = 0;
  if (info_size == 12) {
    if (!r.Has(0, 26)) return Invalid(h.format, "truncated inside the core header");
    h.width = r.U16(18);
    height = r.U16(20);
    h.bit_depth = static_cast<int>(r.U16(24));
  } else if (info_size >= 40 && info_size <= 124) {
    if (!r.Has(0, 30)) return Invalid(h.format, "truncated inside the info header");
    h.width = static_cast<int32_t>(r.U32(18));
    height = static_cast<int32_t>(r.U32(22));
    h.bit_depth = static_cast<int>(r.U16(28));
  } else {
    return Invalid(h.format, absl::StrCat("info header of ", info_size, " bytes is not supported"));
  }
  h.height = height < 0 ? -height : height;  // int32 → int64: negating INT32_MIN is fine.
  switch (h.bit_depth) {
    case 1:
    case 4:
    case 8:
      h.channels = 1;
      break;
    case 16:
    case 24:
      h.channels = 3;
      break;
    case 32:
      h.channels = 4;
      break;
    default:
      return Invalid(h.format, absl::StrCat(h.bit_depth, " bits per pixel"));
  }
  if (absl::Status s = CheckDimensions(h); !s.ok()) return s;
  return h;
}

// TIFF: the first image file directory (IFD0), which is what OpenCV decodes.
absl::StatusOr<ImageHeader> ReadTiff(const Reader& r) {
  ImageHeader h;
  h.format = ImageFormat::kTiff;
  if (!r.Has(0, 8)) return Invalid(h.format, "truncated before the first directory offset");
  const uint32_t ifd = r.U32(4);
  if (ifd < 8 || !r.Has(ifd, 2)) {
    return Invalid(h.format, absl::StrCat("first directory offset ", ifd, " is outside the data"));
  }
  const uint32_t entries = r.U16(ifd);
  if (!r.Has(uint64_t{ifd} + 2, uint64_t{12} * entries)) {
    return Invalid(h.format, absl::StrCat("directory of ", entries, " entries is truncated"));
  }
  // A SHORT or LONG value `index` of the entry at `e`: stored in the entry itself when all its
  // values fit in 4 bytes, else at the offset the entry holds.
  auto value = [&](size_t e, uint32_t index, uint32_t* out) -> bool {
    const uint32_t type = r.U16(e + 2);
    const uint32_t count = r.U32(e + 4);
    if ((type != 3 && type != 4) || index >= count) return false;
    const uint64_t item = type == 3 ? 2 : 4;
    const uint64_t pos = item * count <= 4 ? e + 8 : r.U32(e + 8);
    if (!r.Has(pos + item * index, item)) return false;
    *out = type == 3 ? r.U16(pos + item * index) : r.U32(pos + item * index);
    return true;
  };
  uint32_t width = 0, height = 0, bits = 1, samples = 1, tile_w = 0, tile_h = 0;
  bool has_width = false, has_height = false;
  for (uint32_t i = 0; i < entries; ++i) {
    const size_t e = ifd + 2 + size_t{12} * i;
    const uint32_t tag = r.U16(e);
    uint32_t* field = nullptr;
    switch (tag) {
      case 256:
        field = &width;
        has_width = true;
        break;
      case 257:
        field = &height;
        has_height = true;
        break;
      case 258:
        field = &bits;  // One value per sample; OpenCV requires them equal, so the first will do.
        break;
      case 277:
        field = &samples;
        break;
      case 322:
        field = &tile_w;
        break;
      case 323:
        field = &tile_h;
        break;
      default:
        continue;
    }
    if (!value(e, 0, field)) {
      return Invalid(h.format, absl::StrCat("tag ", tag, " is not a readable SHORT or LONG"));
    }
  }
  if (!has_width || !has_height) return Invalid(h.format, "no ImageWidth or ImageLength tag");
  h.width = width;
  h.height = height;
  h.bit_depth = static_cast<int>(bits);
  h.channels = static_cast<int>(samples);
  if (bits < 1 || bits > 64 || samples < 1 || samples > 16) {
    return Invalid(h.format, absl::StrCat(samples, " samples of ", bits, " bits per pixel"));
  }
  if ((tile_w == 0) != (tile_h == 0) || tile_w > kMaxImageDimension ||
      tile_h > kMaxImageDimension) {
    return Invalid(h.format, absl::StrCat("tiles of ", tile_w, "×", tile_h, " pixels"));
  }
  h.tile_width = tile_w;
  h.tile_height = tile_h;
  if (absl::Status s = CheckDimensions(h); !s.ok()) return s;
  return h;
}

}  // namespace

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kTiff:
      return "TIFF";
  }
  return "?";
}

std::optional<ImageFormat> SniffImageFormat(std::string_view b) {
  auto starts = [&](std::string_view magic) { return b.substr(0, magic.size()) == magic; };
  if (starts("\x89PNG\r\n\x1a\n")) return ImageFormat::kPng;
  if (starts("\xff\xd8\xff")) return ImageFormat::kJpeg;
  if (starts("BM")) return ImageFormat::kBmp;
  if (starts(std::string_view("II*\0", 4)) || starts(std::string_view("MM\0*", 4))) {
    return ImageFormat::kTiff;
  }
  return std::nullopt;
}

absl::StatusOr<ImageHeader> ReadImageHeader(std::string_view bytes) {
  const std::optional<ImageFormat> format = SniffImageFormat(bytes);
  if (!format) {
    return absl::InvalidArgumentError(
        "unsupported image format (expected PNG, JPEG, BMP or TIFF by their magic bytes)");
  }
  switch (*format) {
    case ImageFormat::kPng:
      return ReadPng(Reader(bytes, /*little_endian=*/false));
    case ImageFormat::kJpeg:
      return ReadJpeg(Reader(bytes, /*little_endian=*/false));
    case ImageFormat::kBmp:
      return ReadBmp(Reader(bytes, /*little_endian=*/true));
    case ImageFormat::kTiff:
      return ReadTiff(Reader(bytes, /*little_endian=*/bytes[0] == 'I'));
  }
  return absl::InternalError("unreachable");
}

}  // namespace musc
