// The spool: durable storage of sessions, so that a crash or restart of musc-server loses no
// acknowledged image and no finished result (docs/RELIABILITY.md).
//
// Layout under the spool directory, every file written as temp → fsync(file) → rename →
// fsync(directory), so each file is either absent or complete (the formats: spool_codec.h):
//   sessions/<id>/session.json       the session record: product, seal policy, labels, state,
//                                    error, timestamps, timings (rewritten on each state change)
//   sessions/<id>/images/<index>.img one accepted image: client id, metadata, decoded size and the
//                                    encoded bytes as received, with a checksum (written once)
//   sessions/<id>/results.bin        scores, S×S maps and decisions (written once, before the
//                                    record says DONE)
// An image's file is its own record in the session (it names its session by its directory, its
// index by its name and its client id inside), so acknowledging an image costs one file and two
// fsyncs, not a rewrite of the session record.
//
// Writes: the SessionStore interface (its ordering and locking rules: session_store.h).
// Reads: what recovery (recovery.h) needs at start, before serving, one file at a time.
#ifndef MUSC_SERVER_STORE_SPOOL_H_
#define MUSC_SERVER_STORE_SPOOL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/images/image_decoder.h"
#include "server/server_metrics.h"
#include "server/store/session_record.h"
#include "server/store/session_store.h"

namespace musc {

class Spool final : public SessionStore {
 public:
  // Creates `dir` (and dir/sessions) if needed and checks that it is writable. `metrics` may be
  // null; otherwise it must outlive the spool. `limits` decode recovered images (recovery.h).
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& dir, DecodeLimits limits,
                                                     ServerMetrics* metrics = nullptr);

  const std::string& dir() const { return dir_; }
  const DecodeLimits& decode_limits() const { return limits_; }

  // SessionStore. Errors name the path and the reason, and are logged and counted in
  // musc_spool_write_failures_total.
  //
  // The session's directory, its images/ directory and its first record; on failure the
  // directory is removed again.
  absl::Status CreateSession(const SessionRecord& record) override;
  absl::Status AppendImage(const std::string& session_id, const SessionImage& image) override;
  absl::Status UpdateState(const SessionRecord& record) override;
  absl::Status WriteResults(const std::string& session_id,
                            const std::vector<SessionResult>& results) override;
  // The record goes first, so a crash midway leaves a directory without a record, which the
  // next start removes.
  absl::Status Remove(const std::string& session_id) override;

  // Reading back, at start (no writes may run meanwhile).
  //
  // Deletes what interrupted writes left — temp files (never acknowledged) and session
  // directories without a record (a crash during CreateSession or Remove) — and returns the ids
  // of the sessions left, sorted.
  absl::StatusOr<std::vector<std::string>> CleanAndListSessions();
  // Where a session's files are (for messages; the layout above).
  std::string SessionDir(const std::string& session_id) const;
  std::string ImagePath(const std::string& session_id, uint32_t index) const;
  // The record; DATA_LOSS when it is damaged or names another session.
  absl::StatusOr<SessionRecord> ReadRecord(const std::string& session_id) const;
  // How many image files the session has; DATA_LOSS unless they are numbered 0..n-1.
  absl::StatusOr<uint32_t> CountImages(const std::string& session_id) const;
  // Image `index` with its encoded bytes (no pixels); DATA_LOSS when its file is damaged.
  absl::StatusOr<SessionImage> ReadImage(const std::string& session_id, uint32_t index) const;
  // The results of a batch of `image_count` images; NOT_FOUND without a results file, DATA_LOSS
  // when it is damaged or does not match.
  absl::StatusOr<std::vector<SessionResult>> ReadResults(const std::string& session_id,
                                                         size_t image_count) const;

 private:
  Spool(std::string dir, DecodeLimits limits, ServerMetrics* metrics)
      : dir_(std::move(dir)), limits_(limits), metrics_(metrics) {}
  // Counts a failed write in the metrics and passes the status on.
  absl::Status Counted(absl::Status status) const;

  const std::string dir_;
  const DecodeLimits limits_;
  ServerMetrics* const metrics_;
};

}  // namespace musc

#endif  // MUSC_SERVER_STORE_SPOOL_H_
