// End-to-end tests of musc-server: the real binary on loopback, driven through the client
// library with real gRPC calls.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/map_codec.h"
#include "core/musc_engine.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"

namespace musc::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kProducts[] = R"(
products:
  - name: widget
    description: tiny random ViT, two degrees
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
    scoring: {degrees: [1, 3], interval: [0.0, 0.3], rscin_windows: [1, 2, 3]}
    batch: {min_images: 5, max_images: 12}
    maps: {encoding: png16}
  - name: gadget
    backbone: {model: vit-tiny-random, seed: 2, input_size: 64}
    scoring: {degrees: [1]}
    batch: {min_images: 3, max_images: 40, auto_seal: {at_count: 6}}
  - name: slow
    backbone: {model: vit-tiny-random, seed: 3, input_size: 256}
    scoring: {degrees: [1, 3, 5]}
    batch: {min_images: 5, max_images: 100}
)";

std::vector<EncodedImage> MakeImages(int n, uint64_t seed0, int defect_every = 4, int width = 96,
                                     int height = 80, const std::string& prefix = "img-") {
  std::vector<EncodedImage> images;
  for (int i = 0; i < n; ++i) {
    images.push_back({absl::StrCat(prefix, i),
                      TexturePng(seed0 + i, i % defect_every == defect_every - 1, width, height),
                      {{"station", "A"}}});
  }
  return images;
}

v1::CreateSessionRequest SessionFor(const std::string& product) {
  v1::CreateSessionRequest request;
  request.set_product(product);
  return request;
}

struct Collected {
  std::vector<v1::ImageResult> results;
  std::vector<v1::Progress> progress;
  v1::Session final_session;
  bool finished = false;
};

absl::StatusOr<Collected> Collect(MuscClient& client, const std::string& id,
                                  v1::MapOptions options = {}) {
  Collected c;
  absl::Status s = client.StreamResults(id, options, [&](const v1::ResultEvent& e) {
    if (e.has_result()) c.results.push_back(e.result());
    if (e.has_progress()) c.progress.push_back(e.progress());
    if (e.has_finished()) {
      c.finished = true;
      c.final_session = e.finished().session();
    }
  });
  if (!s.ok()) return s;
  return c;
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = ServerProcess::Start(kProducts).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr) << "server did not start";
    client_ = server_->Connect();
  }
  static ServerProcess* server_;
  std::unique_ptr<MuscClient> client_;
};
ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, HealthIsServingAndProductsAreListed) {
  absl::StatusOr<bool> serving = client_->IsServing();
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_TRUE(*serving);
  absl::StatusOr<std::vector<v1::Product>> products = client_->ListProducts();
  ASSERT_TRUE(products.ok()) << products.status();
  ASSERT_EQ(products->size(), 3u);
  EXPECT_EQ((*products)[0].name(), "widget");
  EXPECT_EQ((*products)[0].batch().min_images(), 5u);
  EXPECT_EQ((*products)[0].scoring().degrees_size(), 2);
  EXPECT_EQ((*products)[1].batch().auto_seal().at_count(), 6u);
  absl::StatusOr<v1::Product> one = client_->GetProduct("gadget");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->backbone().model(), "vit-tiny-random");
  EXPECT_EQ(client_->GetProduct("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, ReflectionListsTheServiceAndHealth) {
  namespace reflection = grpc::reflection::v1alpha;
  auto stub = reflection::ServerReflection::NewStub(client_->channel());
  grpc::ClientContext context;
  auto stream = stub->ServerReflectionInfo(&context);
  reflection::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->WritesDone());
  reflection::ServerReflectionResponse response;
  std::set<std::string> services;
  while (stream->Read(&response)) {
    for (const auto& s : response.list_services_response().service()) services.insert(s.name());
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(services.count("musc.v1.MuscService"), 1u);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1u);
}

