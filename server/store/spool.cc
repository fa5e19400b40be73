#include "server/store/spool.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "server/log.h"
#include "server/store/durable_file.h"
#include "server/store/spool_codec.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

constexpr char kSessionsDir[] = "sessions";
constexpr char kRecordName[] = "session.json";
constexpr char kResultsName[] = "results.bin";
constexpr char kImagesDir[] = "images";
constexpr char kImageSuffix[] = ".img";

bool IsTemp(const fs::path& p) { return absl::EndsWith(p.filename().string(), kTempFileSuffix); }

// The entries of `dir`, sorted; empty when it cannot be listed (*ec says why). Iterates with
// error codes: the throwing forms would escape as exceptions.
std::vector<fs::path> ListDir(const fs::path& dir, std::error_code* ec) {
  std::vector<fs::path> out;
  fs::directory_iterator it(dir, *ec);
  for (; !*ec && it != fs::directory_iterator(); it.increment(*ec)) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const std::string& dir, DecodeLimits limits,
                                                   ServerMetrics* metrics) {
  std::error_code ec;
  fs::create_directories(fs::path(dir) / kSessionsDir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("--spool_dir: cannot create ", dir, "/sessions: ", ec.message()));
  }
  auto spool = std::unique_ptr<Spool>(new Spool(dir, limits, metrics));
  // A spool that cannot be written is a configuration error: say so now, not at the first image.
  // A full disk is not (it may clear): start, refuse images with RESOURCE_EXHAUSTED meanwhile.
  absl::Status probe = WriteFileAtomic(dir, ".probe", "ok\n", "write to the spool");
  unlink((dir + "/.probe").c_str());
  if (probe.code() == absl::StatusCode::kResourceExhausted) {
    LogWarning(absl::StrCat("--spool_dir: ", probe.message()));
  } else if (!probe.ok()) {
    return absl::UnavailableError(absl::StrCat("--spool_dir: ", probe.message()));
  }
  return spool;
}

std::string Spool::SessionDir(const std::string& session_id) const {
  return absl::StrCat(dir_, "/", kSessionsDir, "/", session_id);
}

std::string Spool::ImagePath(const std::string& session_id, uint32_t index) const {
  return absl::StrCat(SessionDir(session_id), "/", kImagesDir, "/", index, kImageSuffix);
}

absl::Status Spool::Counted(absl::Status status) const {
  if (!status.ok()) {
    LogWarning(status.ToString());
    if (metrics_ != nullptr) {
      metrics_->SpoolWriteFailed(
          status.code() == absl::StatusCode::kResourceExhausted ? "disk_full" : "unwritable");
    }
  }
  return status;
}

