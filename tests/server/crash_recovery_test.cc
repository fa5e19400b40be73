// Durability of musc-server with --spool_dir (docs/RELIABILITY.md): a real server killed with
// SIGKILL at random points and restarted on the same spool, many times, must lose no
// acknowledged image, give every one exactly one result, and score as an uninterrupted run does.
// Also: a full or read-only spool refuses images with a clear status, start-up survives the
// debris of a crash, and retention deletes finished sessions from disk.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"

namespace musc::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// input_size 128 makes one batch take a few hundred milliseconds on two cores: long enough to
// be killed mid-scoring on purpose, short enough for a loop of restarts.
constexpr char kProducts[] = R"(
products:
  - name: crash
    backbone: {model: vit-tiny-random, seed: 11, input_size: 128}
    scoring: {degrees: [1, 3], interval: [0.0, 0.3], rscin_windows: [1, 2, 3]}
    batch: {min_images: 3, max_images: 40}
  - name: tiny
    backbone: {model: vit-tiny-random, seed: 12, input_size: 64}
    scoring: {degrees: [1]}
    batch: {min_images: 3, max_images: 40}
)";

// A scratch directory, removed (after unmounting anything mounted on it) at the end.
class ScratchDir {
 public:
  ScratchDir() {
    char name[] = "/tmp/musc-spool-test-XXXXXX";
    path_ = mkdtemp(name);
  }
  ~ScratchDir() {
    umount2(path_.c_str(), MNT_DETACH);
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string> SpoolFlags(const std::string& dir) {
  return {"--spool_dir=" + dir, "--session_idle_ttl=600", "--result_retention=600"};
}

struct Job {
  std::vector<EncodedImage> images;  // Planned, in sending order.
  std::string id;                    // Known once CreateSession answered.
  std::set<std::string> acked;       // Accepted (or ALREADY_EXISTS: stored before a crash).
  bool seal_acked = false;
  bool done = false;                   // Every result streamed to the end at least once.
  std::map<std::string, float> seen;   // Raw scores seen in any stream so far.
  std::vector<v1::ImageResult> final;  // The last complete stream.
};

Job MakeJob(int k, std::mt19937* rng) {
  Job job;
  const int n = std::uniform_int_distribution<int>(5, 9)(*rng);
  for (int i = 0; i < n; ++i) {
    job.images.push_back({absl::StrCat("job", k, "-img", i),
                          TexturePng(1000 * k + i, i % 4 == 3, 96, 80),
                          {{"i", std::to_string(i)}}});
  }
  return job;
}

struct Figures {
  int kills = 0;
  std::map<std::string, int> kill_points;  // Where the kill really fell.
  int acked_then_lost = 0;                 // Must stay 0.
  int ack_lost_in_flight = 0;              // Stored, ack never received: ALREADY_EXISTS later.
  int interrupted_batches = 0;             // SEALED/RUNNING at the kill, completed after restart.
};

// The client side of the test: drives jobs against whatever server is current.
class Driver {
 public:
  Driver(std::string spool, Figures* figures) : spool_(std::move(spool)), figures_(figures) {}

  bool Start() {
    server_ = ServerProcess::Start(kProducts, SpoolFlags(spool_));
    if (server_ == nullptr) return false;
    client_ = server_->Connect();
    return true;
  }
  void Kill() {
    server_->Kill();
    ++figures_->kills;
  }
  ServerProcess& server() { return *server_; }
  MuscClient& client() { return *client_; }

  void EnsureSession(Job& job) {
    if (!job.id.empty()) return;
    v1::CreateSessionRequest request;
    request.set_product("crash");
    absl::StatusOr<v1::Session> session = client_->CreateSession(request);
    ASSERT_TRUE(session.ok()) << session.status();
    job.id = session->id();
  }

  // Sends the images not acknowledged yet and records each ack as it arrives. kill_after >= 0:
  // SIGKILL the server once that many acks arrived (0: a moment after sending began).
  void Upload(Job& job, int kill_after) {
    auto stub = v1::MuscService::NewStub(client_->channel());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stream = stub->AddImages(&context);
    std::vector<const EncodedImage*> pending;
    for (const EncodedImage& image : job.images) {
      if (job.acked.count(image.client_id) == 0) pending.push_back(&image);
    }
    std::thread writer([&] {
      bool first = true;
      for (const EncodedImage* image : pending) {
        v1::AddImagesRequest request;
        if (first) request.set_session_id(job.id);
        first = false;
        request.set_client_image_id(image->client_id);
        request.set_data(image->bytes);
        request.set_last_chunk(true);
        request.mutable_metadata()->insert(image->metadata.begin(), image->metadata.end());
        if (!stream->Write(request)) return;
      }
      stream->WritesDone();
    });
    bool killed = false;
    if (kill_after == 0) {
      std::this_thread::sleep_for(milliseconds(rng_() % 4));
      Kill();
      killed = true;
    }
    v1::ImageAck ack;
    int n = 0;
    while (!killed && stream->Read(&ack)) {
      if (ack.accepted()) {
        job.acked.insert(ack.client_image_id());
      } else if (ack.error_code() == static_cast<int>(absl::StatusCode::kAlreadyExists)) {
        // Stored before the last crash, its ack lost with the connection: it is in the session.
        ++figures_->ack_lost_in_flight;
        job.acked.insert(ack.client_image_id());
      } else {
        ADD_FAILURE() << "image " << ack.client_image_id() << " refused: " << ack.error_message();
      }
      if (++n == kill_after) {
        Kill();
        killed = true;
      }
    }
    if (killed) context.TryCancel();
    writer.join();
    const grpc::Status status = stream->Finish();
    if (!killed) {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
  }

  void Seal(Job& job) {
    absl::StatusOr<v1::Session> s = client_->SealSession(job.id);
    ASSERT_TRUE(s.ok()) << s.status();
    job.seal_acked = true;
  }

  v1::SessionState State(const Job& job) {
    absl::StatusOr<v1::Session> s = client_->GetSession(job.id);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->state() : v1::SESSION_STATE_UNSPECIFIED;
  }

  // Streams the results; kill_after >= 0: SIGKILL the server after that many results (0: at the
  // first event of any kind).
  void Stream(Job& job, int kill_after) {
    std::vector<v1::ImageResult> results;
    bool finished = false;
    bool killed = false;
    absl::Status s = client_->StreamResults(job.id, {}, [&](const v1::ResultEvent& e) {
      if (killed) return;
      if (e.has_result()) {
        results.push_back(e.result());
        auto [it, fresh] = job.seen.emplace(e.result().client_image_id(), e.result().raw_score());
        // A result read before a restart and again after it is the same number, bit for bit.
        EXPECT_EQ(it->second, e.result().raw_score()) << e.result().client_image_id();
      }
      if (e.has_finished()) {
        finished = true;
        EXPECT_EQ(e.finished().session().state(), v1::DONE) << e.finished().session().error();
      }
      if (kill_after >= 0 && static_cast<int>(results.size()) >= kill_after && !finished) {
        Kill();
        killed = true;
      }
    });
    if (killed) return;
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(finished);
    job.final = std::move(results);
    job.done = true;
  }

  // Every check that must hold right after a restart.
  void CheckRecovered(const Job& job) {
    if (job.id.empty()) return;
    absl::StatusOr<v1::Session> s = client_->GetSession(job.id);
    ASSERT_TRUE(s.ok()) << "session " << job.id << " lost in a restart: " << s.status();
    if (s->image_count() < job.acked.size()) {
      figures_->acked_then_lost += static_cast<int>(job.acked.size() - s->image_count());
    }
    EXPECT_GE(s->image_count(), job.acked.size()) << job.id;
    if (job.seal_acked) {
      EXPECT_NE(s->state(), v1::OPEN) << job.id;
    }
    EXPECT_NE(s->state(), v1::FAILED) << s->error();
  }

  std::mt19937& rng() { return rng_; }

 private:
  const std::string spool_;
  Figures* const figures_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MuscClient> client_;
  std::mt19937 rng_{20240607};
};

// Where each iteration aims its SIGKILL; where it really fell is counted separately.
enum class KillPoint { kUpload, kAfterSeal, kMidScoring, kStreaming };

int Remaining(const Job& job) { return static_cast<int>(job.images.size() - job.acked.size()); }

TEST(CrashRecoveryTest, KillLoopLosesNothingAndScoresAsAnUninterruptedRun) {
  constexpr int kIterations = 14;
  // A batch of 5-9 images at input size 128 scores in roughly this many milliseconds here.
  constexpr int kScoringSleepMs = 150;
  ScratchDir spool;
  Figures figures;
  Driver driver(spool.path(), &figures);
  std::mt19937& rng = driver.rng();
  std::vector<Job> jobs;
  const auto started = std::chrono::steady_clock::now();

  ASSERT_TRUE(driver.Start());
  for (int it = 0; it < kIterations; ++it) {
    if (jobs.empty() || jobs.back().done)
      jobs.push_back(MakeJob(static_cast<int>(jobs.size()), &rng));
    Job& job = jobs.back();
    ASSERT_NO_FATAL_FAILURE(driver.EnsureSession(job));
    // Aim at a point this job has not passed yet, so that every job moves on.
    KillPoint point;
    if (!job.seal_acked) {
      // Uploads get half the kills: that is where acknowledgements race the crash.
      const unsigned r = rng() % 4;
      point = r < 2 ? KillPoint::kUpload : r == 2 ? KillPoint::kAfterSeal : KillPoint::kMidScoring;
      if (point == KillPoint::kUpload && Remaining(job) == 0) point = KillPoint::kAfterSeal;
    } else if (driver.State(job) == v1::DONE) {
      point = KillPoint::kStreaming;
    } else {
      point = rng() % 2 ? KillPoint::kMidScoring : KillPoint::kStreaming;
    }
    std::string hit;
    if (point == KillPoint::kUpload) {
      driver.Upload(job, static_cast<int>(rng() % Remaining(job)));
      hit = "upload";
    }
    if (hit.empty() && !job.seal_acked) {
      if (Remaining(job) > 0) driver.Upload(job, -1);
      ASSERT_EQ(Remaining(job), 0);
      ASSERT_NO_FATAL_FAILURE(driver.Seal(job));
      if (point == KillPoint::kAfterSeal) {
        driver.Kill();
        hit = "after_seal";
      }
    }
    if (hit.empty() && point == KillPoint::kMidScoring) {
      // Wait for scoring to start, then kill somewhere inside it.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      v1::SessionState state = driver.State(job);
      while (state == v1::SEALED && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(milliseconds(1));
        state = driver.State(job);
      }
      if (state == v1::RUNNING) {
        std::this_thread::sleep_for(milliseconds(rng() % kScoringSleepMs));
        state = driver.State(job);
        driver.Kill();
        hit = state == v1::RUNNING ? "mid_scoring" : "after_scoring";
      }
    }
    if (hit.empty()) {
      // Half the streams complete (the job is then done); the others are cut after k results.
      const int n = static_cast<int>(job.images.size());
      driver.Stream(job, rng() % 2 ? -1 : static_cast<int>(rng() % n));
      hit = job.done ? "after_stream" : "streaming";
      if (job.done) driver.Kill();  // Still a crash, between two jobs.
    }
    ++figures.kill_points[hit];
    if (hit == "mid_scoring" || hit == "after_seal") ++figures.interrupted_batches;
    ASSERT_TRUE(driver.Start()) << "restart " << it << " after a kill at " << hit;
    for (const Job& j : jobs) ASSERT_NO_FATAL_FAILURE(driver.CheckRecovered(j));
  }

  // Finish every job without further crashes.
  for (Job& job : jobs) {
    if (job.done) {
      // Streamable again after the restarts, identical (Stream checks every score it saw).
      driver.Stream(job, -1);
      continue;
    }
    if (!job.seal_acked) {
      if (Remaining(job) > 0) driver.Upload(job, -1);
      ASSERT_NO_FATAL_FAILURE(driver.Seal(job));
    }
    ASSERT_NO_FATAL_FAILURE(driver.Stream(job, -1));
  }

  // Every acknowledged image has exactly one result; scores equal an uninterrupted run of the
  // same batch (same images, same order) on the same kind of server.
  int images = 0;
  int mismatches = 0;
  double scoring_seconds = 0;
  for (Job& job : jobs) {
    ASSERT_TRUE(job.done);
    std::set<std::string> ids;
    std::vector<EncodedImage> ordered(job.final.size());
    for (const v1::ImageResult& r : job.final) {
      EXPECT_TRUE(ids.insert(r.client_image_id()).second)
          << "two results for " << r.client_image_id();
      ASSERT_LT(r.index(), ordered.size());
      for (const EncodedImage& image : job.images) {
        if (image.client_id == r.client_image_id()) ordered[r.index()] = image;
      }
    }
    EXPECT_EQ(ids, job.acked) << job.id;
    images += static_cast<int>(ids.size());
    absl::StatusOr<v1::Session> done = driver.client().GetSession(job.id);
    ASSERT_TRUE(done.ok()) << done.status();
    EXPECT_EQ(done->image_count(), ids.size());
    scoring_seconds +=
        static_cast<double>(done->finish_time().seconds() - done->start_time().seconds()) +
        (done->finish_time().nanos() - done->start_time().nanos()) * 1e-9;

    v1::CreateSessionRequest request;
    request.set_product("crash");
    absl::StatusOr<v1::Session> reference = driver.client().CreateSession(request);
    ASSERT_TRUE(reference.ok()) << reference.status();
    absl::StatusOr<std::vector<v1::ImageAck>> acks =
        driver.client().AddImages(reference->id(), ordered);
    ASSERT_TRUE(acks.ok()) << acks.status();
    ASSERT_TRUE(driver.client().SealSession(reference->id()).ok());
    std::map<std::string, std::pair<float, float>> expected;
    ASSERT_TRUE(driver.client()
                    .StreamResults(reference->id(), {},
                                   [&](const v1::ResultEvent& e) {
                                     if (e.has_result()) {
                                       expected[e.result().client_image_id()] = {
                                           e.result().raw_score(), e.result().final_score()};
                                     }
                                   })
                    .ok());
    for (const v1::ImageResult& r : job.final) {
      const auto& [raw, final_score] = expected[r.client_image_id()];
      const bool same = std::abs(raw - r.raw_score()) <= 1e-5f &&
                        std::abs(final_score - r.final_score()) <= 1e-5f;
      if (!same) ++mismatches;
      EXPECT_TRUE(same) << r.client_image_id() << ": " << r.raw_score() << "/" << r.final_score()
                        << " after crashes, " << raw << "/" << final_score << " uninterrupted";
    }
  }
  EXPECT_EQ(figures.acked_then_lost, 0);
  EXPECT_EQ(mismatches, 0);
  std::string points;
  for (const auto& [point, n] : figures.kill_points) absl::StrAppend(&points, " ", point, "=", n);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "kill loop: %d iterations, %d SIGKILLs, kill points:%s; %zu sessions, %d images, %d acks "
      "lost in flight (re-sent: ALREADY_EXISTS), %d interrupted batches re-queued, %d acked "
      "images lost, %d score mismatches; %.2f s per batch; %.1f s in all\n",
      kIterations, figures.kills, points.c_str(), jobs.size(), images, figures.ack_lost_in_flight,
      figures.interrupted_batches, figures.acked_then_lost, mismatches,
      scoring_seconds / static_cast<double>(jobs.size()), seconds);
  RecordProperty("kills", figures.kills);
  RecordProperty("images", images);
}

// --------------------------------------------------------------------------------------------

int CountFiles(const fs::path& dir, const std::string& suffix) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (absl::EndsWith(e.path().filename().string(), suffix)) ++n;
  }
  return n;
}

