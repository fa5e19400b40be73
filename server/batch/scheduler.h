// Runs sealed sessions: a bounded FIFO queue and a fixed set of worker threads. Each batch is
// scored on its own (batches of different products never mix).
#ifndef MUSC_SERVER_BATCH_SCHEDULER_H_
#define MUSC_SERVER_BATCH_SCHEDULER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "server/batch/session.h"
#include "server/engine_pool.h"
#include "server/server_metrics.h"

namespace musc {

struct SchedulerOptions {
  int workers = 1;
  size_t queue_capacity = 16;
};

class Scheduler {
 public:
  // `metrics` may be null; otherwise it must outlive the scheduler.
  Scheduler(const EnginePool* engines, SchedulerOptions options, ServerMetrics* metrics = nullptr);
  ~Scheduler();  // Drain(0) if not done.

  // Queues a SEALED session. RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when
  // draining. `recovered`: a batch sealed before a restart, admitted then, so not refused now.
  absl::Status Enqueue(std::shared_ptr<Session> session, bool recovered = false);

  // Stops taking work and waits up to `grace` for queued and running batches to finish; what is
  // still queued afterwards is failed with a clear message. Returns the number of such batches.
  int Drain(std::chrono::milliseconds grace);

  size_t queued() const;
  size_t capacity() const { return options_.queue_capacity; }
  int running() const;

 private:
  void WorkerLoop();
  void Run(Session& session);

  const EnginePool* const engines_;
  const SchedulerOptions options_;
  ServerMetrics* const metrics_;
  mutable std::mutex mu_;
  std::condition_variable work_ready_;
  std::condition_variable idle_;
  std::deque<std::shared_ptr<Session>> queue_;
  int running_ = 0;
  bool draining_ = false;
  bool stopped_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace musc

#endif  // MUSC_SERVER_BATCH_SCHEDULER_H_
