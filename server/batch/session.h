// One batch session: its images, state machine, results and the streams watching it.
// Thread-safe; every method may be called from any thread.
#ifndef MUSC_SERVER_BATCH_SESSION_H_
#define MUSC_SERVER_BATCH_SESSION_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <opencv2/core.hpp>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "musc/v1/musc_service.pb.h"
#include "server/product_config.h"
#include "server/server_metrics.h"

namespace musc {

using Clock = std::chrono::system_clock;

class Spool;

struct SessionImage {
  std::string client_id;
  uint32_t index = 0;
  cv::Mat pixels;  // Decoded RGB or grey, 8/16-bit; released once the session is final.
  int width = 0;   // Original size, kept after the pixels are released.
  int height = 0;
  std::map<std::string, std::string> metadata;
  int64_t encoded_bytes = 0;
  double decode_seconds = 0;
  std::string encoded;  // The bytes as received, until the spool has stored them.
};

// The scores of one image, kept raw so each stream can encode maps the way it asks for.
struct SessionResult {
  uint32_t index = 0;
  float raw_score = 0;
  float final_score = 0;
  cv::Mat map;        // CV_32FC1, S×S (empty when maps were not kept).
  Decision decision;  // From the product's decision policy (decided=false when it has none).
};

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
  // Every later change is written to `spool` before it is acknowledged; null: no persistence.
  // Set before the session is shared; the spool must outlive the session.
  void AttachSpool(Spool* spool) { spool_ = spool; }

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
  // `persist` false: FAILED in memory only, the spool keeps the session SEALED (a shutdown that
  // abandons a queued batch: the next start on the same spool scores it).
  void Fail(const std::string& error, bool persist = true);
  bool persistent() const { return spool_ != nullptr; }
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
  // Builds the ImageResult for results()[k] with the given map options, for a stream about to
  // send it (the first time each result is served feeds the seal-to-result latency metrics).
  absl::Status BuildResult(size_t k, const v1::MapOptions& options, v1::ImageResult* out);

  void AddWatcher(std::weak_ptr<SessionWatcher> watcher);

 private:
  friend class Spool;  // Writes the session's state and reads recovered sessions back.

  // Writes the record after a state change (mu_ held); OK without a spool.
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
  Spool* spool_ = nullptr;

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
