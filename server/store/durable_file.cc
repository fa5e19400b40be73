#include "server/store/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace musc {

// Full disk (or a file size limit) → RESOURCE_EXHAUSTED: the client may retry later or
// elsewhere. Anything else → UNAVAILABLE: this server cannot store images now.
absl::Status WriteError(const std::string& what, const std::string& path, int err) {
  const std::string reason = std::strerror(err);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
    return absl::ResourceExhaustedError(
        absl::StrCat("spool disk full: cannot ", what, " (", path, ": ", reason, ")"));
  }
  return absl::UnavailableError(
      absl::StrCat("spool not writable: cannot ", what, " (", path, ": ", reason, ")"));
}

absl::Status FsyncDir(const std::string& dir, const std::string& what) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return WriteError(what, dir, errno);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  return rc == 0 ? absl::OkStatus() : WriteError(what, dir, err);
}

// dir/name, atomically and durably: a reader (or the next start) sees the old file or the new
// one, never a part, and once this returns OK the new one survives a power loss.
absl::Status WriteFileAtomic(const std::string& dir, const std::string& name, std::string_view data,
                             const std::string& what) {
  const std::string path = dir + "/" + name;
  const std::string tmp = path + kTempFileSuffix;
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return WriteError(what, tmp, errno);
  int err = 0;
  for (size_t done = 0; done < data.size() && err == 0;) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      err = errno;
    }
  }
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    unlink(tmp.c_str());
    return WriteError(what, tmp, err);
  }
  return FsyncDir(dir, what);
}

}  // namespace musc