// A real full disk: a small tmpfs (needs root, as in CI; skipped elsewhere). Then the same
// spool remounted read-only.
TEST(SpoolTest, FullOrReadOnlySpoolRefusesImagesWithAClearStatus) {
  ScratchDir spool;
  if (mount("tmpfs", spool.path().c_str(), "tmpfs", 0, "size=256k") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "); needs root";
  }
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts, SpoolFlags(spool.path()));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  v1::CreateSessionRequest request;
  request.set_product("tiny");
  absl::StatusOr<v1::Session> session = client->CreateSession(request);
  ASSERT_TRUE(session.ok()) << session.status();

  // Noise does not compress: each PNG is ~60 KB, so the 256 KiB disk fills after a few.
  std::vector<EncodedImage> images;
  std::mt19937 rng(3);
  for (int i = 0; i < 8; ++i) {
    cv::Mat noise(150, 140, CV_8UC3);
    cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(255));
    images.push_back({absl::StrCat("big", i), EncodePng(noise), {}});
  }
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client->AddImages(session->id(), images);
  ASSERT_TRUE(acks.ok()) << acks.status();
  std::vector<std::string> accepted;
  int full = 0;
  for (const v1::ImageAck& ack : *acks) {
    if (ack.accepted()) {
      accepted.push_back(ack.client_image_id());
      EXPECT_EQ(full, 0) << "accepted after a refusal, with nothing freed";
      continue;
    }
    ++full;
    EXPECT_EQ(ack.error_code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
    EXPECT_TRUE(absl::StrContains(ack.error_message(), "spool disk full")) << ack.error_message();
    EXPECT_TRUE(absl::StrContains(ack.error_message(), "No space left on device"))
        << ack.error_message();
  }
  ASSERT_GE(accepted.size(), 1u);
  ASSERT_GE(full, 1);
  // Refused images are not in the session, and no temp file is left behind.
  absl::StatusOr<v1::Session> after = client->GetSession(session->id());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->image_count(), accepted.size());
  EXPECT_EQ(CountFiles(spool.path(), ".tmp"), 0);
  EXPECT_TRUE(absl::StrContains(
      server->ScrapeMetrics(),
      "musc_spool_write_failures_total{reason=\"disk_full\"} " + std::to_string(full)))
      << server->ScrapeMetrics();

  // Read-only: UNAVAILABLE, "not writable". (Root ignores permission bits; a read-only mount
  // stops it.)
  ASSERT_EQ(mount(nullptr, spool.path().c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0)
      << std::strerror(errno);
  acks = client->AddImages(session->id(), {{"late", TexturePng(9, false), {}}});
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), 1u);
  EXPECT_FALSE((*acks)[0].accepted());
  EXPECT_EQ((*acks)[0].error_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(absl::StrContains((*acks)[0].error_message(), "spool not writable"))
      << (*acks)[0].error_message();
  EXPECT_EQ(client->CreateSession(request).status().code(), absl::StatusCode::kUnavailable);

  // What was acknowledged survives a crash; the spool is writable again after the restart.
  server->Kill();
  ASSERT_EQ(mount(nullptr, spool.path().c_str(), nullptr, MS_REMOUNT, nullptr), 0);
  server = ServerProcess::Start(kProducts, SpoolFlags(spool.path()));
  ASSERT_NE(server, nullptr);
  client = server->Connect();
  after = client->GetSession(session->id());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->state(), v1::OPEN);
  EXPECT_EQ(after->image_count(), accepted.size());
}

