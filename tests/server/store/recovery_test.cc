// Start-up recovery in process (server/store/recovery.h): sessions written to a spool come back
// into a SessionManager as docs/RELIABILITY.md says, by recorded state, and sessions that cannot
// be read are skipped and left on disk. No engine is loaded: a batch that is queued again fails at
// once with "no engine loaded", which is how these tests see that it was queued.
#include "server/store/recovery.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "base/file_io.h"
#include "server/batch/scheduler.h"
#include "server/batch/session_manager.h"
#include "server/engine_pool.h"
#include "tests/server/in_process_fixture.h"
#include "tests/server/test_images.h"
#include "tests/test_support.h"

namespace musc {
namespace {

namespace fs = std::filesystem;
using ::musc::testing::ScratchDir;
using ::musc::testing::WaitFinal;

ProductConfig Widget() {
  ProductConfig product;
  product.name = "widget";
  product.min_images = 2;
  product.max_images = 10;
  return product;
}

std::string IdOf(int n) { return "widget:" + std::string(31, '0') + std::to_string(n); }

SessionRecord Record(const std::string& id, v1::SessionState state, size_t images) {
  SessionRecord r;
  r.id = id;
  r.product = "widget";
  r.state = state;
  r.create_time = Clock::now() - std::chrono::minutes(5);
  if (state != v1::OPEN) r.seal_time = r.create_time + std::chrono::seconds(10);
  if (state == v1::RUNNING || state == v1::DONE) {
    r.start_time = r.seal_time + std::chrono::seconds(1);
  }
  if (state == v1::DONE || state == v1::CANCELLED || state == v1::FAILED) {
    r.finish_time = r.seal_time + std::chrono::seconds(2);
  }
  if (state == v1::DONE) r.timings.set_backbone_seconds(0.5);
  r.image_count = images;
  return r;
}

SessionImage Image(uint32_t index) {
  SessionImage image;
  image.index = index;
  image.client_id = "img-" + std::to_string(index);
  image.encoded = musc::testing::TexturePng(index, false, 32, 24);
  image.encoded_bytes = static_cast<int64_t>(image.encoded.size());
  image.width = 32;
  image.height = 24;
  return image;
}

std::vector<SessionResult> Results(size_t n) {
  std::vector<SessionResult> results(n);
  for (size_t i = 0; i < n; ++i) {
    results[i].index = static_cast<uint32_t>(i);
    results[i].raw_score = 1.0f + static_cast<float>(i);
    results[i].final_score = 2.0f + static_cast<float>(i);
    results[i].map = cv::Mat(4, 4, CV_32FC1, cv::Scalar(0.5));
  }
  return results;
}

// Writes a session as a server would have left it.
void Write(Spool& spool, const SessionRecord& record, size_t images, bool results = false) {
  SessionRecord open = record;
  open.state = v1::OPEN;
  ASSERT_TRUE(spool.CreateSession(open).ok());
  for (uint32_t i = 0; i < images; ++i) ASSERT_TRUE(spool.AppendImage(record.id, Image(i)).ok());
  if (results) {
    ASSERT_TRUE(spool.WriteResults(record.id, Results(images)).ok());
  }
  ASSERT_TRUE(spool.UpdateState(record).ok());
}

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(scratch_.path(), DecodeLimits{});
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_ = *std::move(spool);
    absl::StatusOr<std::unique_ptr<EnginePool>> engines = EnginePool::Load({}, {});
    ASSERT_TRUE(engines.ok()) << engines.status();
    engines_ = *std::move(engines);
  }

  // Runs recovery on the spool as written so far, into a fresh manager.
  void Recover() {
    scheduler_ = std::make_unique<Scheduler>(engines_.get(), SchedulerOptions{});
    SessionManagerOptions options;
    options.spool = spool_.get();
    manager_ = std::make_unique<SessionManager>(std::vector<ProductConfig>{Widget()},
                                                scheduler_.get(), options);
    ASSERT_TRUE(RecoverSessions(*spool_, *manager_, *scheduler_, nullptr).ok());
  }

  std::shared_ptr<Session> Get(const std::string& id) {
    absl::StatusOr<std::shared_ptr<Session>> session = manager_->Get(id);
    return session.ok() ? *session : nullptr;
  }

  // Waits (with a deadline) until the session is final; its state then.
  v1::Session FinalState(const std::string& id) {
    std::shared_ptr<Session> session = Get(id);
    if (session == nullptr) return {};
    WaitFinal(*session, std::chrono::seconds(30));
    return session->ToProto();
  }

  ScratchDir scratch_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<EnginePool> engines_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SessionManager> manager_;
};

