// Scheduler in process, on the tiny random ViT: a sealed session is scored once, with the
// engine's own scores; the queue refuses beyond its capacity; cancelled sessions are not scored;
// Drain fails what it abandons. Where a test must know where the worker is, a WorkerGate holds
// the worker inside a session's change notification (sent from the worker's own thread) until the
// test opens it, so no step depends on timing.
#include "server/batch/scheduler.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/images/image_decoder.h"
#include "tests/server/in_process_fixture.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using testing::MessageHas;
using testing::WaitFinal;
using testing::WaitUntil;

constexpr std::chrono::seconds kSafetyTimeout{60};

std::string Products() {
  return absl::StrCat(R"(
products:
  - name: batch
    backbone: )",
                      testing::kTinyBackbone, R"(
    batch: {min_images: 2, max_images: 20}
    decision:
      image: {policy: robust, k: 3}
)");
}

// Stops the scheduler's worker in a notification of `session` once `when` holds (once), until
// Open(). Notifications sent from the test's own thread (seal, cancel) pass.
class WorkerGate : public SessionWatcher {
 public:
  WorkerGate(const Session* session, std::function<bool(const Session::Snapshot&)> when)
      : session_(session), when_(std::move(when)), test_thread_(std::this_thread::get_id()) {}

  void OnSessionChanged() override {
    if (std::this_thread::get_id() == test_thread_) return;
    std::unique_lock<std::mutex> lock(mu_);
    if (held_ || !when_(session_->snapshot())) return;
    held_ = true;
    changed_.notify_all();
    // Bounded so that a failing test cannot hang the binary.
    changed_.wait_for(lock, kSafetyTimeout, [this] { return open_; });
  }

  // Whether the worker reached the gate.
  bool WaitHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, kSafetyTimeout, [this] { return held_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  const Session* const session_;
  const std::function<bool(const Session::Snapshot&)> when_;
  const std::thread::id test_thread_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool held_ = false;
  bool open_ = false;
};

// Every change a session announces from the worker's thread, as seen at that moment.
class ChangeRecorder : public SessionWatcher {
 public:
  explicit ChangeRecorder(const Session* session)
      : session_(session), test_thread_(std::this_thread::get_id()) {}
  void OnSessionChanged() override {
    if (std::this_thread::get_id() == test_thread_) return;
    const Session::Snapshot snapshot = session_->snapshot();
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(snapshot);
  }
  std::vector<Session::Snapshot> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  const Session* const session_;
  const std::thread::id test_thread_;
  std::mutex mu_;
  std::vector<Session::Snapshot> seen_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    products_ = new std::vector<ProductConfig>(testing::ProductsFromYaml(Products()));
    absl::StatusOr<std::unique_ptr<EnginePool>> pool = EnginePool::Load(*products_, {});
    ASSERT_TRUE(pool.ok()) << pool.status();
    engines_ = pool->release();
  }
  static void TearDownTestSuite() {
    delete engines_;
    delete products_;
  }

  // Gates first: the scheduler's destructor waits for its worker, which a closed gate holds.
  void TearDown() override {
    for (const auto& gate : gates_) gate->Open();
    scheduler_.reset();
  }

  void StartScheduler(size_t queue_capacity) {
    SchedulerOptions options;
    options.workers = 1;
    options.queue_capacity = queue_capacity;
    scheduler_ = std::make_unique<Scheduler>(engines_, options, &metrics_);
  }

  // A SEALED session of `images` texture images (seeds first_seed, first_seed + 1, ...).
  std::shared_ptr<Session> SealedSession(const std::string& name, int images,
                                         uint64_t first_seed = 1) {
    auto session = std::make_shared<Session>(absl::StrCat("batch:", name), &products_->front(),
                                             SealPolicyConfig{},
                                             std::map<std::string, std::string>{}, &metrics_);
    for (int k = 0; k < images; ++k) {
      SessionImage image;
      image.client_id = absl::StrCat(name, "-", k);
      image.pixels = testing::DecodedTexture(first_seed + k);
      image.encoded_bytes = 1000;
      bool reached_seal_count = false;
      EXPECT_TRUE(session->AddImage(std::move(image), int64_t{1} << 30, &reached_seal_count).ok());
    }
    EXPECT_TRUE(session->Seal().ok());
    EXPECT_EQ(session->state(), v1::SEALED);
    return session;
  }