// The debris a crash can leave: a session directory without its record (crash during create or
// remove), temp files, a damaged record. Start-up cleans the first two and skips the third.
TEST(SpoolTest, StartSurvivesHalfWrittenSessionsAndTempFiles) {
  ScratchDir spool;
  const fs::path sessions = fs::path(spool.path()) / "sessions";
  fs::create_directories(sessions / "tiny:0123456789abcdef0123456789abcdef" / "images");
  std::ofstream(sessions / "tiny:0123456789abcdef0123456789abcdef" / "images" / "0.img.tmp")
      << "partial";
  fs::create_directories(sessions / "tiny:ffffffffffffffffffffffffffffffff" / "images");
  std::ofstream(sessions / "tiny:ffffffffffffffffffffffffffffffff" / "session.json") << "{\"trunc";
  std::ofstream(sessions / "tiny:ffffffffffffffffffffffffffffffff" / "session.json.tmp") << "{";

  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts, SpoolFlags(spool.path()));
  ASSERT_NE(server, nullptr);
  EXPECT_FALSE(fs::exists(sessions / "tiny:0123456789abcdef0123456789abcdef"));
  EXPECT_TRUE(fs::exists(sessions / "tiny:ffffffffffffffffffffffffffffffff" / "session.json"));
  EXPECT_EQ(CountFiles(spool.path(), ".tmp"), 0);
  EXPECT_TRUE(absl::StrContains(server->ReadLog(), "skipping")) << server->ReadLog();

  // And it works: a batch scored and streamed, its files on disk.
  std::unique_ptr<MuscClient> client = server->Connect();
  v1::CreateSessionRequest request;
  request.set_product("tiny");
  absl::StatusOr<v1::Session> session = client->CreateSession(request);
  ASSERT_TRUE(session.ok());
  std::vector<EncodedImage> images;
  for (int i = 0; i < 4; ++i) images.push_back({absl::StrCat("i", i), TexturePng(i, false), {}});
  ASSERT_TRUE(client->AddImages(session->id(), images).ok());
  ASSERT_TRUE(client->SealSession(session->id()).ok());
  int results = 0;
  ASSERT_TRUE(client
                  ->StreamResults(session->id(), {},
                                  [&](const v1::ResultEvent& e) { results += e.has_result(); })
                  .ok());
  EXPECT_EQ(results, 4);
  EXPECT_TRUE(fs::exists(sessions / session->id() / "results.bin"));
  EXPECT_EQ(CountFiles(sessions / session->id(), ".img"), 4);
}

