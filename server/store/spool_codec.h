// The spool's file formats (docs/RELIABILITY.md), as bytes ↔ values; no file access here.
//   image file   (images/<index>.img) "MUSCIMG1", index, width, height, decode seconds, client
//                id, metadata, the encoded bytes as received, FNV-1a checksum
//   results file (results.bin)        "MUSCRES1", per image: index, raw and final score, the S×S
//                map, the decision; FNV-1a checksum
//   record       (session.json)       JSON, format 1: id, product, state, error, seal policy,
//                labels, timestamps (ns since the epoch), image count, small batch, timings
// Binary fields are in the host's byte order (little-endian on every platform this builds for);
// strings are a uint64 length and their bytes. The checksum covers everything before it, so a
// disk (or a copy) that returns other bytes than were written is detected.
#ifndef MUSC_SERVER_STORE_SPOOL_CODEC_H_
#define MUSC_SERVER_STORE_SPOOL_CODEC_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/store/session_record.h"

namespace musc {

// An image file from `image` (its bytes from `image.encoded`; the pixels are not stored).
std::string EncodeImageFile(const SessionImage& image);
// The image back, `encoded` and `encoded_bytes` from the stored bytes, no pixels. DATA_LOSS when
// the file is damaged (magic, checksum, length).
absl::StatusOr<SessionImage> DecodeImageFile(std::string_view data);

std::string EncodeResultsFile(const std::vector<SessionResult>& results);
// DATA_LOSS when the file is damaged or does not hold exactly `image_count` results with indexes
// below it.
absl::StatusOr<std::vector<SessionResult>> DecodeResultsFile(std::string_view data,
                                                             size_t image_count);

// session.json's text (indented, one trailing newline).
std::string EncodeSessionRecord(const SessionRecord& record);
// DATA_LOSS when the text is not JSON, has another format version, lacks or mistypes a field or
// names an unknown state. Unknown timing names are ignored (a stage that no longer exists).
absl::StatusOr<SessionRecord> DecodeSessionRecord(std::string_view text);

}  // namespace musc

#endif  // MUSC_SERVER_STORE_SPOOL_CODEC_H_