TEST_F(RecoveryTest, SessionsComeBackByRecordedState) {
  SealPolicyConfig at_two;
  at_two.at_count = 2;
  Write(*spool_, Record(IdOf(1), v1::OPEN, 2), 2);
  SessionRecord auto_seal = Record(IdOf(2), v1::OPEN, 2);
  auto_seal.seal_policy = at_two;
  Write(*spool_, auto_seal, 2);
  Write(*spool_, Record(IdOf(3), v1::SEALED, 2), 2);
  Write(*spool_, Record(IdOf(4), v1::RUNNING, 2), 2);
  Write(*spool_, Record(IdOf(5), v1::DONE, 3), 3, /*results=*/true);
  SessionRecord cancelled = Record(IdOf(6), v1::CANCELLED, 1);
  cancelled.error = "expired: no activity";
  Write(*spool_, cancelled, 1);
  const auto before = Clock::now();
  Recover();

  // OPEN: its images decoded again, its idle timer restarted, not sealed.
  std::shared_ptr<Session> open = Get(IdOf(1));
  ASSERT_NE(open, nullptr);
  EXPECT_EQ(open->state(), v1::OPEN);
  EXPECT_EQ(open->image_count(), 2u);
  EXPECT_GE(open->last_activity(), before);
  EXPECT_EQ(open->seal_time(), Clock::time_point{});
  for (const SessionImage& image : open->images_for_scoring()) {
    EXPECT_EQ(image.pixels.cols, 32);
    EXPECT_EQ(image.pixels.rows, 24);
    EXPECT_TRUE(image.encoded.empty());
  }
  // An image already accepted is still refused as such.
  SessionImage again = Image(0);
  again.pixels = cv::Mat(24, 32, CV_8UC3);
  EXPECT_EQ(manager_->AddImage(*open, again).status().code(), absl::StatusCode::kAlreadyExists);

  // OPEN at its auto-seal count, SEALED and RUNNING: queued again (and, with no engine, failed).
  for (int n : {2, 3, 4}) {
    SCOPED_TRACE(n);
    const v1::Session s = FinalState(IdOf(n));
    EXPECT_EQ(s.state(), v1::FAILED);
    EXPECT_EQ(s.error(), "no engine loaded for product 'widget'");
  }

  // DONE: its results, streamable as before.
  std::shared_ptr<Session> done = Get(IdOf(5));
  ASSERT_NE(done, nullptr);
  const v1::Session done_proto = done->ToProto();
  EXPECT_EQ(done_proto.state(), v1::DONE);
  EXPECT_EQ(done_proto.result_count(), 3u);
  EXPECT_EQ(done_proto.timings().backbone_seconds(), 0.5);
  v1::ImageResult result;
  ASSERT_TRUE(done->BuildResult(2, v1::MapOptions(), &result).ok());
  EXPECT_EQ(result.client_image_id(), "img-2");
  EXPECT_EQ(result.raw_score(), 3.0f);
  EXPECT_EQ(result.map().width(), 32u);
  // Finished sessions do not hold pixels.
  for (const SessionImage& image : done->images_for_scoring()) EXPECT_TRUE(image.pixels.empty());

  // CANCELLED: as it was.
  const v1::Session c = Get(IdOf(6))->ToProto();
  EXPECT_EQ(c.state(), v1::CANCELLED);
  EXPECT_EQ(c.error(), "expired: no activity");
}

TEST_F(RecoveryTest, DoneWithoutReadableResultsIsScoredAgain) {
  Write(*spool_, Record(IdOf(1), v1::DONE, 2), 2, /*results=*/true);
  Write(*spool_, Record(IdOf(2), v1::DONE, 2), 2, /*results=*/true);
  fs::remove(spool_->SessionDir(IdOf(1)) + "/results.bin");
  absl::StatusOr<std::string> bytes =
      ReadFileToString(spool_->SessionDir(IdOf(2)) + "/results.bin");
  ASSERT_TRUE(bytes.ok());
  (*bytes)[20] ^= 0x10;
  std::ofstream(spool_->SessionDir(IdOf(2)) + "/results.bin", std::ios::binary) << *bytes;
  Recover();
  for (int n : {1, 2}) {
    SCOPED_TRACE(n);
    // Back SEALED and queued: with no engine, it fails (a real server scores it).
    const v1::Session s = FinalState(IdOf(n));
    EXPECT_EQ(s.state(), v1::FAILED);
    EXPECT_EQ(s.error(), "no engine loaded for product 'widget'");
  }
}

TEST_F(RecoveryTest, UnreadableSessionsAreSkippedAndLeftOnDisk) {
  Write(*spool_, Record(IdOf(1), v1::OPEN, 2), 2);  // Fine.
  SessionRecord other_product = Record(IdOf(2), v1::CANCELLED, 1);
  other_product.product = "gadget";
  Write(*spool_, other_product, 1);
  Write(*spool_, Record(IdOf(3), v1::OPEN, 2), 2);
  std::ofstream(spool_->ImagePath(IdOf(3), 1), std::ios::binary) << "not an image file";
  Write(*spool_, Record(IdOf(4), v1::SEALED, 3), 2);  // The record names 3, the spool holds 2.
  Write(*spool_, Record(IdOf(5), v1::OPEN, 2), 2);
  std::ofstream(spool_->SessionDir(IdOf(5)) + "/session.json") << "{";
  // An image file whose stored bytes do not decode.
  Write(*spool_, Record(IdOf(6), v1::OPEN, 0), 0);
  SessionImage garbage = Image(0);
  garbage.encoded = "not a PNG";
  ASSERT_TRUE(spool_->AppendImage(IdOf(6), garbage).ok());
  Recover();

  EXPECT_NE(Get(IdOf(1)), nullptr);
  for (int n : {2, 3, 4, 5, 6}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(Get(IdOf(n)), nullptr);
    EXPECT_TRUE(fs::exists(spool_->SessionDir(IdOf(n)) + "/images"));  // Left for inspection.
  }
  EXPECT_EQ(manager_->List("", {}).size(), 1u);
}

}  // namespace
}  // namespace musc
