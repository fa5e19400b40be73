// SessionManager in process: creation and lookup, the session limits, and the janitor's rules
// (idle auto-seal, idle expiry, retention) driven through Sweep at chosen times, so no test waits
// for a TTL to pass. Sealed sessions are scored by a real Scheduler on the tiny random ViT.
#include "server/batch/session_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/batch/scheduler.h"
#include "server/engine_pool.h"
#include "tests/server/in_process_fixture.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using testing::MessageHas;
using testing::WaitFinal;

std::string Products() {
  return absl::StrCat(R"(
products:
  - name: widget
    backbone: )",
                      testing::kTinyBackbone, R"(
    batch: {min_images: 2, max_images: 10}
  - name: gadget
    backbone: )",
                      testing::kTinyBackbone, R"(
    batch: {min_images: 2, max_images: 10, auto_seal: {at_count: 4}}
)");
}

SessionImage TextureImage(uint64_t seed) {
  SessionImage image;
  image.client_id = absl::StrCat("image-", seed);
  image.pixels = testing::DecodedTexture(seed);
  image.encoded_bytes = 1000;
  return image;
}

class SessionManagerTest : public ::testing::Test {
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

  // A manager whose janitor thread never runs during a test: each test sweeps at the times it
  // chooses.
  std::unique_ptr<SessionManager> NewManager(SessionManagerOptions options = {}) {
    options.sweep_interval = hours(24);
    return std::make_unique<SessionManager>(*products_, &scheduler_, options);
  }

  static std::vector<ProductConfig>* products_;
  static EnginePool* engines_;
  Scheduler scheduler_{engines_, SchedulerOptions{}};
};

std::vector<ProductConfig>* SessionManagerTest::products_ = nullptr;
EnginePool* SessionManagerTest::engines_ = nullptr;

std::vector<std::string> Ids(const std::vector<std::shared_ptr<Session>>& sessions) {
  std::vector<std::string> ids;
  for (const auto& s : sessions) ids.push_back(s->id());
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::string> Sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST_F(SessionManagerTest, CreatesFindsListsAndCancelsSessions) {
  auto manager = NewManager();
  auto a = manager->Create("widget", std::nullopt, {{"line", "3"}, {"shift", "night"}});
  auto b = manager->Create("widget", std::nullopt, {});
  auto c = manager->Create("gadget", std::nullopt, {});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ((*a)->id().rfind("widget:", 0), 0u) << (*a)->id();
  EXPECT_EQ((*c)->id().rfind("gadget:", 0), 0u) << (*c)->id();
  EXPECT_NE((*a)->id(), (*b)->id());
  EXPECT_EQ((*a)->state(), v1::OPEN);

  absl::StatusOr<std::shared_ptr<Session>> found = manager->Get((*a)->id());
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->get(), a->get());
  EXPECT_EQ(manager->Get("widget:0123").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager->Create("no-such-product", std::nullopt, {}).status().code(),
            absl::StatusCode::kNotFound);

  const v1::Session proto = (*a)->ToProto();
  EXPECT_EQ(proto.product(), "widget");
  ASSERT_EQ(proto.labels_size(), 2);
  EXPECT_EQ(proto.labels().at("line"), "3");
  EXPECT_EQ(proto.labels().at("shift"), "night");
  EXPECT_EQ((*b)->ToProto().labels_size(), 0);

  EXPECT_EQ(Ids(manager->List("", {})), Sorted({(*a)->id(), (*b)->id(), (*c)->id()}));
  EXPECT_EQ(Ids(manager->List("widget", {})), Sorted({(*a)->id(), (*b)->id()}));

  ASSERT_TRUE((*b)->Cancel("operator said so").ok());
  EXPECT_TRUE((*b)->Cancel("again").ok()) << "cancelling twice is not an error";
  EXPECT_EQ((*b)->state(), v1::CANCELLED);
  EXPECT_EQ((*b)->ToProto().error(), "operator said so");
  EXPECT_EQ(Ids(manager->List("", {v1::CANCELLED})), std::vector<std::string>{(*b)->id()});
  EXPECT_EQ(Ids(manager->List("widget", {v1::OPEN})), std::vector<std::string>{(*a)->id()});
  EXPECT_EQ(Ids(manager->List("widget", {v1::OPEN, v1::CANCELLED})),
            Sorted({(*a)->id(), (*b)->id()}));
  EXPECT_TRUE(manager->List("gadget", {v1::CANCELLED}).empty());
  // A cancelled session is still found (its outcome is kept until retention ends).
  EXPECT_TRUE(manager->Get((*b)->id()).ok());

  const auto counts = manager->CountByState();
  EXPECT_EQ(counts.at({"widget", v1::OPEN}), 1);
  EXPECT_EQ(counts.at({"widget", v1::CANCELLED}), 1);
  EXPECT_EQ(counts.at({"gadget", v1::OPEN}), 1);
  EXPECT_EQ(counts.size(), 3u);
}

