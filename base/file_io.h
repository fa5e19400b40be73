// Whole-file reads, the one implementation every layer uses (products, tokens, certificates,
// images, test fixtures). Abseil and the standard library only.
#ifndef MUSC_BASE_FILE_IO_H_
#define MUSC_BASE_FILE_IO_H_

#include <string>

#include "absl/status/statusor.h"

namespace musc {

// The file's bytes. NOT_FOUND when it cannot be opened, DATA_LOSS when a read fails midway; the
// message names `path` (callers that answer clients must not pass it on: docs/SECURITY.md).
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace musc

#endif  // MUSC_BASE_FILE_IO_H_