  std::shared_ptr<WorkerGate> GateOn(const std::shared_ptr<Session>& session,
                                     std::function<bool(const Session::Snapshot&)> when) {
    auto gate = std::make_shared<WorkerGate>(session.get(), std::move(when));
    session->AddWatcher(gate);
    gates_.push_back(gate);
    return gate;
  }
  static bool Running(const Session::Snapshot& s) { return s.state == v1::RUNNING; }

  bool Idle() const { return scheduler_->queued() == 0 && scheduler_->running() == 0; }
  // Batches the scheduler scored, by the musc_batch_images histogram's count.
  double BatchesScored() const {
    return testing::SampleValue(metrics_.SerializeText(),
                                R"(musc_batch_images_count{product="batch"})")
        .value_or(0);
  }

  static std::vector<ProductConfig>* products_;
  static EnginePool* engines_;
  ServerMetrics metrics_;
  std::vector<std::shared_ptr<WorkerGate>> gates_;
  std::unique_ptr<Scheduler> scheduler_;
};

std::vector<ProductConfig>* SchedulerTest::products_ = nullptr;
EnginePool* SchedulerTest::engines_ = nullptr;

TEST_F(SchedulerTest, ScoresASealedSessionOnceWithTheEnginesOwnScores) {
  StartScheduler(4);
  constexpr int kImages = 10;
  std::shared_ptr<Session> session = SealedSession("once", kImages);
  // The pixels the session holds are released once it is final; these views keep them alive.
  std::vector<cv::Mat> pixels;
  for (int k = 0; k < kImages; ++k) pixels.push_back(testing::DecodedTexture(1 + k));
  auto recorder = std::make_shared<ChangeRecorder>(session.get());
  session->AddWatcher(recorder);

  ASSERT_TRUE(scheduler_->Enqueue(session).ok());
  ASSERT_TRUE(WaitFinal(*session));
  ASSERT_EQ(session->state(), v1::DONE) << session->ToProto().error();
  ASSERT_TRUE(WaitUntil([&] { return Idle(); }));

  // The engine scoring the same images in one call: every score bit-equal.
  std::vector<ImageView> views;
  for (const cv::Mat& m : pixels) views.push_back(ViewOf(m));
  absl::StatusOr<BatchScores> expected = engines_->ForProduct("batch")->Score(views);
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_EQ(session->snapshot().result_count, static_cast<size_t>(kImages));
  for (int k = 0; k < kImages; ++k) {
    v1::ImageResult result;
    ASSERT_TRUE(session->BuildResult(k, v1::MapOptions{}, &result).ok());
    EXPECT_EQ(result.index(), static_cast<uint32_t>(k));
    EXPECT_EQ(result.client_image_id(), absl::StrCat("once-", k));
    EXPECT_EQ(result.raw_score(), expected->raw_scores[k]) << "image " << k;
    EXPECT_EQ(result.final_score(), expected->final_scores[k]) << "image " << k;
    EXPECT_TRUE(result.has_map()) << "image " << k;
    // The product's policy, estimated from the batch itself.
    EXPECT_EQ(result.decision().policy(), "robust");
    EXPECT_TRUE(result.decision().decided());
    EXPECT_EQ(result.decision().scores_used(), static_cast<uint32_t>(kImages));
  }
  EXPECT_EQ(session->ToProto().progress(), 1.0);
  EXPECT_EQ(BatchesScored(), 1);
  EXPECT_EQ(
      testing::SampleValue(metrics_.SerializeText(), R"(musc_batch_images_sum{product="batch"})"),
      kImages);

  // What the worker announced, in order: running, backbone progress to the whole batch,
  // scoring, done.
  const std::vector<Session::Snapshot> seen = recorder->seen();
  ASSERT_GE(seen.size(), 4u);
  EXPECT_EQ(seen.front().state, v1::RUNNING);
  EXPECT_EQ(seen.back().state, v1::DONE);
  std::vector<uint32_t> backbone_done;
  size_t scoring_steps = 0;
  for (const Session::Snapshot& s : seen) {
    if (s.stage == "backbone") {
      EXPECT_EQ(s.progress_total, static_cast<uint32_t>(kImages));
      EXPECT_EQ(scoring_steps, 0u) << "the backbone runs before scoring";
      backbone_done.push_back(s.progress_done);
    } else if (s.stage == "scoring") {
      ++scoring_steps;
    }
  }
  ASSERT_FALSE(backbone_done.empty());
  EXPECT_TRUE(std::is_sorted(backbone_done.begin(), backbone_done.end()));
  EXPECT_EQ(backbone_done.back(), static_cast<uint32_t>(kImages));
  EXPECT_EQ(scoring_steps, 1u);

  // Queued again, a DONE session is not scored again.
  ASSERT_TRUE(scheduler_->Enqueue(session).ok());
  ASSERT_TRUE(WaitUntil([&] { return Idle(); }));
  EXPECT_EQ(session->state(), v1::DONE);
  EXPECT_EQ(BatchesScored(), 1);
}