TEST_F(ServerTest, FullRoundTripMatchesTheCoreDirectly) {
  const std::vector<EncodedImage> images = MakeImages(8, 100);
  absl::StatusOr<v1::Session> session = client_->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->state(), v1::OPEN);
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client_->AddImages(session->id(), images);
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), images.size());
  for (size_t i = 0; i < acks->size(); ++i) {
    EXPECT_TRUE((*acks)[i].accepted()) << (*acks)[i].error_message();
    EXPECT_EQ((*acks)[i].index(), i);
    EXPECT_EQ((*acks)[i].width(), 96u);
    EXPECT_EQ((*acks)[i].height(), 80u);
  }
  ASSERT_TRUE(client_->SealSession(session->id()).ok());
  absl::StatusOr<Collected> got = Collect(*client_, session->id());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->finished);
  EXPECT_EQ(got->final_session.state(), v1::DONE);
  ASSERT_EQ(got->results.size(), images.size());

  // The same images through the engine in this process, decoded the way the server decodes.
  EngineOptions options;
  options.backbone.model = "vit-tiny-random";
  options.backbone.seed = 1;
  options.backbone.input_size = 64;
  options.scoring.degrees = {1, 3};
  options.intra_op_threads = 2;
  absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<cv::Mat> decoded;
  std::vector<ImageView> views;
  for (const EncodedImage& image : images) {
    cv::Mat m = cv::imdecode(cv::Mat(1, static_cast<int>(image.bytes.size()), CV_8UC1,
                                     const_cast<char*>(image.bytes.data())),
                             cv::IMREAD_UNCHANGED);
    cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
    decoded.push_back(m);
  }
  for (const cv::Mat& m : decoded) views.push_back({m.data, m.rows, m.cols, 3, PixelType::kUint8});
  absl::StatusOr<BatchScores> direct = (*engine)->Score(views);
  ASSERT_TRUE(direct.ok()) << direct.status();

  for (const v1::ImageResult& r : got->results) {
    ASSERT_LT(r.index(), images.size());
    EXPECT_EQ(r.client_image_id(), images[r.index()].client_id);
    EXPECT_EQ(r.metadata().at("station"), "A");
    EXPECT_NEAR(r.raw_score(), direct->raw_scores[r.index()], 1e-5);
    EXPECT_NEAR(r.final_score(), direct->final_scores[r.index()], 1e-5);
    // The map arrives at the original resolution in the product's default encoding (PNG16).
    ASSERT_EQ(r.map().encoding(), v1::PNG16);
    EXPECT_EQ(r.map().width(), 96u);
    EXPECT_EQ(r.map().height(), 80u);
    cv::Mat values;
    ASSERT_TRUE(DecodeMap(r.map(), &values).ok());
    double lo = 0, hi = 0;
    cv::minMaxLoc(values, &lo, &hi);
    EXPECT_NEAR(lo, r.map().value_min(), 1e-4);
    EXPECT_NEAR(hi, r.map().value_max(), 1e-4);
    // Resizing can only lower the maximum of the S×S map, whose maximum is the raw score.
    EXPECT_LE(hi, r.raw_score() + 1e-4);
    EXPECT_GT(hi, 0.5 * r.raw_score());
  }
  absl::StatusOr<v1::Session> done = client_->GetSession(session->id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), v1::DONE);
  EXPECT_EQ(done->result_count(), images.size());
  EXPECT_DOUBLE_EQ(done->progress(), 1.0);
  EXPECT_GT(done->timings().msm_seconds(), 0.0);
  EXPECT_GT(done->timings().backbone_seconds(), 0.0);
}

