#include "server/store/recovery.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/batch/scheduler.h"
#include "server/batch/session.h"
#include "server/batch/session_manager.h"
#include "server/images/image_decoder.h"
#include "server/log.h"

namespace musc {
namespace {

// One session as it comes back after the restart, or why it cannot.
absl::StatusOr<std::shared_ptr<Session>> RecoverSession(Spool& spool, const std::string& id,
                                                        const SessionManager& manager,
                                                        ServerMetrics* metrics) {
  MUSC_ASSIGN_OR_RETURN(SessionRecord record, spool.ReadRecord(id));
  const ProductConfig* product = manager.FindProduct(record.product);
  if (product == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("product '", record.product, "' is not in the products file any more"));
  }
  MUSC_ASSIGN_OR_RETURN(const uint32_t image_count, spool.CountImages(id));
  // Images are only added while OPEN, and the record is rewritten on sealing: any later state
  // names exactly the images on disk.
  if (record.state != v1::OPEN && record.image_count != image_count) {
    return absl::DataLossError(absl::StrCat("session.json names ", record.image_count,
                                            " images, the spool holds ", image_count));
  }

  std::vector<SessionResult> results;
  if (record.state == v1::DONE) {
    absl::StatusOr<std::vector<SessionResult>> stored = spool.ReadResults(id, image_count);
    if (stored.ok()) {
      results = *std::move(stored);
    } else {
      // The record says DONE only after results.bin was written, so this is damage: the images
      // are there, so score the batch again rather than lose it.
      LogWarning(absl::StrCat("spool: session ", id, ": ", stored.status().message(),
                              "; scoring it again"));
      record.state = v1::SEALED;
    }
  }
  if (record.state == v1::RUNNING) record.state = v1::SEALED;  // Its scoring died with the process.
  // What the restart undoes: an OPEN session has no seal time, a SEALED one has not started, and
  // only a DONE one has timings.
  if (record.state == v1::OPEN) record.seal_time = {};
  if (record.state == v1::SEALED) record.start_time = {};
  if (record.state != v1::DONE) record.timings.Clear();
  const bool needs_pixels = record.state == v1::OPEN || record.state == v1::SEALED;

  std::vector<SessionImage> images;
  images.reserve(image_count);
  for (uint32_t index = 0; index < image_count; ++index) {
    MUSC_ASSIGN_OR_RETURN(SessionImage image, spool.ReadImage(id, index));
    if (needs_pixels) {
      absl::StatusOr<DecodedImage> decoded = DecodeImage(image.encoded, spool.decode_limits());
      if (!decoded.ok()) {
        return absl::DataLossError(
            absl::StrCat(spool.ImagePath(id, index), ": ", decoded.status().message()));
      }
      image.pixels = std::move(decoded->pixels);
    }
    // As for an image just accepted: stored, so the pixels are all the session keeps.
    std::string().swap(image.encoded);
    images.push_back(std::move(image));
  }
  return Session::Restore(record, product, std::move(images), std::move(results), &spool, metrics);
}

}  // namespace

absl::Status RecoverSessions(Spool& spool, SessionManager& manager, Scheduler& scheduler,
                             ServerMetrics* metrics) {
  const auto start = std::chrono::steady_clock::now();
  MUSC_ASSIGN_OR_RETURN(const std::vector<std::string> ids, spool.CleanAndListSessions());
  std::vector<std::shared_ptr<Session>> sessions;
  for (const std::string& id : ids) {
    absl::StatusOr<std::shared_ptr<Session>> session = RecoverSession(spool, id, manager, metrics);
    if (!session.ok()) {
      LogError(absl::StrCat("spool: skipping ", spool.SessionDir(id), ": ",
                            session.status().message(), " (left on disk for inspection)"));
      continue;
    }
    sessions.push_back(*std::move(session));
  }
  // The queue's order before the restart: by seal time.
  std::stable_sort(sessions.begin(), sessions.end(),
                   [](const auto& a, const auto& b) { return a->seal_time() < b->seal_time(); });
  std::map<v1::SessionState, int> counts;
  for (const std::shared_ptr<Session>& session : sessions) {
    const v1::SessionState state = session->state();
    ++counts[state];
    if (metrics != nullptr) metrics->SessionRecovered(state);
    manager.Adopt(session);
    if (state == v1::SEALED) {
      if (absl::Status s = scheduler.Enqueue(session, /*recovered=*/true); !s.ok()) {
        session->Fail(absl::StrCat("could not queue the batch after a restart: ", s.message()));
      }
    } else if (const uint32_t at_count = session->ToProto().seal_policy().at_count();
               state == v1::OPEN && at_count > 0 && session->image_count() >= at_count) {
      // The crash fell between the image that reached the auto-seal count and its seal.
      manager.Seal(session).IgnoreError();
    }
  }
  std::string summary;
  for (const auto& [state, n] : counts) {
    absl::StrAppend(&summary, summary.empty() ? "" : ", ", n, " ", v1::SessionState_Name(state));
  }
  LogInfo(absl::StrCat(
      "spool ", spool.dir(), ": recovered ", sessions.size(), " session(s)",
      summary.empty() ? "" : absl::StrCat(" (", summary, ")"), " in ",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), " s"));
  return absl::OkStatus();
}

}  // namespace musc