TEST_F(SessionManagerTest, RefusesASealPolicyTheProductCannotMeet) {
  auto manager = NewManager();
  absl::StatusOr<std::shared_ptr<Session>> too_many =
      manager->Create("widget", SealPolicyConfig{11, 0}, {});
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(too_many.status(), "max_images 10"));
  EXPECT_EQ(manager->Create("widget", SealPolicyConfig{0, -1}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(manager->List("", {}).empty()) << "a refused session is not held";
}

TEST_F(SessionManagerTest, MaxSessionsCountsEveryStateUntilRetentionEnds) {
  SessionManagerOptions options;
  options.max_sessions = 2;
  auto manager = NewManager(options);
  auto a = manager->Create("widget", std::nullopt, {});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(manager->Create("gadget", std::nullopt, {}).ok());
  absl::StatusOr<std::shared_ptr<Session>> third = manager->Create("widget", std::nullopt, {});
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MessageHas(third.status(), "2 sessions"));

  // A finished session still holds its slot while its outcome is kept...
  ASSERT_TRUE((*a)->Cancel("done with it").ok());
  EXPECT_EQ(manager->Create("widget", std::nullopt, {}).status().code(),
            absl::StatusCode::kResourceExhausted);
  // ...and frees it when the retention period has passed.
  manager->Sweep((*a)->finish_time() + options.retention);
  EXPECT_EQ(manager->Get((*a)->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager->Create("widget", std::nullopt, {}).ok());
}

TEST_F(SessionManagerTest, PerProductLimitCountsOnlyUnfinishedSessions) {
  SessionManagerOptions options;
  options.max_sessions_per_product = 1;
  auto manager = NewManager(options);
  auto a = manager->Create("widget", std::nullopt, {});
  ASSERT_TRUE(a.ok());
  absl::StatusOr<std::shared_ptr<Session>> refused = manager->Create("widget", std::nullopt, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MessageHas(refused.status(), "product 'widget'"));
  EXPECT_TRUE(manager->Create("gadget", std::nullopt, {}).ok()) << "other products are not held up";
  ASSERT_TRUE((*a)->Cancel("make room").ok());
  EXPECT_TRUE(manager->Create("widget", std::nullopt, {}).ok());
}

TEST_F(SessionManagerTest, IdleOpenSessionsExpireAndFinishedOnesAreKeptForTheRetention) {
  SessionManagerOptions options;
  options.idle_ttl = minutes(10);
  options.retention = hours(1);
  auto manager = NewManager(options);
  auto idle = manager->Create("widget", std::nullopt, {});
  ASSERT_TRUE(idle.ok());
  const Clock::time_point t0 = (*idle)->last_activity();

  manager->Sweep(t0 + minutes(9));
  EXPECT_EQ((*idle)->state(), v1::OPEN);
  manager->Sweep(t0 + minutes(10));
  EXPECT_EQ((*idle)->state(), v1::CANCELLED);
  EXPECT_NE((*idle)->ToProto().error().find("idle TTL"), std::string::npos)
      << (*idle)->ToProto().error();

  // An expired session is kept like any finished one, then removed.
  const Clock::time_point finished = (*idle)->finish_time();
  manager->Sweep(finished + options.retention - seconds(1));
  EXPECT_TRUE(manager->Get((*idle)->id()).ok());
  manager->Sweep(finished + options.retention);
  EXPECT_EQ(manager->Get((*idle)->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager->List("", {}).empty());
}

TEST_F(SessionManagerTest, ActivityPostponesExpiry) {
  SessionManagerOptions options;
  options.idle_ttl = minutes(10);
  auto manager = NewManager(options);
  auto session = manager->Create("widget", std::nullopt, {});
  ASSERT_TRUE(session.ok());
  const Clock::time_point created = (*session)->last_activity();
  ASSERT_TRUE(manager->AddImage(**session, TextureImage(1)).ok());
  const Clock::time_point active = (*session)->last_activity();
  ASSERT_GE(active, created);
  manager->Sweep(active + minutes(10) - seconds(1));
  EXPECT_EQ((*session)->state(), v1::OPEN);
  manager->Sweep(active + minutes(10));
  EXPECT_EQ((*session)->state(), v1::CANCELLED);
}

TEST_F(SessionManagerTest, IdleAutoSealNeedsTheMinimumThenScores) {
  SessionManagerOptions options;
  options.idle_ttl = hours(1);
  auto manager = NewManager(options);
  auto enough = manager->Create("widget", SealPolicyConfig{0, 5.0}, {});
  auto too_few = manager->Create("widget", SealPolicyConfig{0, 5.0}, {});
  ASSERT_TRUE(enough.ok() && too_few.ok());
  ASSERT_TRUE(manager->AddImage(**enough, TextureImage(1)).ok());
  ASSERT_TRUE(manager->AddImage(**enough, TextureImage(2)).ok());
  ASSERT_TRUE(manager->AddImage(**too_few, TextureImage(3)).ok());
  const Clock::time_point enough_active = (*enough)->last_activity();

  manager->Sweep(enough_active + seconds(4));
  EXPECT_EQ((*enough)->state(), v1::OPEN);
  manager->Sweep(enough_active + seconds(5));
  EXPECT_NE((*enough)->state(), v1::OPEN) << "idle for its idle_seconds with min_images: sealed";
  EXPECT_EQ((*too_few)->state(), v1::OPEN) << "below min_images: waits for more";
  ASSERT_TRUE(WaitFinal(**enough));
  EXPECT_EQ((*enough)->state(), v1::DONE) << (*enough)->ToProto().error();
  EXPECT_EQ((*enough)->snapshot().result_count, 2u);

  // The one below the minimum is not sealed; the idle TTL expires it instead.
  manager->Sweep((*too_few)->last_activity() + hours(1));
  EXPECT_EQ((*too_few)->state(), v1::CANCELLED);
}

TEST_F(SessionManagerTest, SealsAutomaticallyAtTheCount) {
  auto manager = NewManager();
  // The session's own policy...
  auto session = manager->Create("widget", SealPolicyConfig{3, 0}, {});
  ASSERT_TRUE(session.ok());
  EXPECT_EQ((*session)->ToProto().seal_policy().at_count(), 3u);
  for (uint64_t seed = 1; seed <= 2; ++seed) {
    absl::StatusOr<uint32_t> index = manager->AddImage(**session, TextureImage(seed));
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(*index, seed - 1);
  }
  EXPECT_EQ((*session)->state(), v1::OPEN);
  ASSERT_TRUE(manager->AddImage(**session, TextureImage(3)).ok());
  EXPECT_NE((*session)->state(), v1::OPEN) << "the third image reached at_count";
  absl::StatusOr<uint32_t> late = manager->AddImage(**session, TextureImage(4));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(WaitFinal(**session));
  EXPECT_EQ((*session)->state(), v1::DONE) << (*session)->ToProto().error();
  EXPECT_EQ((*session)->snapshot().result_count, 3u);

  // ...or, without one, the product's (gadget: at_count 4).
  auto by_product = manager->Create("gadget", std::nullopt, {});
  ASSERT_TRUE(by_product.ok());
  EXPECT_EQ((*by_product)->ToProto().seal_policy().at_count(), 4u);
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    ASSERT_TRUE(manager->AddImage(**by_product, TextureImage(seed)).ok());
  }
  EXPECT_EQ((*by_product)->state(), v1::OPEN);
  ASSERT_TRUE(manager->AddImage(**by_product, TextureImage(4)).ok());
  EXPECT_NE((*by_product)->state(), v1::OPEN);
  ASSERT_TRUE(WaitFinal(**by_product));
  EXPECT_EQ((*by_product)->state(), v1::DONE) << (*by_product)->ToProto().error();
}

TEST_F(SessionManagerTest, SealBelowTheMinimumIsRefusedAndTheSessionStaysOpen) {
  auto manager = NewManager();
  auto session = manager->Create("widget", std::nullopt, {});
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(manager->AddImage(**session, TextureImage(1)).ok());
  absl::Status sealed = manager->Seal(*session);
  EXPECT_EQ(sealed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(MessageHas(sealed, "at least 2"));
  EXPECT_EQ((*session)->state(), v1::OPEN);
  EXPECT_EQ(manager->AddImage(**session, TextureImage(1)).status().code(),
            absl::StatusCode::kAlreadyExists)
      << "a client id is accepted once per session";
}

TEST_F(SessionManagerTest, StopAcceptingRefusesNewSessionsAndImages) {
  auto manager = NewManager();
  auto session = manager->Create("widget", std::nullopt, {});
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(manager->accepting());
  manager->StopAccepting();
  EXPECT_FALSE(manager->accepting());
  EXPECT_EQ(manager->Create("widget", std::nullopt, {}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(manager->AddImage(**session, TextureImage(1)).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*session)->image_count(), 0u);
}

}  // namespace
}  // namespace musc