TEST_F(ServerTest, LateStreamAndReconnectReplayEverythingInEachEncoding) {
  absl::StatusOr<v1::Session> session = client_->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(client_->AddImages(session->id(), MakeImages(6, 200)).ok());
  ASSERT_TRUE(client_->SealSession(session->id()).ok());
  absl::StatusOr<Collected> first = Collect(*client_, session->id());
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->results.size(), 6u);
  // Connecting again after completion gives every result again, with other map options.
  v1::MapOptions options;
  options.set_encoding(v1::FLOAT16);
  options.set_mask_threshold(first->results[0].raw_score() * 0.5f);
  absl::StatusOr<Collected> again = Collect(*client_, session->id(), options);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->results.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(again->results[i].raw_score(), first->results[i].raw_score());
    EXPECT_EQ(again->results[i].map().encoding(), v1::FLOAT16);
    EXPECT_EQ(again->results[i].map().data().size(), 96u * 80u * 2u);
    cv::Mat mask =
        cv::imdecode(cv::Mat(1, static_cast<int>(again->results[i].mask_png().size()), CV_8UC1,
                             const_cast<char*>(again->results[i].mask_png().data())),
                     cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(mask.empty());
    EXPECT_EQ(mask.cols, 96);
    // PNG16 and float16 maps agree up to their quantisation.
    cv::Mat a, b;
    ASSERT_TRUE(DecodeMap(first->results[i].map(), &a).ok());
    ASSERT_TRUE(DecodeMap(again->results[i].map(), &b).ok());
    EXPECT_LT(cv::norm(a, b, cv::NORM_INF), 2e-3 * (1.0 + first->results[i].raw_score()));
  }
  v1::MapOptions none;
  none.set_encoding(v1::MAP_NONE);
  absl::StatusOr<Collected> scores_only = Collect(*client_, session->id(), none);
  ASSERT_TRUE(scores_only.ok());
  EXPECT_FALSE(scores_only->results[0].has_map());
}

TEST_F(ServerTest, ConcurrentSessionsOfDifferentProducts) {
  std::atomic<int> done{0};
  auto run = [&](const std::string& product, uint64_t seed, int n) {
    std::unique_ptr<MuscClient> client = server_->Connect();
    absl::StatusOr<v1::Session> s = client->CreateSession(SessionFor(product));
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(client->AddImages(s->id(), MakeImages(n, seed)).ok());
    ASSERT_TRUE(client->SealSession(s->id()).ok());
    absl::StatusOr<Collected> c = Collect(*client, s->id());
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->final_session.state(), v1::DONE);
    EXPECT_EQ(c->final_session.product(), product);
    EXPECT_EQ(c->results.size(), static_cast<size_t>(n));
    ++done;
  };
  std::thread a(run, "widget", 300, 7);
  std::thread b(run, "gadget", 400, 5);  // Below gadget's auto-seal count of 6.
  std::thread c(run, "widget", 500, 9);
  a.join();
  b.join();
  c.join();
  EXPECT_EQ(done.load(), 3);
}

TEST_F(ServerTest, AutoSealAtCountScoresWithoutSealCall) {
  absl::StatusOr<v1::Session> session = client_->CreateSession(SessionFor("gadget"));
  ASSERT_TRUE(session.ok());
  EXPECT_EQ(session->seal_policy().at_count(), 6u);
  absl::StatusOr<std::vector<v1::ImageAck>> acks =
      client_->AddImages(session->id(), MakeImages(7, 600));
  ASSERT_TRUE(acks.ok());
  ASSERT_EQ(acks->size(), 7u);
  for (int i = 0; i < 6; ++i) EXPECT_TRUE((*acks)[i].accepted());
  // The seventh arrives after the automatic seal.
  EXPECT_FALSE((*acks)[6].accepted());
  EXPECT_EQ((*acks)[6].error_code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  absl::StatusOr<Collected> c = Collect(*client_, session->id());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->results.size(), 6u);
}

TEST_F(ServerTest, BadImagesAreRejectedOneByOneAndTheSessionStaysUsable) {
  absl::StatusOr<v1::Session> session = client_->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(session.ok());
  std::vector<EncodedImage> images = MakeImages(5, 700);
  std::string truncated = images[0].bytes.substr(0, images[0].bytes.size() / 2);
  images.push_back({"truncated", truncated, {}});
  images.push_back({"empty", "", {}});
  images.push_back({"text", "this is not an image at all", {}});
  images.push_back({"img-1", images[2].bytes, {}});  // Duplicate client id.
  images.push_back({"grey16", TexturePng(9, false, 96, 80, /*grey16=*/true), {}});
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client_->AddImages(session->id(), images);
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), images.size());
  auto code_of = [&](const std::string& id) {
    for (const v1::ImageAck& a : *acks) {
      if (a.client_image_id() == id && !a.accepted()) return a.error_code();
    }
    return 0;
  };
  const int invalid = static_cast<int>(absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("truncated"), invalid);
  EXPECT_EQ(code_of("empty"), invalid);
  EXPECT_EQ(code_of("text"), invalid);
  EXPECT_EQ(code_of("img-1"), static_cast<int>(absl::StatusCode::kAlreadyExists));
  for (const v1::ImageAck& a : *acks) {
    if (!a.accepted()) {
      EXPECT_NE(a.error_message().find(a.client_image_id()), std::string::npos)
          << "error should name the image: " << a.error_message();
    }
  }
  // Five good images plus the 16-bit grey one were accepted; the session scores them all.
  ASSERT_TRUE(client_->SealSession(session->id()).ok());
  absl::StatusOr<Collected> c = Collect(*client_, session->id());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->results.size(), 6u);
  EXPECT_EQ(c->final_session.state(), v1::DONE);
}

