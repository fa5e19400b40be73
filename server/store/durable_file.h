// Durable files for the spool and line-mode state: each file is written to a temporary name,
// fsynced, renamed and its directory fsynced, so after a crash it is either absent or whole, and
// once a write returns OK it survives a power loss (as far as the disk honours fsync). Files are
// read back whole with ReadFileToString (base/file_io.h).
#ifndef MUSC_SERVER_STORE_DURABLE_FILE_H_
#define MUSC_SERVER_STORE_DURABLE_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace musc {

// The suffix of a write in progress; a start-up removes files ending with it (never acknowledged).
inline constexpr char kTempFileSuffix[] = ".tmp";

// A failed write: RESOURCE_EXHAUSTED for a full disk (ENOSPC, EDQUOT, EFBIG), UNAVAILABLE for
// anything else; `what` says what was being done, `path` where, `err` the errno.
absl::Status WriteError(const std::string& what, const std::string& path, int err);
// fsync of a directory, so that renames and creations in it are durable.
absl::Status FsyncDir(const std::string& dir, const std::string& what);
// dir/name, atomically and durably (see above).
absl::Status WriteFileAtomic(const std::string& dir, const std::string& name, std::string_view data,
                             const std::string& what);

}  // namespace musc

#endif  // MUSC_SERVER_STORE_DURABLE_FILE_H_
