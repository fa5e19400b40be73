// Start-up recovery (docs/RELIABILITY.md, "Recovery at start"): the spool's sessions back into
// the session manager and the scheduler, before the server reports SERVING. The only part of the
// store that knows sessions, their manager and the scheduler: the spool itself stores values.
#ifndef MUSC_SERVER_STORE_RECOVERY_H_
#define MUSC_SERVER_STORE_RECOVERY_H_

#include "absl/status/status.h"
#include "server/server_metrics.h"
#include "server/store/spool.h"

namespace musc {

class Scheduler;
class SessionManager;

// Reads every session of `spool` back and hands it to `manager`. Debris of interrupted writes is
// deleted first (Spool::CleanAndListSessions); a session that cannot be read (damaged file,
// missing image, unknown product) is skipped and logged, and left on disk. By recorded state:
// OPEN comes back OPEN with its images decoded (its idle timer restarts now) and is sealed if it
// had already reached its auto-seal count; SEALED and RUNNING come back SEALED and are re-queued
// on `scheduler` in their seal order, past the queue's capacity (they were admitted before the
// restart); DONE comes back with its results (SEALED, to be scored again, when they cannot be
// read); FAILED and CANCELLED as they were. The sessions report to `metrics` (may be null; must
// outlive them). Logs a summary. Fails only when the spool cannot be listed.
absl::Status RecoverSessions(Spool& spool, SessionManager& manager, Scheduler& scheduler,
                             ServerMetrics* metrics);

}  // namespace musc

#endif  // MUSC_SERVER_STORE_RECOVERY_H_