TEST_F(ServerTest, ErrorPathsHaveTheirStatusCodes) {
  EXPECT_EQ(client_->CreateSession(SessionFor("no-such-product")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->GetSession("s-unknown").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->SealSession("s-unknown").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->CancelSession("s-unknown").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->AddImages("s-unknown", MakeImages(1, 1)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->StreamResults("s-unknown", {}, [](const v1::ResultEvent&) {}).code(),
            absl::StatusCode::kNotFound);

  // Too few images to seal: the message states the minimum.
  absl::StatusOr<v1::Session> session = client_->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(client_->AddImages(session->id(), MakeImages(3, 800)).ok());
  absl::StatusOr<v1::Session> sealed = client_->SealSession(session->id());
  EXPECT_EQ(sealed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(sealed.status().message().find("at least 5"), std::string::npos)
      << sealed.status().message();

  // Too many images: widget holds at most 12.
  absl::StatusOr<std::vector<v1::ImageAck>> acks =
      client_->AddImages(session->id(), MakeImages(11, 900, 4, 96, 80, "more-"));
  ASSERT_TRUE(acks.ok());
  int exhausted = 0;
  for (const v1::ImageAck& a : *acks) {
    exhausted += a.error_code() == static_cast<int>(absl::StatusCode::kResourceExhausted);
  }
  EXPECT_EQ(exhausted, 2);

  // Cancel, then the session refuses images, and a second cancel is harmless.
  absl::StatusOr<v1::Session> cancelled = client_->CancelSession(session->id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  EXPECT_TRUE(client_->CancelSession(session->id()).ok());
  acks = client_->AddImages(session->id(), {{"late", TexturePng(1, false), {}}});
  ASSERT_TRUE(acks.ok());
  EXPECT_EQ((*acks)[0].error_code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(client_->SealSession(session->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // A finished session cannot be cancelled.
  absl::StatusOr<v1::Session> other = client_->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(client_->AddImages(other->id(), MakeImages(5, 950)).ok());
  ASSERT_TRUE(client_->SealSession(other->id()).ok());
  ASSERT_TRUE(Collect(*client_, other->id()).ok());
  EXPECT_EQ(client_->CancelSession(other->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ServerTest, ChunkedUploadsAndEveryPromisedFormatAreAccepted) {
  ClientOptions options;
  options.chunk_bytes = 777;  // Every image arrives in many chunks.
  std::unique_ptr<MuscClient> client = MuscClient::Connect(server_->address(), options);
  absl::StatusOr<v1::Session> session = client->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(session.ok());
  std::vector<EncodedImage> images = MakeImages(3, 1200);
  auto encode = [](const cv::Mat& m, const std::string& ext) {
    std::vector<uchar> bytes;
    EXPECT_TRUE(cv::imencode(ext, m, bytes)) << ext;
    return std::string(bytes.begin(), bytes.end());
  };
  const cv::Mat texture = MakeTexture(1300, true, 96, 80);
  images.push_back({"as.jpg", encode(texture, ".jpg"), {}});
  images.push_back({"as.bmp", encode(texture, ".bmp"), {}});
  images.push_back({"as.tiff", encode(texture, ".tiff"), {}});
  images.push_back({"grey16.tiff", encode(MakeTexture(1301, false, 96, 80, true), ".tiff"), {}});
  for (const EncodedImage& image : images) ASSERT_GT(image.bytes.size(), 2 * 777u);
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client->AddImages(session->id(), images);
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), images.size());
  for (const v1::ImageAck& a : *acks) {
    EXPECT_TRUE(a.accepted()) << a.client_image_id() << ": " << a.error_message();
    EXPECT_EQ(a.width(), 96u);
  }
  ASSERT_TRUE(client->SealSession(session->id()).ok());
  absl::StatusOr<Collected> c = Collect(*client, session->id());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->results.size(), images.size());
}

TEST_F(ServerTest, ListSessionsFiltersByProductAndState) {
  absl::StatusOr<v1::Session> open = client_->CreateSession(SessionFor("gadget"));
  ASSERT_TRUE(open.ok());
  absl::StatusOr<std::vector<v1::Session>> list = client_->ListSessions("gadget", {v1::OPEN});
  ASSERT_TRUE(list.ok());
  bool found = false;
  for (const v1::Session& s : *list) {
    EXPECT_EQ(s.product(), "gadget");
    EXPECT_EQ(s.state(), v1::OPEN);
    found = found || s.id() == open->id();
  }
  EXPECT_TRUE(found);
  list = client_->ListSessions("widget", {v1::OPEN});
  ASSERT_TRUE(list.ok());
  for (const v1::Session& s : *list) EXPECT_NE(s.id(), open->id());
}

TEST_F(ServerTest, InspectStreamsImagesAndReturnsResults) {
  grpc::ClientContext context;
  auto stub = v1::MuscService::NewStub(client_->channel());
  auto stream = stub->Inspect(&context);
  v1::InspectRequest start;
  start.mutable_start()->set_product("widget");
  start.mutable_start()->mutable_map_options()->set_encoding(v1::PNG8);
  ASSERT_TRUE(stream->Write(start));
  for (const EncodedImage& image : MakeImages(6, 1000)) {
    v1::InspectRequest request;
    request.mutable_image()->set_client_image_id(image.client_id);
    request.mutable_image()->set_data(image.bytes);
    request.mutable_image()->set_last_chunk(true);
    ASSERT_TRUE(stream->Write(request));
  }
  ASSERT_TRUE(stream->WritesDone());
  int acks = 0, results = 0;
  bool finished = false;
  v1::ResultEvent event;
  while (stream->Read(&event)) {
    if (event.has_ack()) {
      EXPECT_TRUE(event.ack().accepted());
      ++acks;
    }
    if (event.has_result()) {
      EXPECT_EQ(event.result().map().encoding(), v1::PNG8);
      ++results;
    }
    if (event.has_finished()) {
      finished = true;
      EXPECT_EQ(event.finished().session().state(), v1::DONE);
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(acks, 6);
  EXPECT_EQ(results, 6);
  EXPECT_TRUE(finished);
}

TEST_F(ServerTest, CancelWhileRunningEndsTheStreamCancelled) {
  absl::StatusOr<v1::Session> session = client_->CreateSession(SessionFor("slow"));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(client_->AddImages(session->id(), MakeImages(16, 1100)).ok());
  ASSERT_TRUE(client_->SealSession(session->id()).ok());
  std::atomic<bool> was_running{false};
  std::thread canceller([&] {
    // Cancel mid-run: once the worker has started on the batch.
    std::unique_ptr<MuscClient> other = server_->Connect();
    for (int i = 0; i < 500 && !was_running; ++i) {
      absl::StatusOr<v1::Session> s = other->GetSession(session->id());
      was_running = s.ok() && s->state() == v1::RUNNING;
      if (!was_running) std::this_thread::sleep_for(milliseconds(5));
    }
    absl::StatusOr<v1::Session> s = other->CancelSession(session->id());
    EXPECT_TRUE(s.ok()) << s.status();
  });
  absl::StatusOr<Collected> c = Collect(*client_, session->id());
  canceller.join();
  EXPECT_TRUE(was_running.load()) << "the batch was never seen RUNNING";
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->final_session.state(), v1::CANCELLED) << "the batch finished before the cancel";
  EXPECT_TRUE(c->results.empty());
  EXPECT_EQ(c->final_session.error(), "cancelled by a client");
}

// Servers with special flags.

TEST(ServerLimitsTest, IdleSessionsExpireFinishedOnesAreForgottenBigImagesRefused) {
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(
      kProducts, {"--session_idle_ttl=1", "--result_retention=1", "--max_image_bytes=20000"});
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  absl::StatusOr<v1::Session> session = client->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(session.ok());
  const std::string big = TexturePng(5, false, 400, 300);
  ASSERT_GT(big.size(), 20000u);
  absl::StatusOr<std::vector<v1::ImageAck>> acks =
      client->AddImages(session->id(), {{"big", big, {}}});
  ASSERT_TRUE(acks.ok());
  EXPECT_EQ((*acks)[0].error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE((*acks)[0].error_message().find("limit"), std::string::npos);
  std::this_thread::sleep_for(milliseconds(2000));
  absl::StatusOr<v1::Session> expired = client->GetSession(session->id());
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(expired->state(), v1::CANCELLED);
  EXPECT_NE(expired->error().find("expired"), std::string::npos) << expired->error();

  // A finished session stays readable for the retention period, then is gone.
  absl::StatusOr<v1::Session> done = client->CreateSession(SessionFor("widget"));
  ASSERT_TRUE(done.ok());
  ASSERT_TRUE(client->AddImages(done->id(), MakeImages(5, 77)).ok());
  ASSERT_TRUE(client->SealSession(done->id()).ok());
  ASSERT_TRUE(Collect(*client, done->id()).ok());
  EXPECT_TRUE(client->GetSession(done->id()).ok());
  std::this_thread::sleep_for(milliseconds(2000));
  EXPECT_EQ(client->GetSession(done->id()).status().code(), absl::StatusCode::kNotFound);
}

TEST(ServerLimitsTest, FullQueueAnswersResourceExhaustedAndKeepsTheSessionOpen) {
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start(kProducts, {"--queue_capacity=1", "--workers=1"});
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  std::vector<std::string> ids;
  for (int k = 0; k < 3; ++k) {
    absl::StatusOr<v1::Session> s = client->CreateSession(SessionFor("slow"));
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(client->AddImages(s->id(), MakeImages(16, 2000 + 100 * k)).ok());
    ids.push_back(s->id());
  }
  ASSERT_TRUE(client->SealSession(ids[0]).ok());  // Taken by the worker.
  // Wait until the first batch left the queue for the worker.
  for (int i = 0; i < 100; ++i) {
    if (client->GetSession(ids[0])->state() == v1::RUNNING) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(client->SealSession(ids[1]).ok());  // Waits in the one queue slot.
  absl::StatusOr<v1::Session> third = client->SealSession(ids[2]);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client->GetSession(ids[2])->state(), v1::OPEN);
}

TEST(ServerShutdownTest, SigtermFinishesTheRunningBatchAndExitsCleanly) {
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  absl::StatusOr<v1::Session> session = client->CreateSession(SessionFor("slow"));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(client->AddImages(session->id(), MakeImages(12, 3000)).ok());
  ASSERT_TRUE(client->SealSession(session->id()).ok());
  Collected collected;
  absl::Status stream_status;
  std::thread reader([&] {
    stream_status = client->StreamResults(session->id(), {}, [&](const v1::ResultEvent& e) {
      if (e.has_progress()) collected.progress.push_back(e.progress());
      if (e.has_result()) collected.results.push_back(e.result());
      if (e.has_finished()) collected.final_session = e.finished().session();
    });
  });
  std::this_thread::sleep_for(milliseconds(200));
  const int status = server->Terminate(120);
  reader.join();
  ASSERT_NE(status, -1) << "server did not exit";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << server->ReadLog();
  // Everything the server acknowledged was scored and delivered before it exited.
  EXPECT_TRUE(stream_status.ok()) << stream_status;
  EXPECT_EQ(collected.final_session.state(), v1::DONE);
  EXPECT_EQ(collected.results.size(), 12u);
  // Progress events arrived while the batch ran, ending with the scoring stage.
  ASSERT_FALSE(collected.progress.empty());
  EXPECT_EQ(collected.progress.back().stage(), "scoring");
  EXPECT_EQ(collected.progress.back().total(), 12u);
}

}  // namespace
}  // namespace musc::testing
