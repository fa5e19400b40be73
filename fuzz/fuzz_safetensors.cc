// libFuzzer target: the safetensors header parser (core/formats/safetensors_format.h), which
// decides whether a downloaded checkpoint can be read before any tensor is allocated. The input is
// the whole file. Beyond "no crash, no leak, no UB", an accepted header must survive a round trip
// through the writer: what the reader accepts, the writer can write and the reader read back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tuple>

#include "core/formats/safetensors_format.h"

namespace {

bool SameTensors(const musc::SafetensorsHeader& a, const musc::SafetensorsHeader& b) {
  if (a.tensors.size() != b.tensors.size() || a.metadata != b.metadata) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const musc::SafetensorsEntry& x = a.tensors[i];
    const musc::SafetensorsEntry& y = b.tensors[i];
    if (std::tie(x.name, x.dtype, x.shape, x.begin, x.end) !=
        std::tie(y.name, y.dtype, y.shape, y.begin, y.end)) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  // The same bytes as the start of a longer file: the truncation and trailing-data paths.
  if (size > 0) {
    (void)musc::ParseSafetensorsHeader(file, size + data[size - 1], "longer.safetensors");
  }
  const absl::StatusOr<musc::SafetensorsHeader> header =
      musc::ParseSafetensorsHeader(file, size, "fuzz.safetensors");
  if (!header.ok()) return 0;

  const absl::StatusOr<std::string> written =
      musc::EncodeSafetensorsHeader(header->tensors, header->metadata);
  if (!written.ok()) std::abort();  // Accepted by the reader, refused by the writer.
  const uint64_t data_size = size - header->data_start;
  const absl::StatusOr<musc::SafetensorsHeader> reread =
      musc::ParseSafetensorsHeader(*written, written->size() + data_size, "rewritten.safetensors");
  if (!reread.ok() || !SameTensors(*header, *reread)) std::abort();
  return 0;
}
