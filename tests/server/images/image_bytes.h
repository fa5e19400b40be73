// Hand-built encoded images for the image header and decoder tests: exact control over every
// header field, including ones no encoder would write (huge dimensions, odd tags, truncation).
#ifndef MUSC_TESTS_SERVER_IMAGES_IMAGE_BYTES_H_
#define MUSC_TESTS_SERVER_IMAGES_IMAGE_BYTES_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace musc::testing {

inline void AppendBe16(std::string& s, uint32_t v) {
  s += static_cast<char>(v >> 8 & 0xff);
  s += static_cast<char>(v & 0xff);
}
inline void AppendBe32(std::string& s, uint32_t v) {
  AppendBe16(s, v >> 16);
  AppendBe16(s, v & 0xffff);
}
inline void AppendLe16(std::string& s, uint32_t v) {
  s += static_cast<char>(v & 0xff);
  s += static_cast<char>(v >> 8 & 0xff);
}
inline void AppendLe32(std::string& s, uint32_t v) {
  AppendLe16(s, v & 0xffff);
  AppendLe16(s, v >> 16);
}

inline uint32_t Crc32(const std::string& bytes) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : bytes) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// One PNG chunk with its length and CRC.
inline std::string PngChunk(const std::string& type, const std::string& data) {
  std::string chunk;
  AppendBe32(chunk, static_cast<uint32_t>(data.size()));
  chunk += type + data;
  AppendBe32(chunk, Crc32(type + data));
  return chunk;
}

// A zlib stream of stored (uncompressed) deflate blocks: valid without a compressor.
inline std::string ZlibStored(const std::string& raw) {
  std::string z = "\x78\x01";
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(raw.size() - pos, 65535);
    z += static_cast<char>(pos + n == raw.size() ? 1 : 0);  // BFINAL, BTYPE 00.
    AppendLe16(z, static_cast<uint32_t>(n));
    AppendLe16(z, static_cast<uint32_t>(~n & 0xffff));
    z += raw.substr(pos, n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  AppendBe32(z, b << 16 | a);
  return z;
}

// A complete PNG: `rows` are the scanlines without filter bytes (filter 0 is added). `before_idat`
// holds extra chunks (PLTE, tRNS, ...) already framed with PngChunk.
inline std::string MakePng(uint32_t width, uint32_t height, int bit_depth, int colour_type,
                           const std::vector<std::string>& rows,
                           const std::string& before_idat = "") {
  std::string ihdr;
  AppendBe32(ihdr, width);
  AppendBe32(ihdr, height);
  ihdr += static_cast<char>(bit_depth);
  ihdr += static_cast<char>(colour_type);
  ihdr += std::string(3, '\0');  // Compression, filter, interlace.
  std::string raw;
  for (const std::string& row : rows) raw += '\0' + row;
  return std::string("\x89PNG\r\n\x1a\n", 8) + PngChunk("IHDR", ihdr) + before_idat +
         PngChunk("IDAT", ZlibStored(raw)) + PngChunk("IEND", "");
}

// A TIFF directory entry: tag, type (3 SHORT, 4 LONG), count, and the 4-byte value field.
struct TiffEntry {
  uint16_t tag;
  uint16_t type;
  uint32_t count;
  uint32_t value;  // SHORT values sit in the field's first two bytes, as the format stores them.
};

// A TIFF header and IFD0 at offset 8 with `entries`, followed by `tail` (pixel data, arrays).
inline std::string MakeTiff(bool little_endian, const std::vector<TiffEntry>& entries,
                            const std::string& tail = "") {
  auto u16 = [&](std::string& s, uint32_t v) {
    little_endian ? AppendLe16(s, v) : AppendBe16(s, v);
  };
  auto u32 = [&](std::string& s, uint32_t v) {
    little_endian ? AppendLe32(s, v) : AppendBe32(s, v);
  };
  std::string t = little_endian ? std::string("II*\0", 4) : std::string("MM\0*", 4);
  u32(t, 8);
  u16(t, static_cast<uint32_t>(entries.size()));
  for (const TiffEntry& e : entries) {
    u16(t, e.tag);
    u16(t, e.type);
    u32(t, e.count);
    if (e.type == 3 && e.count <= 2) {
      u16(t, e.value);
      u16(t, 0);
    } else {
      u32(t, e.value);
    }
  }
  u32(t, 0);  // No next IFD.
  return t + tail;
}

// JPEG segments: a marker with its length-prefixed payload.
inline std::string JpegSegment(uint8_t marker, const std::string& payload) {
  std::string s = "\xff";
  s += static_cast<char>(marker);
  AppendBe16(s, static_cast<uint32_t>(payload.size() + 2));
  return s + payload;
}

// A baseline frame header (SOF0) for 8-bit samples with `components` components.
inline std::string JpegSof(uint32_t width, uint32_t height, int components, int precision = 8,
                           uint8_t marker = 0xC0) {
  std::string p;
  p += static_cast<char>(precision);
  AppendBe16(p, height);
  AppendBe16(p, width);
  p += static_cast<char>(components);
  for (int c = 0; c < components; ++c) p += std::string{static_cast<char>(c + 1), '\x11', '\0'};
  return JpegSegment(marker, p);
}

// A scan header for one component followed by `data` (entropy-coded bytes).
inline std::string JpegScan(const std::string& data) {
  return JpegSegment(0xDA, std::string("\x01\x01\x00\x00\x3f\x00", 6)) + data;
}

}  // namespace musc::testing

#endif  // MUSC_TESTS_SERVER_IMAGES_IMAGE_BYTES_H_
