// One batch session: its images, state machine, results and the streams watching it.
// Thread-safe; every method may be called from any thread.
//
// States: OPEN → SEALED → RUNNING → DONE | FAILED | CANCELLED (SEALED may go back to OPEN when the
// queue refuses it; OPEN, SEALED and RUNNING may be CANCELLED, SEALED and RUNNING may FAIL).
// With a store (StoreIn), every change is handed to it as values — an accepted image, or the
// session's record (server/store/session_record.h) built under the session's lock — before the
// change is acknowledged; the store never sees the Session itself.
#ifndef MUSC_SERVER_BATCH_SESSION_H_
#define MUSC_SERVER_BATCH_SESSION_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "musc/v1/musc_service.pb.h"
#include "server/product_config.h"
#include "server/server_metrics.h"
#include "server/store/session_record.h"
#include "server/store/session_store.h"

namespace musc {

// Receives a call whenever the session changed (new result, progress, state).
class SessionWatcher {
 public:
  virtual ~SessionWatcher() = default;
  virtual void OnSessionChanged() = 0;
};

class Session {
 public:
  // `metrics` may be null (no metrics); otherwise it must outlive the session.
  // `create_time` is set for a session recovered from the spool (default: now).
  Session(std::string id, const ProductConfig* product, SealPolicyConfig policy,
          std::map<std::string, std::string> labels, ServerMetrics* metrics = nullptr,
          Clock::time_point create_time = {});

  // A session read back from a store at start (server/store/recovery.cc applies the restart's
  // rules to `record` first): its state, error, timestamps, timings and flags as `record` says,
  // `images` (with pixels where it will be scored), `results` (DONE). Its idle timer restarts
  // now: the downtime was not the client's idleness. Later changes go to `store` (may be null),
  // which must outlive the session; `product` is record.product's configuration.
  static std::shared_ptr<Session> Restore(const SessionRecord& record, const ProductConfig* product,
                                          std::vector<SessionImage> images,
                                          std::vector<SessionResult> results, SessionStore* store,
                                          ServerMetrics* metrics = nullptr);

  // Creates the session in `store` (its first record, OPEN) and from then on hands every change
  // to it before the change is acknowledged. Call once, before the session is shared; the store
  // must outlive the session. On error the session stays without a store (its creation is
  // refused, so it is dropped).
  absl::Status StoreIn(SessionStore* store);

  const std::string& id() const { return id_; }
  const ProductConfig& product() const { return *product_; }

  // Adds a decoded image. FAILED_PRECONDITION unless OPEN, ALREADY_EXISTS for a repeated client
  // id, RESOURCE_EXHAUSTED past the product's max_images or the session byte limit. Returns the
  // index; *reached_seal_count is set when the auto-seal count was reached by this image.
  absl::StatusOr<uint32_t> AddImage(SessionImage image, int64_t max_session_bytes,
                                    bool* reached_seal_count);

  // OPEN → SEALED. FAILED_PRECONDITION if below the product's minimum (the message says it);
  // idempotent for a session already sealed, running or done.
  absl::Status Seal();
  // Back to OPEN after a seal the scheduler could not queue (queue full).
  void Unseal();
  absl::Status Cancel(const std::string& reason);

  // Scheduler side.
  bool MarkRunning();  // SEALED → RUNNING; false if cancelled meanwhile.
  void SetProgress(const std::string& stage, uint32_t done, uint32_t total);
  void Complete(std::vector<SessionResult> results, const v1::StageTimings& timings,
                bool small_batch);
  // `persist` false: FAILED in memory only, the store keeps the session SEALED (a shutdown that
  // abandons a queued batch: the next start on the same spool scores it).
  void Fail(const std::string& error, bool persist = true);
  bool persistent() const { return store_ != nullptr; }
  bool cancelled() const;
  // The images, for scoring (the session must be RUNNING: images no longer change).
  const std::vector<SessionImage>& images_for_scoring() const { return images_; }

  v1::SessionState state() const;
  size_t image_count() const;
  bool IsFinal() const;
  Clock::time_point last_activity() const;
  Clock::time_point finish_time() const;
  Clock::time_point seal_time() const;
  double idle_seal_seconds() const { return policy_.idle_seconds; }

  v1::Session ToProto() const;

  // Stream support: everything a results stream needs, read consistently under the lock.
  struct Snapshot {
    v1::SessionState state;
    size_t result_count;
    std::string stage;
    uint32_t progress_done, progress_total;
    uint64_t progress_version;
  };
  Snapshot snapshot() const;
  // Builds the ImageResult for results()[k] with the given map options (BuildImageResult,
  // server/results/result_builder.h), for a stream about to send it (the first time each result
  // is served feeds the seal-to-result latency metrics).
  absl::Status BuildResult(size_t k, const v1::MapOptions& options, v1::ImageResult* out);

  void AddWatcher(std::weak_ptr<SessionWatcher> watcher);

 private:
  // The record of the session as it is now (mu_ held).
  SessionRecord RecordLocked() const;
  // Hands the record to the store after a state change (mu_ held); OK without a store.
  absl::Status PersistLocked();
  void NotifyWatchers();
  void ReleasePixelsLocked();  // Final sessions keep scores, not images.
  void CountFinishedLocked();  // Once per session, on entering a final state.
  void NoteServedLocked(size_t k);

  const std::string id_;
  const ProductConfig* const product_;
  const SealPolicyConfig policy_;
  const std::map<std::string, std::string> labels_;
  const Clock::time_point create_time_;
  ServerMetrics* const metrics_;
  SessionStore* store_ = nullptr;  // Set before the session is shared; null: not persisted.

  mutable std::mutex mu_;
  v1::SessionState state_ = v1::OPEN;
  std::vector<SessionImage> images_;
  std::set<std::string> client_ids_;
  int64_t total_bytes_ = 0;
  std::vector<SessionResult> results_;
  std::string stage_;
  uint32_t progress_done_ = 0, progress_total_ = 0;
  uint64_t progress_version_ = 0;
  std::string error_;
  bool small_batch_ = false;
  v1::StageTimings timings_;
  Clock::time_point last_activity_, seal_time_, start_time_, finish_time_;
  std::vector<std::weak_ptr<SessionWatcher>> watchers_;
  std::vector<bool> served_;  // Results sent to at least one stream.
  size_t served_count_ = 0;
};

}  // namespace musc

#endif  // MUSC_SERVER_BATCH_SESSION_H_
