// The safetensors container format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON describing every tensor, then the raw
// little-endian, row-major tensor bytes. LibTorch-free on purpose: the header of a downloaded file
// is untrusted input, so this parser is also built and tested under ASan/UBSan and fuzzed.
//
// The tensor bytes themselves are read by core/backbones/checkpoint_io.h; this file only decides,
// before any tensor is allocated, whether the header describes a file that can be read safely:
// known dtypes, shapes whose byte sizes match their offsets, offsets that tile the data section
// exactly (no gaps, no overlaps, nothing past the end of the file), no duplicate names.
#ifndef MUSC_CORE_FORMATS_SAFETENSORS_FORMAT_H_
#define MUSC_CORE_FORMATS_SAFETENSORS_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace musc {

// The reference implementation refuses headers above 100 MB so that parsing a hostile file cannot
// exhaust memory; the same bound here keeps files it would reject out of this engine too.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// Real headers nest three deep (file → tensor → shape); anything deeper is not a safetensors
// header, and bounding it keeps a hostile header from building a huge tree of nested arrays.
inline constexpr int kSafetensorsMaxJsonDepth = 8;
// No real tensor has more dimensions than this; the bound keeps the error path for a hostile
// shape list short.
inline constexpr size_t kSafetensorsMaxRank = 64;

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // As spelled in the file: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  // Byte offsets relative to the start of the data section; end - begin == numel × item size.
  uint64_t begin = 0, end = 0;
};

struct SafetensorsHeader {
  // Ordered by position in the data section (begin, then end, then name), so that reading them
  // in order walks the file sequentially.
  std::vector<SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;  // The optional "__metadata__" object.
  uint64_t data_start = 0;                      // 8 + header length: where offset 0 lies.
};

// Bytes per element of a safetensors dtype; 0 for a name that is not a byte-sized safetensors
// dtype (unknown, or the sub-byte F4/F6 formats, which this engine does not read).
size_t SafetensorsDtypeSize(std::string_view dtype);

// Parses and validates the header of a safetensors file of `file_size` bytes. `file_prefix` holds
// the file's first bytes: at least 8 + the header length, or the whole file. `file_name` is only
// used in messages; every error names it, the tensor concerned, and what was expected versus found.
// InvalidArgumentError for a malformed header, DataLossError when the file is shorter than its
// header says (a truncated download).
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file_prefix,
                                                         uint64_t file_size,
                                                         std::string_view file_name);

// The writer's half: the 8-byte length and the JSON header for `tensors`, whose offsets must tile
// a data section (in any order). The JSON is padded with spaces so the data section starts 8-byte
// aligned, as the reference writer does. The result is checked by ParseSafetensorsHeader, so
// anything written with it can be read back; names must be valid UTF-8, and "__metadata__" is
// reserved. Metadata is omitted from the file when empty.
absl::StatusOr<std::string> EncodeSafetensorsHeader(
    const std::vector<SafetensorsEntry>& tensors,
    const std::map<std::string, std::string>& metadata);

}  // namespace musc

#endif  // MUSC_CORE_FORMATS_SAFETENSORS_FORMAT_H_
