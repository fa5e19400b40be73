// Where batch sessions are persisted: the interface a Session (server/batch/session.h) and the
// SessionManager hand their changes to, implemented by the spool (server/store/spool.h) and by
// the tests' recording fakes. It sees values only (server/store/session_record.h), never a
// Session.
//
// Ordering and locking (what keeps the order on disk the order in memory):
//   - Calls for one session are serialised by the caller. A Session calls AppendImage and
//     UpdateState with its own mutex held, so an image's index is taken and its file written
//     under one lock (files numbered 0..n-1 without gaps) and records follow its state changes
//     in order. CreateSession is called before the session is shared, WriteResults outside the
//     session's lock (maps can be large) but before the UpdateState that says DONE, and Remove
//     once the session has left the manager.
//   - Calls for different sessions may come from any threads at once: an implementation must
//     be thread-safe across sessions.
//   - A call returns only once its change is durable; the caller acknowledges the change to
//     its client only after an OK.
//
// Errors: RESOURCE_EXHAUSTED when the storage is full, UNAVAILABLE when it cannot be written
// otherwise; nothing is left half-written by a failed call.
#ifndef MUSC_SERVER_STORE_SESSION_STORE_H_
#define MUSC_SERVER_STORE_SESSION_STORE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/store/session_record.h"

namespace musc {

class SessionStore {
 public:
  virtual ~SessionStore() = default;

  // A new session and its first record (state OPEN). On error nothing of it is left.
  virtual absl::Status CreateSession(const SessionRecord& record) = 0;
  // One accepted image of session `session_id` (`image.encoded` holds its bytes; index, width
  // and height are set).
  virtual absl::Status AppendImage(const std::string& session_id, const SessionImage& image) = 0;
  // The session's record as it is now (state, error, timestamps, timings), replacing the last.
  virtual absl::Status UpdateState(const SessionRecord& record) = 0;
  // The results of a finished batch; UpdateState with DONE follows.
  virtual absl::Status WriteResults(const std::string& session_id,
                                    const std::vector<SessionResult>& results) = 0;
  // Deletes everything of the session (retention ended).
  virtual absl::Status Remove(const std::string& session_id) = 0;
};

}  // namespace musc

#endif  // MUSC_SERVER_STORE_SESSION_STORE_H_