TEST_F(SchedulerTest, ProgressAndStateAreVisibleWhileScoring) {
  StartScheduler(4);
  std::shared_ptr<Session> session = SealedSession("progress", 10);
  auto at_start = GateOn(session, Running);
  ASSERT_TRUE(scheduler_->Enqueue(session).ok());
  ASSERT_TRUE(at_start->WaitHeld());
  v1::Session proto = session->ToProto();
  EXPECT_EQ(proto.state(), v1::RUNNING);
  EXPECT_EQ(proto.progress(), 0.0);
  EXPECT_GT(proto.start_time().seconds(), 0);
  EXPECT_EQ(scheduler_->running(), 1);
  EXPECT_EQ(scheduler_->queued(), 0u);

  auto mid_backbone = GateOn(session, [](const Session::Snapshot& s) {
    return s.stage == "backbone" && s.progress_done < s.progress_total;
  });
  at_start->Open();
  ASSERT_TRUE(mid_backbone->WaitHeld());
  proto = session->ToProto();
  EXPECT_EQ(proto.state(), v1::RUNNING);
  EXPECT_EQ(proto.stage(), "backbone");
  EXPECT_GT(proto.progress(), 0.0);
  EXPECT_LT(proto.progress(), 1.0);
  EXPECT_EQ(proto.result_count(), 0u);

  mid_backbone->Open();
  ASSERT_TRUE(WaitFinal(*session));
  proto = session->ToProto();
  EXPECT_EQ(proto.state(), v1::DONE) << proto.error();
  EXPECT_EQ(proto.progress(), 1.0);
  EXPECT_EQ(proto.result_count(), 10u);
  EXPECT_GT(proto.finish_time().seconds(), 0);
  EXPECT_TRUE(proto.has_timings());
}

TEST_F(SchedulerTest, RefusesWhenTheQueueIsFull) {
  StartScheduler(/*queue_capacity=*/1);
  std::shared_ptr<Session> running = SealedSession("running", 2);
  std::shared_ptr<Session> queued = SealedSession("queued", 2);
  std::shared_ptr<Session> refused = SealedSession("refused", 2);
  auto gate = GateOn(running, Running);
  ASSERT_TRUE(scheduler_->Enqueue(running).ok());
  ASSERT_TRUE(gate->WaitHeld());  // The worker holds `running`: the queue is empty again.

  EXPECT_EQ(scheduler_->capacity(), 1u);
  ASSERT_TRUE(scheduler_->Enqueue(queued).ok());
  EXPECT_EQ(scheduler_->queued(), 1u);
  absl::Status full = scheduler_->Enqueue(refused);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MessageHas(full, "queue is full"));
  EXPECT_EQ(scheduler_->queued(), 1u);
  EXPECT_EQ(refused->state(), v1::SEALED) << "a refused session is left as it was";
  EXPECT_EQ(queued->state(), v1::SEALED);

  gate->Open();
  ASSERT_TRUE(WaitUntil([&] { return Idle() && running->IsFinal() && queued->IsFinal(); }));
  EXPECT_EQ(running->state(), v1::DONE) << running->ToProto().error();
  EXPECT_EQ(queued->state(), v1::DONE) << queued->ToProto().error();
  EXPECT_EQ(refused->state(), v1::SEALED);
  EXPECT_EQ(BatchesScored(), 2);
  EXPECT_TRUE(scheduler_->Enqueue(refused).ok()) << "room again once the queue has drained";
  ASSERT_TRUE(WaitFinal(*refused));
  EXPECT_EQ(refused->state(), v1::DONE);
}

