// All sessions of the server: creation, lookup, sealing into the scheduler, and the janitor that
// applies idle auto-seal, idle expiry of abandoned sessions and retention of finished ones.
#ifndef MUSC_SERVER_BATCH_SESSION_MANAGER_H_
#define MUSC_SERVER_BATCH_SESSION_MANAGER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/batch/scheduler.h"
#include "server/batch/session.h"
#include "server/server_metrics.h"
#include "server/store/session_store.h"

namespace musc {

struct SessionManagerOptions {
  std::chrono::milliseconds idle_ttl{std::chrono::minutes(10)};  // OPEN without activity.
  std::chrono::milliseconds retention{std::chrono::hours(1)};    // Finished results kept.
  std::chrono::milliseconds sweep_interval{250};
  int64_t max_session_bytes = int64_t{4} << 30;
  size_t max_sessions = 10000;  // Sessions held at once, in any state.
  // Non-final (OPEN, SEALED, RUNNING) sessions one product may have at once, so one product's
  // clients cannot take every session slot from the others. 0 = no limit.
  size_t max_sessions_per_product = 1000;
  // Sessions are persisted here (the spool of --spool_dir); null: in memory only. Must outlive
  // the manager.
  SessionStore* spool = nullptr;
};

class SessionManager {
 public:
  // `metrics` may be null; otherwise it must outlive the manager and its sessions.
  SessionManager(std::vector<ProductConfig> products, Scheduler* scheduler,
                 SessionManagerOptions options, ServerMetrics* metrics = nullptr);
  ~SessionManager();

  const std::vector<ProductConfig>& products() const { return products_; }
  const ProductConfig* FindProduct(const std::string& name) const;

  // NOT_FOUND for an unknown product; UNAVAILABLE when shutting down; RESOURCE_EXHAUSTED when
  // max_sessions are held or the product has max_sessions_per_product unfinished ones.
  absl::StatusOr<std::shared_ptr<Session>> Create(const std::string& product,
                                                  std::optional<SealPolicyConfig> seal_policy,
                                                  std::map<std::string, std::string> labels);
  absl::StatusOr<std::shared_ptr<Session>> Get(const std::string& id) const;
  // Takes a session recovered from the spool (at start, before serving).
  void Adopt(std::shared_ptr<Session> session);
  std::vector<std::shared_ptr<Session>> List(const std::string& product,
                                             const std::vector<v1::SessionState>& states) const;

  // Adds a decoded image, sealing the session if that reached its auto-seal count.
  absl::StatusOr<uint32_t> AddImage(Session& session, SessionImage image);
  // Seals and queues for scoring; the session stays OPEN if the queue refuses it.
  absl::Status Seal(const std::shared_ptr<Session>& session);

  // Sessions held now, by (product, state): the musc_sessions gauge.
  std::map<std::pair<std::string, v1::SessionState>, int> CountByState() const;
  ServerMetrics* metrics() const { return metrics_; }

  // Refuse new sessions and images from now on (shutdown).
  void StopAccepting();
  bool accepting() const { return accepting_.load(); }

  // One janitor pass at `now` (the janitor thread calls it periodically; tests call it directly).
  void Sweep(Clock::time_point now);

 private:
  void JanitorLoop();

  const std::vector<ProductConfig> products_;
  Scheduler* const scheduler_;
  const SessionManagerOptions options_;
  ServerMetrics* const metrics_;
  std::atomic<bool> accepting_{true};

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;

  std::mutex janitor_mu_;
  std::condition_variable janitor_wake_;
  bool janitor_stop_ = false;
  std::thread janitor_;
};

}  // namespace musc

#endif  // MUSC_SERVER_BATCH_SESSION_MANAGER_H_