// Retention runs from the persisted finish time: a session whose retention ended while the
// server was down is deleted (memory and disk) after the restart; a live one when it ends.
TEST(SpoolTest, RetentionDeletesFinishedSessionsFromDisk) {
  ScratchDir spool;
  std::vector<std::string> flags = {"--spool_dir=" + spool.path(), "--result_retention=2"};
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts, flags);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  // A scored session, and its directory.
  auto run_batch = [&]() -> std::string {
    v1::CreateSessionRequest request;
    request.set_product("tiny");
    absl::StatusOr<v1::Session> session = client->CreateSession(request);
    EXPECT_TRUE(session.ok());
    if (!session.ok()) return "";
    std::vector<EncodedImage> images;
    for (int i = 0; i < 3; ++i) images.push_back({absl::StrCat("i", i), TexturePng(i, false), {}});
    EXPECT_TRUE(client->AddImages(session->id(), images).ok());
    EXPECT_TRUE(client->SealSession(session->id()).ok());
    EXPECT_TRUE(client->StreamResults(session->id(), {}, [](const v1::ResultEvent&) {}).ok());
    return session->id();
  };
  auto gone_within = [](const fs::path& dir, int seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (fs::exists(dir) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    return !fs::exists(dir);
  };
  const std::string first = run_batch();
  const fs::path first_dir = fs::path(spool.path()) / "sessions" / first;
  EXPECT_TRUE(fs::exists(first_dir / "results.bin"));

  // Down across the end of its retention.
  server->Kill();
  std::this_thread::sleep_for(milliseconds(2500));
  server = ServerProcess::Start(kProducts, flags);
  ASSERT_NE(server, nullptr);
  client = server->Connect();
  EXPECT_TRUE(absl::StrContains(server->ScrapeMetrics(),
                                "musc_recovered_sessions_total{state=\"done\"} 1"));
  EXPECT_TRUE(gone_within(first_dir, 10));
  EXPECT_EQ(client->GetSession(first).status().code(), absl::StatusCode::kNotFound);

  const std::string second = run_batch();
  const fs::path second_dir = fs::path(spool.path()) / "sessions" / second;
  EXPECT_TRUE(fs::exists(second_dir / "session.json"));
  EXPECT_TRUE(gone_within(second_dir, 10));
  EXPECT_EQ(client->GetSession(second).status().code(), absl::StatusCode::kNotFound);
}