TEST_F(SchedulerTest, RecoveredBatchesAreAdmittedPastTheCapacity) {
  StartScheduler(/*queue_capacity=*/1);
  std::shared_ptr<Session> running = SealedSession("running", 2);
  std::shared_ptr<Session> queued = SealedSession("queued", 2);
  std::shared_ptr<Session> recovered = SealedSession("recovered", 2);
  auto gate = GateOn(running, Running);
  ASSERT_TRUE(scheduler_->Enqueue(running).ok());
  ASSERT_TRUE(gate->WaitHeld());
  ASSERT_TRUE(scheduler_->Enqueue(queued).ok());
  EXPECT_TRUE(scheduler_->Enqueue(recovered, /*recovered=*/true).ok());
  EXPECT_EQ(scheduler_->queued(), 2u);
  gate->Open();
  ASSERT_TRUE(WaitUntil([&] { return Idle() && recovered->IsFinal(); }));
  EXPECT_EQ(recovered->state(), v1::DONE) << recovered->ToProto().error();
}

TEST_F(SchedulerTest, ASessionCancelledWhileQueuedIsNotScored) {
  StartScheduler(4);
  std::shared_ptr<Session> first = SealedSession("first", 3);
  std::shared_ptr<Session> cancelled = SealedSession("cancelled", 3);
  auto gate = GateOn(first, Running);
  ASSERT_TRUE(scheduler_->Enqueue(first).ok());
  ASSERT_TRUE(gate->WaitHeld());
  ASSERT_TRUE(scheduler_->Enqueue(cancelled).ok());
  ASSERT_TRUE(cancelled->Cancel("no longer needed").ok());
  gate->Open();

  ASSERT_TRUE(WaitUntil([&] { return Idle() && first->IsFinal(); }));
  EXPECT_EQ(first->state(), v1::DONE) << first->ToProto().error();
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  const Session::Snapshot snapshot = cancelled->snapshot();
  EXPECT_EQ(snapshot.result_count, 0u);
  EXPECT_EQ(snapshot.progress_version, 0u) << "the worker never started on it";
  EXPECT_EQ(cancelled->ToProto().start_time().seconds(), 0) << "never marked running";
  EXPECT_EQ(cancelled->ToProto().error(), "no longer needed");
  EXPECT_EQ(BatchesScored(), 1);
}

TEST_F(SchedulerTest, ASessionCancelledWhileRunningStopsBeforeScoring) {
  StartScheduler(4);
  std::shared_ptr<Session> session = SealedSession("stopped", 10);
  auto gate = GateOn(session, [](const Session::Snapshot& s) { return s.stage == "backbone"; });
  ASSERT_TRUE(scheduler_->Enqueue(session).ok());
  ASSERT_TRUE(gate->WaitHeld());
  ASSERT_TRUE(session->Cancel("stop").ok());
  gate->Open();
  ASSERT_TRUE(WaitUntil([&] { return Idle(); }));
  EXPECT_EQ(session->state(), v1::CANCELLED);
  EXPECT_EQ(session->snapshot().result_count, 0u);
  EXPECT_EQ(BatchesScored(), 0) << "cancelled between backbone steps: MSM never ran";
}

TEST_F(SchedulerTest, DrainFailsWhatIsStillQueuedAndRefusesNewWork) {
  StartScheduler(4);
  std::shared_ptr<Session> running = SealedSession("running", 2);
  std::shared_ptr<Session> abandoned = SealedSession("abandoned", 2);
  auto gate = GateOn(running, Running);
  ASSERT_TRUE(scheduler_->Enqueue(running).ok());
  ASSERT_TRUE(gate->WaitHeld());
  ASSERT_TRUE(scheduler_->Enqueue(abandoned).ok());

  int drained = -1;
  std::thread drain([&] { drained = scheduler_->Drain(std::chrono::milliseconds(0)); });
  // Drain fails the queued batch at once, then waits for the running one.
  EXPECT_TRUE(WaitFinal(*abandoned));
  EXPECT_EQ(abandoned->state(), v1::FAILED);
  EXPECT_NE(abandoned->ToProto().error().find("shut down"), std::string::npos)
      << abandoned->ToProto().error();
  EXPECT_EQ(scheduler_->Enqueue(SealedSession("late", 2)).code(), absl::StatusCode::kUnavailable);
  gate->Open();
  drain.join();
  EXPECT_EQ(drained, 1);
  EXPECT_EQ(running->state(), v1::DONE) << running->ToProto().error();
}

}  // namespace
}  // namespace musc
