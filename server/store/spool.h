// The spool: durable storage of sessions, so that a crash or restart of musc-server loses no
// acknowledged image and no finished result (docs/RELIABILITY.md).
//
// Layout under the spool directory, every file written as temp → fsync(file) → rename →
// fsync(directory), so each file is either absent or complete:
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
// Thread-safe for different sessions; calls for one session are serialised by its caller (the
// Session's mutex), which keeps the order on disk the order in memory.
#ifndef MUSC_SERVER_STORE_SPOOL_H_
#define MUSC_SERVER_STORE_SPOOL_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/batch/session.h"
#include "server/images/image_decoder.h"
#include "server/product_config.h"
#include "server/server_metrics.h"

namespace musc {

class Scheduler;
class SessionManager;

class Spool {
 public:
  // Creates `dir` (and dir/sessions) if needed and checks that it is writable. `metrics` may be
  // null; otherwise it must outlive the spool. `limits` decode recovered images.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& dir, DecodeLimits limits,
                                                     ServerMetrics* metrics = nullptr);

  const std::string& dir() const { return dir_; }

  // The calls below take a Session whose mutex the caller holds (Session calls them from inside
  // its own methods) — except CreateSession (the session is not shared yet), WriteResults (its
  // arguments are the caller's) and Remove.
  //
  // Errors: RESOURCE_EXHAUSTED when the disk (or a file size limit) is full, UNAVAILABLE when the
  // spool cannot be written otherwise (read-only, permissions, I/O error); the message names the
  // path and the reason. Nothing is left half-written.

  // The session's directory and its first record (state OPEN).
  absl::Status CreateSession(const Session& session);
  // One accepted image (`image.encoded` holds its bytes; index, width and height are set).
  absl::Status AppendImage(const Session& session, const SessionImage& image);
  // The session record as it is now (state, error, timestamps, timings).
  absl::Status UpdateState(const Session& session);
  // The results of a finished batch; UpdateState with DONE follows.
  absl::Status WriteResults(const std::string& session_id,
                            const std::vector<SessionResult>& results);
  // Deletes the session's files (retention ended). Its record goes first, so a crash midway
  // leaves a directory without a record, which the next start removes.
  absl::Status Remove(const std::string& session_id);

  // Reads every session back (at start, before serving). Temp files left by a crash and
  // directories without a record (a crash during create or remove) are deleted; a session that
  // cannot be read (damaged file, unknown product) is skipped and logged, and left on disk.
  // OPEN sessions come back OPEN with their images decoded (their idle timer restarts), SEALED and
  // RUNNING ones come back SEALED with their images, DONE ones with their results (a DONE record
  // without results comes back SEALED, to be scored again), FAILED and CANCELLED as they were.
  absl::StatusOr<std::vector<std::shared_ptr<Session>>> LoadAll(
      const std::function<const ProductConfig*(const std::string&)>& find_product);

 private:
  Spool(std::string dir, DecodeLimits limits, ServerMetrics* metrics)
      : dir_(std::move(dir)), limits_(limits), metrics_(metrics) {}
  std::string SessionDir(const std::string& id) const;
  absl::StatusOr<std::shared_ptr<Session>> LoadSession(
      const std::string& session_dir,
      const std::function<const ProductConfig*(const std::string&)>& find_product);
  // Counts a failed write in the metrics and passes the status on.
  absl::Status Counted(absl::Status status) const;

  const std::string dir_;
  const DecodeLimits limits_;
  ServerMetrics* const metrics_;
};

// Start-up: loads the spool's sessions into `manager`, re-queues the sealed ones on `scheduler`
// (in their seal order, past the queue's capacity: they were admitted before the restart) and
// seals OPEN sessions that had already reached their auto-seal count. Logs a summary.
absl::Status RecoverSessions(Spool& spool, SessionManager& manager, Scheduler& scheduler,
                             ServerMetrics* metrics);

}  // namespace musc

#endif  // MUSC_SERVER_STORE_SPOOL_H_
