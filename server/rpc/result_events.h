// The events of a results stream (StreamResults, and Inspect once sealed): one per result, in
// order, progress while the session runs, and SessionFinished to close.
#ifndef MUSC_SERVER_RPC_RESULT_EVENTS_H_
#define MUSC_SERVER_RPC_RESULT_EVENTS_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "musc/v1/musc_service.pb.h"
#include "server/batch/session.h"

namespace musc {

// Where a results stream is: everything before `next_result` was sent.
struct ResultCursor {
  size_t next_result = 0;
  uint64_t progress_version_sent = 0;
};

// The next event a results stream should send, if any is ready (none: wait for the session to
// change). *is_final is set for the closing SessionFinished event.
absl::Status NextResultEvent(Session& session, const v1::MapOptions& options, ResultCursor& cursor,
                             std::optional<v1::ResultEvent>* event, bool* is_final);

}  // namespace musc

#endif  // MUSC_SERVER_RPC_RESULT_EVENTS_H_