absl::Status Spool::CreateSession(const SessionRecord& record) {
  const std::string dir = SessionDir(record.id);
  const std::string what = absl::StrCat("create session ", record.id);
  absl::Status status;
  for (const std::string& d : {dir, absl::StrCat(dir, "/", kImagesDir)}) {
    if (status.ok() && mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
      status = Counted(WriteError(what, d, errno));
    }
  }
  if (status.ok()) status = Counted(FsyncDir(dir, what));
  if (status.ok()) status = UpdateState(record);
  // The new directory's own entry: without it a power loss could drop the whole session.
  if (status.ok()) status = Counted(FsyncDir(absl::StrCat(dir_, "/", kSessionsDir), what));
  if (!status.ok()) {
    // The session was refused: drop what was made of it (a start would remove it too).
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  return status;
}

absl::Status Spool::AppendImage(const std::string& session_id, const SessionImage& image) {
  return Counted(WriteFileAtomic(absl::StrCat(SessionDir(session_id), "/", kImagesDir),
                                 absl::StrCat(image.index, kImageSuffix), EncodeImageFile(image),
                                 absl::StrCat("store image '", image.client_id, "' of session ",
                                              session_id, "; it was not accepted")));
}

absl::Status Spool::UpdateState(const SessionRecord& record) {
  return Counted(WriteFileAtomic(SessionDir(record.id), kRecordName, EncodeSessionRecord(record),
                                 absl::StrCat("record the state of session ", record.id)));
}

absl::Status Spool::WriteResults(const std::string& session_id,
                                 const std::vector<SessionResult>& results) {
  return Counted(WriteFileAtomic(SessionDir(session_id), kResultsName, EncodeResultsFile(results),
                                 absl::StrCat("store the results of session ", session_id)));
}

absl::Status Spool::Remove(const std::string& session_id) {
  const std::string dir = SessionDir(session_id);
  const std::string record = absl::StrCat(dir, "/", kRecordName);
  if (unlink(record.c_str()) != 0 && errno != ENOENT) {
    return WriteError(absl::StrCat("remove session ", session_id), record, errno);
  }
  MUSC_RETURN_IF_ERROR(FsyncDir(dir, absl::StrCat("remove session ", session_id)));
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot remove ", dir, ": ", ec.message(), " (removed at the next start)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Spool::CleanAndListSessions() {
  std::vector<std::string> ids;
  std::error_code ec;
  const std::vector<fs::path> dirs = ListDir(fs::path(dir_) / kSessionsDir, &ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot list ", dir_, "/sessions: ", ec.message()));
  }
  for (const fs::path& dir : dirs) {
    if (!fs::is_directory(dir, ec)) continue;
    // Leftovers of writes a crash interrupted: never acknowledged, so never needed.
    for (const fs::path& sub : {dir, dir / kImagesDir}) {
      for (const fs::path& p : ListDir(sub, &ec)) {
        if (IsTemp(p)) fs::remove(p, ec);
      }
    }
    if (!fs::exists(dir / kRecordName, ec)) {
      // A crash during CreateSession (never acknowledged) or during Remove (retention ended).
      LogInfo(absl::StrCat("spool: removing ", dir.string(), " (no session record)"));
      fs::remove_all(dir, ec);
      continue;
    }
    ids.push_back(dir.filename().string());
  }
  return ids;
}

absl::StatusOr<SessionRecord> Spool::ReadRecord(const std::string& session_id) const {
  MUSC_ASSIGN_OR_RETURN(const std::string text,
                        ReadFileToString(absl::StrCat(SessionDir(session_id), "/", kRecordName)));
  MUSC_ASSIGN_OR_RETURN(SessionRecord record, DecodeSessionRecord(text));
  if (record.id != session_id) {
    return absl::DataLossError(
        absl::StrCat("session.json names another session (", record.id, ")"));
  }
  return record;
}

absl::StatusOr<uint32_t> Spool::CountImages(const std::string& session_id) const {
  // The images: <index>.img for 0..n-1, each written whole before it was acknowledged.
  std::set<uint32_t> indexes;
  std::error_code ec;
  for (const fs::path& p : ListDir(fs::path(SessionDir(session_id)) / kImagesDir, &ec)) {
    const std::string name = p.filename().string();
    uint32_t index;
    if (!absl::EndsWith(name, kImageSuffix) ||
        !absl::SimpleAtoi(name.substr(0, name.size() - std::strlen(kImageSuffix)), &index)) {
      continue;
    }
    indexes.insert(index);
  }
  if (ec) return absl::DataLossError(absl::StrCat("cannot list its images: ", ec.message()));
  if (!indexes.empty() && *indexes.rbegin() != indexes.size() - 1) {
    return absl::DataLossError("its image files are not numbered 0..n-1");
  }
  return static_cast<uint32_t>(indexes.size());
}

absl::StatusOr<SessionImage> Spool::ReadImage(const std::string& session_id, uint32_t index) const {
  const std::string path = ImagePath(session_id, index);
  MUSC_ASSIGN_OR_RETURN(const std::string data, ReadFileToString(path));
  absl::StatusOr<SessionImage> image = DecodeImageFile(data);
  if (!image.ok() || image->index != index) {
    return absl::DataLossError(absl::StrCat(path, " is damaged"));
  }
  return image;
}

absl::StatusOr<std::vector<SessionResult>> Spool::ReadResults(const std::string& session_id,
                                                              size_t image_count) const {
  MUSC_ASSIGN_OR_RETURN(const std::string data,
                        ReadFileToString(absl::StrCat(SessionDir(session_id), "/", kResultsName)));
  return DecodeResultsFile(data, image_count);
}

}  // namespace musc
