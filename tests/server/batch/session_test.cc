// The batch session's state machine in process (server/batch/session.h), with a recording fake
// store: what is accepted and refused, and that every change reaches the store, as values, before
// it is acknowledged.
#include "server/batch/session.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/store/session_store.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::MessageHas;

constexpr char kId[] = "widget:00000000000000000000000000000001";

// Records every call; fails the calls of one kind while told to.
class RecordingStore final : public SessionStore {
 public:
  struct Call {
    std::string kind;  // create, image, state, results, remove
    std::string session_id;
    SessionRecord record;  // create, state
    SessionImage image;    // image
    size_t result_count = 0;
  };

  absl::Status CreateSession(const SessionRecord& record) override {
    Call call = NewCall("create", record.id);
    call.record = record;
    return Add(std::move(call));
  }
  absl::Status AppendImage(const std::string& session_id, const SessionImage& image) override {
    Call call = NewCall("image", session_id);
    call.image = image;
    return Add(std::move(call));
  }
  absl::Status UpdateState(const SessionRecord& record) override {
    Call call = NewCall("state", record.id);
    call.record = record;
    return Add(std::move(call));
  }
  absl::Status WriteResults(const std::string& session_id,
                            const std::vector<SessionResult>& results) override {
    Call call = NewCall("results", session_id);
    call.result_count = results.size();
    return Add(std::move(call));
  }
  absl::Status Remove(const std::string& session_id) override {
    return Add(NewCall("remove", session_id));
  }

  // The calls of `kind` fail with `status` (and are not recorded) until StopFailing.
  void Fail(const std::string& kind, absl::Status status) {
    fail_kind_ = kind;
    fail_status_ = std::move(status);
  }
  void StopFailing() { fail_kind_.clear(); }

  const std::vector<Call>& calls() const { return calls_; }
  std::vector<std::string> kinds() const {
    std::vector<std::string> out;
    for (const Call& c : calls_) out.push_back(c.kind);
    return out;
  }
  const Call& last() const { return calls_.back(); }

 private:
  static Call NewCall(const std::string& kind, const std::string& session_id) {
    Call call;
    call.kind = kind;
    call.session_id = session_id;
    return call;
  }
  absl::Status Add(Call call) {
    if (call.kind == fail_kind_) return fail_status_;
    calls_.push_back(std::move(call));
    return absl::OkStatus();
  }

  std::vector<Call> calls_;
  std::string fail_kind_;
  absl::Status fail_status_;
};

ProductConfig Widget() {
  ProductConfig product;
  product.name = "widget";
  product.min_images = 2;
  product.max_images = 4;
  return product;
}

SessionImage Image(const std::string& client_id, int64_t encoded_bytes = 100) {
  SessionImage image;
  image.client_id = client_id;
  image.pixels = cv::Mat(6, 8, CV_8UC3, cv::Scalar(10, 20, 30));
  image.metadata = {{"camera", "top"}};
  image.encoded = std::string(static_cast<size_t>(encoded_bytes), 'x');
  image.encoded_bytes = encoded_bytes;
  image.decode_seconds = 0.002;
  return image;
}

constexpr int64_t kNoByteLimit = int64_t{1} << 40;

class SessionTest : public ::testing::Test {
 protected:
  // A session stored in `store_`, with `images` accepted.
  std::shared_ptr<Session> StoredSession(int images = 0, SealPolicyConfig policy = {}) {
    auto session = std::make_shared<Session>(kId, &product_, policy,
                                             std::map<std::string, std::string>{{"line", "4"}});
    EXPECT_TRUE(session->StoreIn(&store_).ok());
    for (int i = 0; i < images; ++i) {
      bool reached = false;
      EXPECT_TRUE(
          session->AddImage(Image("img-" + std::to_string(i)), kNoByteLimit, &reached).ok());
    }
    return session;
  }
  // A stored session of two images, sealed and running.
  std::shared_ptr<Session> RunningSession() {
    std::shared_ptr<Session> session = StoredSession(2);
    EXPECT_TRUE(session->Seal().ok());
    EXPECT_TRUE(session->MarkRunning());
    return session;
  }
  static std::vector<SessionResult> ResultsFor(size_t n) {
    std::vector<SessionResult> results(n);
    for (size_t i = 0; i < n; ++i) {
      results[i].index = static_cast<uint32_t>(i);
      results[i].raw_score = 0.5f + static_cast<float>(i);
      results[i].final_score = 0.25f + static_cast<float>(i);
      results[i].map = cv::Mat(4, 4, CV_32FC1, cv::Scalar(static_cast<double>(i)));
    }
    return results;
  }

