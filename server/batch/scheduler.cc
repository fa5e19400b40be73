#include "server/batch/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/images/image_decoder.h"
#include "server/thread_priority.h"

namespace musc {
namespace {

constexpr size_t kImagesPerProgressStep = 8;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

Scheduler::Scheduler(const EnginePool* engines, SchedulerOptions options, ServerMetrics* metrics)
    : engines_(engines), options_(options), metrics_(metrics) {
  for (int w = 0; w < std::max(1, options_.workers); ++w) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

Scheduler::~Scheduler() { Drain(std::chrono::milliseconds(0)); }

absl::Status Scheduler::Enqueue(std::shared_ptr<Session> session, bool recovered) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_)
      return absl::UnavailableError("server is shutting down; not scoring new batches");
    if (queue_.size() >= options_.queue_capacity && !recovered) {
      return absl::ResourceExhaustedError(absl::StrCat("scoring queue is full (", queue_.size(),
                                                       " batches waiting); retry the seal later"));
    }
    queue_.push_back(std::move(session));
  }
  work_ready_.notify_one();
  return absl::OkStatus();
}

size_t Scheduler::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

int Scheduler::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

int Scheduler::Drain(std::chrono::milliseconds grace) {
  std::deque<std::shared_ptr<Session>> abandoned;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopped_) return 0;
    draining_ = true;
    idle_.wait_for(lock, grace, [this] { return queue_.empty() && running_ == 0; });
    abandoned.swap(queue_);
    stopped_ = true;
  }
  work_ready_.notify_all();
  for (auto& session : abandoned) {
    if (session->persistent()) {
      session->Fail(
          "server shut down before this batch was scored; it is scored when the server "
          "restarts on the same --spool_dir",
          /*persist=*/false);
    } else {
      session->Fail("server shut down before this batch was scored; submit it again");
    }
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  return static_cast<int>(abandoned.size());
}

void Scheduler::WorkerLoop() {
  SetCurrentThreadNice(kScoringNice);
  for (;;) {
    std::shared_ptr<Session> session;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_ready_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
      if (queue_.empty()) return;  // Stopped.
      session = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    Run(*session);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --running_;
    }
    idle_.notify_all();
  }
}

void Scheduler::Run(Session& session) {
  if (!session.MarkRunning()) return;  // Cancelled while queued.
  const Clock::time_point start = Clock::now();
  const ProductConfig& product = session.product();
  MuscEngine* engine = engines_->ForProduct(product.name);
  if (engine == nullptr) {
    session.Fail(absl::StrCat("no engine loaded for product '", product.name, "'"));
    return;
  }
  absl::StatusOr<std::unique_ptr<ScoringBatch>> batch = engine->NewBatch(product.scoring);
  if (!batch.ok()) {
    session.Fail(std::string(batch.status().message()));
    return;
  }
  const std::vector<SessionImage>& images = session.images_for_scoring();
  const size_t n = images.size();
  v1::StageTimings timings;
  timings.set_queue_seconds(SecondsBetween(session.seal_time(), start));
  for (const SessionImage& image : images) {
    timings.set_decode_seconds(timings.decode_seconds() + image.decode_seconds);
  }
  for (size_t begin = 0; begin < n; begin += kImagesPerProgressStep) {
    const size_t end = std::min(n, begin + kImagesPerProgressStep);
    std::vector<ImageView> views;
    for (size_t k = begin; k < end; ++k) views.push_back(ViewOf(images[k].pixels));
    if (absl::Status s = (*batch)->Add(views); !s.ok()) {
      session.Fail(absl::StrCat("feature extraction failed: ", s.message()));
      return;
    }
    session.SetProgress("backbone", static_cast<uint32_t>(end), static_cast<uint32_t>(n));
    if (session.cancelled()) {
      session.Complete({}, timings, false);  // Releases the pixels; the state stays CANCELLED.
      return;
    }
  }
  session.SetProgress("scoring", static_cast<uint32_t>(n), static_cast<uint32_t>(n));
  absl::StatusOr<BatchScores> scores = (*batch)->Score();
  if (!scores.ok()) {
    session.Fail(absl::StrCat("scoring failed: ", scores.status().message()));
    return;
  }
  const StageTimings& t = scores->timings;
  timings.set_preprocess_seconds(t.preprocess_s);
  timings.set_backbone_seconds(t.backbone_s);
  timings.set_lnamd_seconds(t.lnamd_s);
  timings.set_msm_seconds(t.msm_s);
  timings.set_maps_seconds(t.maps_s);
  timings.set_rscin_seconds(t.rscin_s);
  if (metrics_ != nullptr) metrics_->BatchScored(product.name, n, timings);

  std::vector<SessionResult> results(n);
  const int s = static_cast<int>(scores->map_size);
  for (size_t i = 0; i < n; ++i) {
    results[i].index = static_cast<uint32_t>(i);
    results[i].raw_score = scores->raw_scores[i];
    results[i].final_score = scores->final_scores[i];
    if (!scores->maps.empty()) {
      results[i].map =
          cv::Mat(s, s, CV_32FC1, scores->maps.data() + i * static_cast<size_t>(s) * s).clone();
    }
  }
  // Label-free decisions: the batch is its own reference (docs/LINE_MODE.md).
  std::vector<absl::Span<const float>> maps;
  if (!scores->maps.empty() && product.decision.mask.kind != ThresholdKind::kNone) {
    const size_t pixels = static_cast<size_t>(s) * s;
    for (size_t i = 0; i < n; ++i) maps.emplace_back(scores->maps.data() + i * pixels, pixels);
  }
  const std::vector<Decision> decisions = DecideBatch(product.decision, scores->raw_scores, maps);
  for (size_t i = 0; i < n; ++i) results[i].decision = decisions[i];
  session.Complete(std::move(results), timings, scores->small_batch);
}

}  // namespace musc
