#include "server/rpc/result_events.h"

#include <utility>

#include "base/status_macros.h"

namespace musc {

absl::Status NextResultEvent(Session& session, const v1::MapOptions& options, ResultCursor& cursor,
                             std::optional<v1::ResultEvent>* event, bool* is_final) {
  *is_final = false;
  event->reset();
  const Session::Snapshot snap = session.snapshot();
  if (cursor.next_result < snap.result_count) {
    v1::ResultEvent e;
    MUSC_RETURN_IF_ERROR(session.BuildResult(cursor.next_result, options, e.mutable_result()));
    ++cursor.next_result;
    *event = std::move(e);
    return absl::OkStatus();
  }
  if (snap.state == v1::DONE || snap.state == v1::FAILED || snap.state == v1::CANCELLED) {
    v1::ResultEvent e;
    *e.mutable_finished()->mutable_session() = session.ToProto();
    *event = std::move(e);
    *is_final = true;
    return absl::OkStatus();
  }
  if (snap.state == v1::RUNNING && snap.progress_version != cursor.progress_version_sent) {
    cursor.progress_version_sent = snap.progress_version;
    v1::ResultEvent e;
    e.mutable_progress()->set_stage(snap.stage);
    e.mutable_progress()->set_done(snap.progress_done);
    e.mutable_progress()->set_total(snap.progress_total);
    *event = std::move(e);
  }
  return absl::OkStatus();
}

}  // namespace musc