  ProductConfig product_ = Widget();
  RecordingStore store_;
};

TEST_F(SessionTest, StoreInHandsOverTheFirstRecord) {
  SealPolicyConfig policy;
  policy.at_count = 3;
  policy.idle_seconds = 1.5;
  Session session(kId, &product_, policy, {{"line", "4"}});
  EXPECT_FALSE(session.persistent());
  ASSERT_TRUE(session.StoreIn(&store_).ok());
  EXPECT_TRUE(session.persistent());
  ASSERT_EQ(store_.kinds(), std::vector<std::string>{"create"});
  const SessionRecord& r = store_.last().record;
  EXPECT_EQ(r.id, kId);
  EXPECT_EQ(r.product, "widget");
  EXPECT_EQ(r.state, v1::OPEN);
  EXPECT_EQ(r.seal_policy.at_count, 3u);
  EXPECT_EQ(r.seal_policy.idle_seconds, 1.5);
  EXPECT_EQ(r.labels, (std::map<std::string, std::string>{{"line", "4"}}));
  EXPECT_NE(r.create_time, Clock::time_point{});
  EXPECT_EQ(r.seal_time, Clock::time_point{});
  EXPECT_EQ(r.image_count, 0u);
}

TEST_F(SessionTest, RefusedCreationLeavesTheSessionWithoutAStore) {
  store_.Fail("create", absl::ResourceExhaustedError("spool disk full"));
  Session session(kId, &product_, {}, {});
  EXPECT_EQ(session.StoreIn(&store_).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(session.persistent());
  EXPECT_TRUE(store_.calls().empty());
}

TEST_F(SessionTest, ImagesAreStoredBeforeTheyAreAcceptedAndNumberedInOrder) {
  std::shared_ptr<Session> session = StoredSession();
  for (uint32_t i = 0; i < 3; ++i) {
    bool reached = true;
    absl::StatusOr<uint32_t> index =
        session->AddImage(Image("img-" + std::to_string(i), 10 + i), kNoByteLimit, &reached);
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(*index, i);
    EXPECT_FALSE(reached);  // No auto-seal count.
    const RecordingStore::Call& call = store_.last();
    EXPECT_EQ(call.kind, "image");
    EXPECT_EQ(call.session_id, kId);
    EXPECT_EQ(call.image.index, i);
    EXPECT_EQ(call.image.client_id, "img-" + std::to_string(i));
    EXPECT_EQ(call.image.encoded, std::string(10 + i, 'x'));  // The bytes go to the store.
    EXPECT_EQ(call.image.width, 8);
    EXPECT_EQ(call.image.height, 6);
  }
  EXPECT_EQ(session->image_count(), 3u);
  // The session keeps the pixels for scoring, not the encoded bytes.
  for (const SessionImage& image : session->images_for_scoring()) {
    EXPECT_TRUE(image.encoded.empty());
    EXPECT_FALSE(image.pixels.empty());
  }
}

TEST_F(SessionTest, AnImageTheStoreRefusesIsNotAccepted) {
  std::shared_ptr<Session> session = StoredSession(1);
  store_.Fail("image", absl::ResourceExhaustedError("spool disk full: cannot store image"));
  bool reached = false;
  absl::StatusOr<uint32_t> index = session->AddImage(Image("img-1"), kNoByteLimit, &reached);
  EXPECT_EQ(index.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MessageHas(index.status(), "spool disk full"));
  EXPECT_EQ(session->image_count(), 1u);
  // Not accepted, so it may be sent again, and gets the index it would have had.
  store_.StopFailing();
  index = session->AddImage(Image("img-1"), kNoByteLimit, &reached);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(*index, 1u);
}

TEST_F(SessionTest, RepeatedClientIdIsAlreadyExists) {
  std::shared_ptr<Session> session = StoredSession(1);
  const size_t calls = store_.calls().size();
  bool reached = false;
  absl::StatusOr<uint32_t> again = session->AddImage(Image("img-0"), kNoByteLimit, &reached);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(MessageHas(again.status(), "already accepted"));
  EXPECT_EQ(session->image_count(), 1u);
  EXPECT_EQ(store_.calls().size(), calls);  // Nothing stored twice.
}

TEST_F(SessionTest, MaxImagesAndByteLimitAreResourceExhausted) {
  std::shared_ptr<Session> session = StoredSession(4);  // The product's max_images.
  bool reached = false;
  absl::StatusOr<uint32_t> over = session->AddImage(Image("img-4"), kNoByteLimit, &reached);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MessageHas(over.status(), "the maximum for product 'widget'"));
  EXPECT_EQ(session->image_count(), 4u);

  Session small(kId, &product_, {}, {});
  ASSERT_TRUE(small.AddImage(Image("a", 600), 1000, &reached).ok());
  absl::StatusOr<uint32_t> too_big = small.AddImage(Image("b", 401), 1000, &reached);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MessageHas(too_big.status(), "limit of 1000 bytes"));
  EXPECT_TRUE(small.AddImage(Image("c", 400), 1000, &reached).ok());  // Exactly the limit.
  EXPECT_EQ(small.image_count(), 2u);
}