// SIGTERM with a batch still queued after the grace period: its streams hear FAILED, but the
// spool keeps it SEALED and the next start scores it.
TEST(SpoolTest, BatchAbandonedAtShutdownIsScoredAfterTheRestart) {
  ScratchDir spool;
  std::vector<std::string> flags = SpoolFlags(spool.path());
  flags.push_back("--shutdown_grace=0");
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts, flags);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  std::vector<std::string> ids;
  for (int k = 0; k < 3; ++k) {
    v1::CreateSessionRequest request;
    request.set_product("crash");
    absl::StatusOr<v1::Session> session = client->CreateSession(request);
    ASSERT_TRUE(session.ok());
    std::vector<EncodedImage> images;
    for (int i = 0; i < 8; ++i) {
      images.push_back({absl::StrCat("i", i), TexturePng(100 * k + i, false), {}});
    }
    ASSERT_TRUE(client->AddImages(session->id(), images).ok());
    ASSERT_TRUE(client->SealSession(session->id()).ok());
    ids.push_back(session->id());
  }
  // One worker: the last batch is still queued when the grace (0 s) ends.
  EXPECT_EQ(server->Terminate(30), 0);
  server = ServerProcess::Start(kProducts, SpoolFlags(spool.path()));
  ASSERT_NE(server, nullptr);
  client = server->Connect();
  for (const std::string& id : ids) {
    v1::SessionState state = v1::SESSION_STATE_UNSPECIFIED;
    ASSERT_TRUE(client
                    ->StreamResults(id, {},
                                    [&](const v1::ResultEvent& e) {
                                      if (e.has_finished()) state = e.finished().session().state();
                                    })
                    .ok());
    EXPECT_EQ(state, v1::DONE) << id;
  }
}

}  // namespace
}  // namespace musc::testing