TEST_F(SessionTest, ReachingTheAutoSealCountIsReported) {
  SealPolicyConfig policy;
  policy.at_count = 2;
  std::shared_ptr<Session> session = StoredSession(1, policy);
  bool reached = false;
  ASSERT_TRUE(session->AddImage(Image("img-1"), kNoByteLimit, &reached).ok());
  EXPECT_TRUE(reached);
}

TEST_F(SessionTest, SealIsRecordedBeforeItIsAcknowledged) {
  std::shared_ptr<Session> session = StoredSession(1);
  absl::Status below = session->Seal();
  EXPECT_EQ(below.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(MessageHas(below, "needs at least 2"));
  EXPECT_EQ(store_.last().kind, "image");  // A refused seal records nothing.

  bool reached = false;
  ASSERT_TRUE(session->AddImage(Image("img-1"), kNoByteLimit, &reached).ok());
  // The store refuses the record: the seal is refused, the session stays OPEN.
  store_.Fail("state", absl::UnavailableError("spool not writable"));
  EXPECT_EQ(session->Seal().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(session->state(), v1::OPEN);
  EXPECT_EQ(session->seal_time(), Clock::time_point{});
  store_.StopFailing();

  ASSERT_TRUE(session->Seal().ok());
  EXPECT_EQ(session->state(), v1::SEALED);
  EXPECT_EQ(store_.last().kind, "state");
  const SessionRecord& sealed = store_.last().record;
  EXPECT_EQ(sealed.state, v1::SEALED);
  EXPECT_EQ(sealed.image_count, 2u);
  EXPECT_EQ(sealed.seal_time, session->seal_time());
  EXPECT_NE(sealed.seal_time, Clock::time_point{});
  EXPECT_EQ(sealed.labels, (std::map<std::string, std::string>{{"line", "4"}}));

  // Idempotent: sealing again records nothing; images are refused once sealed.
  const size_t calls = store_.calls().size();
  EXPECT_TRUE(session->Seal().ok());
  EXPECT_EQ(store_.calls().size(), calls);
  absl::StatusOr<uint32_t> late = session->AddImage(Image("img-2"), kNoByteLimit, &reached);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.calls().size(), calls);
}

TEST_F(SessionTest, UnsealRecordsTheSessionOpenAgain) {
  std::shared_ptr<Session> session = StoredSession(2);
  ASSERT_TRUE(session->Seal().ok());
  session->Unseal();
  EXPECT_EQ(session->state(), v1::OPEN);
  EXPECT_EQ(store_.last().record.state, v1::OPEN);
  EXPECT_EQ(store_.last().record.seal_time, Clock::time_point{});
  // Unseal of an OPEN session changes nothing.
  const size_t calls = store_.calls().size();
  session->Unseal();
  EXPECT_EQ(store_.calls().size(), calls);
}

TEST_F(SessionTest, CancelIsRecordedWithItsReason) {
  std::shared_ptr<Session> session = StoredSession(2);
  ASSERT_TRUE(session->Cancel("the client gave up").ok());
  EXPECT_EQ(session->state(), v1::CANCELLED);
  EXPECT_TRUE(session->IsFinal());
  const SessionRecord& r = store_.last().record;
  EXPECT_EQ(r.state, v1::CANCELLED);
  EXPECT_EQ(r.error, "the client gave up");
  EXPECT_NE(r.finish_time, Clock::time_point{});
  EXPECT_EQ(r.finish_time, session->finish_time());
  // Not running, so its pixels are released at once.
  for (const SessionImage& image : session->images_for_scoring()) {
    EXPECT_TRUE(image.pixels.empty());
  }
  // Again: OK, nothing recorded, the first reason stays.
  const size_t calls = store_.calls().size();
  EXPECT_TRUE(session->Cancel("again").ok());
  EXPECT_EQ(store_.calls().size(), calls);
  EXPECT_EQ(session->ToProto().error(), "the client gave up");
  // Cancelled sessions cannot be sealed.
  EXPECT_EQ(session->Seal().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SessionTest, CompleteStoresResultsBeforeTheDoneRecord) {
  std::shared_ptr<Session> session = RunningSession();
  // RUNNING is not recorded: a batch whose scoring dies is SEALED on disk.
  EXPECT_EQ(session->state(), v1::RUNNING);
  EXPECT_EQ(store_.last().record.state, v1::SEALED);
  const size_t before = store_.calls().size();

  v1::StageTimings timings;
  timings.set_backbone_seconds(1.5);
  timings.set_queue_seconds(0.25);
  session->Complete(ResultsFor(2), timings, /*small_batch=*/true);
  EXPECT_EQ(session->state(), v1::DONE);
  ASSERT_EQ(store_.calls().size(), before + 2);
  EXPECT_EQ(store_.calls()[before].kind, "results");
  EXPECT_EQ(store_.calls()[before].result_count, 2u);
  const RecordingStore::Call& done = store_.calls()[before + 1];
  EXPECT_EQ(done.kind, "state");
  EXPECT_EQ(done.record.state, v1::DONE);
  EXPECT_TRUE(done.record.small_batch);
  EXPECT_EQ(done.record.timings.backbone_seconds(), 1.5);
  EXPECT_EQ(done.record.timings.queue_seconds(), 0.25);
  EXPECT_NE(done.record.start_time, Clock::time_point{});
  EXPECT_NE(done.record.finish_time, Clock::time_point{});
  EXPECT_EQ(session->snapshot().result_count, 2u);

  // Finished: cancel is refused.
  EXPECT_EQ(session->Cancel("late").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SessionTest, ResultsTheStoreRefusesLeaveTheRecordSealed) {
  std::shared_ptr<Session> session = RunningSession();
  store_.Fail("results", absl::ResourceExhaustedError("spool disk full"));
  const size_t before = store_.calls().size();
  session->Complete(ResultsFor(2), {}, false);
  // DONE in memory (streams get their results); the store still says SEALED, so a restart
  // scores the batch again.
  EXPECT_EQ(session->state(), v1::DONE);
  EXPECT_EQ(store_.calls().size(), before);
  EXPECT_EQ(store_.last().record.state, v1::SEALED);
}

TEST_F(SessionTest, FailIsRecordedUnlessTheShutdownLeavesTheBatchForTheNextStart) {
  std::shared_ptr<Session> session = RunningSession();
  session->Fail("feature extraction failed: boom");
  EXPECT_EQ(session->state(), v1::FAILED);
  EXPECT_EQ(store_.last().record.state, v1::FAILED);
  EXPECT_EQ(store_.last().record.error, "feature extraction failed: boom");

  RecordingStore other;
  auto abandoned = std::make_shared<Session>(kId, &product_, SealPolicyConfig{},
                                             std::map<std::string, std::string>{});
  ASSERT_TRUE(abandoned->StoreIn(&other).ok());
  bool reached = false;
  ASSERT_TRUE(abandoned->AddImage(Image("a"), kNoByteLimit, &reached).ok());
  ASSERT_TRUE(abandoned->AddImage(Image("b"), kNoByteLimit, &reached).ok());
  ASSERT_TRUE(abandoned->Seal().ok());
  const size_t calls = other.calls().size();
  abandoned->Fail("server shut down", /*persist=*/false);
  EXPECT_EQ(abandoned->state(), v1::FAILED);
  EXPECT_EQ(other.calls().size(), calls);
  EXPECT_EQ(other.last().record.state, v1::SEALED);

  // An OPEN session does not fail (only a sealed or running batch does).
  std::shared_ptr<Session> open = StoredSession();
  open->Fail("nothing to fail");
  EXPECT_EQ(open->state(), v1::OPEN);
}

TEST_F(SessionTest, CancelledWhileQueuedIsNotRun) {
  std::shared_ptr<Session> session = StoredSession(2);
  ASSERT_TRUE(session->Seal().ok());
  ASSERT_TRUE(session->Cancel("changed my mind").ok());
  EXPECT_FALSE(session->MarkRunning());
  EXPECT_TRUE(session->cancelled());
}

TEST_F(SessionTest, WithoutAStoreNothingIsPersistedAndEverythingWorks) {
  Session session(kId, &product_, {}, {});
  EXPECT_FALSE(session.persistent());
  bool reached = false;
  ASSERT_TRUE(session.AddImage(Image("a"), kNoByteLimit, &reached).ok());
  ASSERT_TRUE(session.AddImage(Image("b"), kNoByteLimit, &reached).ok());
  ASSERT_TRUE(session.Seal().ok());
  ASSERT_TRUE(session.MarkRunning());
  session.Complete(ResultsFor(2), {}, false);
  EXPECT_EQ(session.state(), v1::DONE);
  EXPECT_EQ(session.snapshot().result_count, 2u);
}

TEST_F(SessionTest, RestoreRebuildsTheSessionFromItsRecord) {
  SessionRecord record;
  record.id = kId;
  record.product = "widget";
  record.seal_policy.at_count = 2;
  record.labels = {{"line", "9"}};
  record.state = v1::DONE;
  record.create_time = Clock::time_point(std::chrono::seconds(1'700'000'000));
  record.seal_time = record.create_time + std::chrono::seconds(5);
  record.start_time = record.create_time + std::chrono::seconds(6);
  record.finish_time = record.create_time + std::chrono::seconds(9);
  record.image_count = 2;
  record.small_batch = true;
  record.timings.set_msm_seconds(0.75);
  std::vector<SessionImage> images = {Image("a", 100), Image("b", 50)};
  for (uint32_t i = 0; i < images.size(); ++i) {
    images[i].index = i;
    images[i].width = 8;
    images[i].height = 6;
    images[i].encoded.clear();
  }
  std::shared_ptr<Session> session =
      Session::Restore(record, &product_, std::move(images), ResultsFor(2), &store_);
  EXPECT_TRUE(store_.calls().empty());  // Restoring writes nothing.
  EXPECT_TRUE(session->persistent());
  const v1::Session proto = session->ToProto();
  EXPECT_EQ(proto.id(), kId);
  EXPECT_EQ(proto.product(), "widget");
  EXPECT_EQ(proto.state(), v1::DONE);
  EXPECT_EQ(proto.image_count(), 2u);
  EXPECT_EQ(proto.result_count(), 2u);
  EXPECT_EQ(proto.seal_policy().at_count(), 2u);
  EXPECT_EQ(proto.labels().at("line"), "9");
  EXPECT_EQ(proto.create_time().seconds(), 1'700'000'000);
  EXPECT_EQ(proto.seal_time().seconds(), 1'700'000'005);
  EXPECT_EQ(proto.start_time().seconds(), 1'700'000'006);
  EXPECT_EQ(proto.finish_time().seconds(), 1'700'000'009);
  EXPECT_TRUE(proto.small_batch());
  EXPECT_EQ(proto.timings().msm_seconds(), 0.75);
  EXPECT_EQ(session->finish_time(), record.finish_time);
  // Its idle timer restarts now.
  EXPECT_GT(session->last_activity(), record.finish_time);

  // The results are served as before.
  v1::MapOptions options;
  options.set_encoding(v1::FLOAT16);
  v1::ImageResult result;
  ASSERT_TRUE(session->BuildResult(1, options, &result).ok());
  EXPECT_EQ(result.client_image_id(), "b");
  EXPECT_EQ(result.index(), 1u);
  EXPECT_EQ(result.raw_score(), 1.5f);
  EXPECT_EQ(result.final_score(), 1.25f);
  EXPECT_EQ(result.metadata().at("camera"), "top");
  EXPECT_EQ(result.map().width(), 8u);  // Resized to the image's original size.
  EXPECT_EQ(result.map().height(), 6u);
  EXPECT_EQ(result.map().data().size(), 8u * 6u * 2u);
  EXPECT_FALSE(result.has_decision());  // The product has no decision policy.
  EXPECT_EQ(session->BuildResult(2, options, &result).code(), absl::StatusCode::kOutOfRange);

  // Client ids and byte counts come back too: a repeated id is still refused.
  SessionRecord open = record;
  open.state = v1::OPEN;
  open.seal_time = {};
  open.start_time = {};
  open.finish_time = {};
  std::vector<SessionImage> stored = {Image("a", 100)};
  stored[0].index = 0;
  std::shared_ptr<Session> reopened =
      Session::Restore(open, &product_, std::move(stored), {}, &store_);
  bool reached = false;
  EXPECT_EQ(reopened->AddImage(Image("a"), kNoByteLimit, &reached).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(reopened->AddImage(Image("c", 1), 100, &reached).status().code(),
            absl::StatusCode::kResourceExhausted);
  absl::StatusOr<uint32_t> next = reopened->AddImage(Image("c"), kNoByteLimit, &reached);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, 1u);
  EXPECT_EQ(store_.last().kind, "image");
  EXPECT_EQ(store_.last().image.index, 1u);
  EXPECT_TRUE(reached);  // at_count 2.
}

}  // namespace
}  // namespace musc
