#include "server/line/line_runner.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "server/log.h"
#include "server/results/result_builder.h"
#include "server/store/durable_file.h"
#include "server/thread_priority.h"

namespace musc {
namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

namespace fs = std::filesystem;

constexpr char kWindowFile[] = "window.txt";

std::string KeptImageName(uint64_t sequence) { return absl::StrFormat("%020u.img", sequence); }

std::string KeptImagePath(const std::string& dir, uint64_t sequence) {
  return dir + "/" + KeptImageName(sequence);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LineRunner>> LineRunner::Create(const ProductConfig* product,
                                                               MuscEngine* engine,
                                                               ServerMetrics* metrics,
                                                               const std::string& state_dir,
                                                               const DecodeLimits& limits) {
  if (!product->line) {
    return absl::FailedPreconditionError(
        absl::StrCat("product '", product->name, "' has no line mode"));
  }
  LineOptions options;
  options.bank_size = product->line->bank_size;
  options.scoring = product->scoring;
  options.scoring.keep_maps = true;
  MUSC_ASSIGN_OR_RETURN(std::unique_ptr<LineScorer> scorer, LineScorer::Create(engine, options));
  auto runner =
      std::unique_ptr<LineRunner>(new LineRunner(product, std::move(scorer), metrics, state_dir));
  if (!state_dir.empty()) {
    std::error_code error;
    fs::create_directories(state_dir, error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("cannot create line state directory ", state_dir, ": ", error.message()));
    }
    // Nothing is queued yet, so the runner's thread does not touch the bank while it is rebuilt.
    if (absl::Status s = runner->Restore(limits); !s.ok()) return s;
  }
  return runner;
}

absl::Status LineRunner::Restore(const DecodeLimits& limits) {
  std::vector<uint64_t> kept;
  for (const auto& entry : fs::directory_iterator(state_dir_)) {
    const std::string name = entry.path().filename().string();
    if (absl::EndsWith(name,
                       kTempFileSuffix)) {  // A write a crash interrupted: never acknowledged.
      fs::remove(entry.path());
      continue;
    }
    uint64_t sequence = 0;
    if (entry.path().extension() == ".img" && std::sscanf(name.c_str(), "%20lu", &sequence) == 1) {
      kept.push_back(sequence);
    }
  }
  std::sort(kept.begin(), kept.end());
  const size_t capacity = static_cast<size_t>(scorer_->bank_capacity());
  // Images that had left the bank when the process stopped (their removal did not happen).
  while (kept.size() > capacity) {
    fs::remove(KeptImagePath(state_dir_, kept.front()));
    kept.erase(kept.begin());
  }
  for (uint64_t sequence : kept) {
    const std::string path = KeptImagePath(state_dir_, sequence);
    absl::StatusOr<std::string> bytes = ReadFileToString(path);
    absl::StatusOr<DecodedImage> decoded =
        bytes.ok() ? DecodeImage(*bytes, limits) : absl::StatusOr<DecodedImage>(bytes.status());
    absl::StatusOr<LineScorer::FeaturesPtr> features =
        decoded.ok() ? scorer_->Extract(ViewOf(decoded->pixels))
                     : absl::StatusOr<LineScorer::FeaturesPtr>(decoded.status());
    if (!features.ok()) {
      LogWarning(absl::StrCat("line '", product_->name, "': skipping kept image ", path, ": ",
                              features.status().message()));
      continue;
    }
    MUSC_RETURN_IF_ERROR(scorer_->Admit(*std::move(features)));
    kept_.push_back(sequence);
    sequence_ = std::max(sequence_, sequence + 1);
  }
  if (absl::StatusOr<std::string> window = ReadFileToString(state_dir_ + "/" + kWindowFile);
      window.ok()) {
    std::istringstream in(*window);
    std::string word;
    uint64_t next = 0;
    if (in >> word >> next && word == "next") sequence_ = std::max(sequence_, next);
    std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    decider_.RestoreWindow(rest);
  }
  if (scorer_->bank_images() > 0) {
    LogInfo(absl::StrCat("line '", product_->name, "': restored a bank of ", scorer_->bank_images(),
                         " image(s) and ", decider_.window_size(),
                         " recent score(s); no warm-up needed"));
  }
  return absl::OkStatus();
}

absl::Status LineRunner::AdmitAndKeep(LineScorer::FeaturesPtr features, uint64_t sequence,
                                      const std::string& encoded) {
  if (!state_dir_.empty()) {
    // Durable before the bank changes and before the answer: a restart finds every image the
    // bank held when it was answered.
    MUSC_RETURN_IF_ERROR(WriteFileAtomic(state_dir_, KeptImageName(sequence), encoded,
                                         "keep a line-mode bank image"));
  }
  MUSC_RETURN_IF_ERROR(scorer_->Admit(std::move(features)));
  if (state_dir_.empty()) return absl::OkStatus();
  kept_.push_back(sequence);
  while (kept_.size() > static_cast<size_t>(scorer_->bank_capacity())) {
    std::error_code ignored;  // A file left behind is removed by the next Restore.
    fs::remove(KeptImagePath(state_dir_, kept_.front()), ignored);
    kept_.pop_front();
  }
  return absl::OkStatus();
}

void LineRunner::KeepWindow() {
  if (state_dir_.empty()) return;
  const std::string text = absl::StrCat("next ", sequence_, "\n", decider_.SerializeWindow());
  if (absl::Status s = WriteFileAtomic(state_dir_, kWindowFile, text, "keep the decision window");
      !s.ok()) {
    LogWarning(absl::StrCat("line '", product_->name, "': ", s.message()));
  }
}

LineRunner::LineRunner(const ProductConfig* product, std::unique_ptr<LineScorer> scorer,
                       ServerMetrics* metrics, std::string state_dir)
    : product_(product),
      scorer_(std::move(scorer)),
      metrics_(metrics),
      decider_(product->decision),
      state_dir_(std::move(state_dir)) {
  thread_ = std::thread([this] { Loop(); });
}

LineRunner::~LineRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  thread_.join();
  // Nothing runs any more: answer whoever still waits rather than leave calls hanging.
  const absl::Status stopped =
      absl::UnavailableError("server is shutting down; the image was not scored, send it again");
  for (LineRequest& r : warmup_) r.done(stopped);
  for (LineRequest& r : queue_) r.done(stopped);
}

void LineRunner::Submit(LineRequest request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ && queue_.size() < kMaxQueued) {
      queue_.push_back(std::move(request));
      ready_.notify_one();
      return;
    }
  }
  request.done(stopping_ ? absl::UnavailableError("server is shutting down")
                         : absl::ResourceExhaustedError(absl::StrCat(
                               "line of product '", product_->name, "' has ", kMaxQueued,
                               " images waiting; it cannot keep up with this rate")));
}

void LineRunner::Loop() {
  SetCurrentThreadNice(kScoringNice);
  for (;;) {
    LineRequest request;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      request = std::move(queue_.front());
      queue_.pop_front();
    }
    Process(std::move(request));
  }
}

void LineRunner::Process(LineRequest request) {
  const SteadyClock::time_point start = SteadyClock::now();
  absl::StatusOr<LineScorer::FeaturesPtr> features = scorer_->Extract(ViewOf(request.pixels));
  if (!features.ok()) {
    request.done(features.status());
    return;
  }
  const bool warming_up = !warmup_.empty() || scorer_->bank_images() == 0;
  if (warming_up) {
    // The line's first images: they all join the bank and wait to be scored together.
    if (absl::Status s =
            AdmitAndKeep(*std::move(features), sequence_ + warmup_.size(), request.encoded);
        !s.ok()) {
      request.done(s);
      return;
    }
    warmup_.push_back(std::move(request));
    if (warmup_.size() >= product_->line->warmup_images) FinishWarmup();
    return;
  }
  absl::StatusOr<LineImageScore> score = scorer_->Score(**features);
  if (!score.ok()) {
    request.done(score.status());
    return;
  }
  const Decision decision = decider_.Decide(score->raw_score);
  const bool admit = product_->line->admit_anomalous || !decision.decided || !decision.is_anomalous;
  if (admit) {
    if (absl::Status s = AdmitAndKeep(*std::move(features), sequence_, request.encoded); !s.ok()) {
      request.done(s);
      return;
    }
  }
  decider_.Observe(score->raw_score, score->map, decision);
  v1::LineState state;
  state.set_compared_images(static_cast<uint32_t>(score->compared_images));
  state.set_admitted(admit);
  state.set_small_bank(score->small_bank);
  state.set_queue_seconds(std::chrono::duration<double>(start - request.arrival).count());
  state.set_score_seconds(SecondsSince(start));
  Answer(request, *score, decision, state);
}

void LineRunner::FinishWarmup() {
  const SteadyClock::time_point start = SteadyClock::now();
  std::vector<LineRequest> waiting = std::move(warmup_);
  warmup_.clear();
  absl::StatusOr<std::vector<LineImageScore>> scores = scorer_->ScoreBankAsBatch();
  if (!scores.ok()) {
    for (LineRequest& r : waiting) r.done(scores.status());
    return;
  }
  std::vector<float> raw;
  std::vector<absl::Span<const float>> maps;
  for (const LineImageScore& s : *scores) {
    raw.push_back(s.raw_score);
    maps.push_back(s.map);
  }
  const std::vector<Decision> decisions = DecideBatch(product_->decision, raw, maps);
  const double seconds = SecondsSince(start);
  for (size_t i = 0; i < waiting.size(); ++i) {
    const LineImageScore& score = (*scores)[i];
    decider_.Observe(score.raw_score, score.map, decisions[i]);
    v1::LineState state;
    state.set_compared_images(static_cast<uint32_t>(score.compared_images));
    state.set_warmup(true);
    state.set_admitted(true);
    state.set_small_bank(score.small_bank);
    state.set_queue_seconds(std::chrono::duration<double>(start - waiting[i].arrival).count());
    state.set_score_seconds(seconds);
    Answer(waiting[i], score, decisions[i], state);
  }
}

void LineRunner::Answer(LineRequest& request, const LineImageScore& score, const Decision& decision,
                        v1::LineState state) {
  v1::ScoreImageResponse response;
  state.set_bank_images(static_cast<uint32_t>(scorer_->bank_images()));
  const uint32_t index = static_cast<uint32_t>(sequence_++);
  KeepWindow();
  const int s = static_cast<int>(score.map_size);
  ScoredImage scored;
  scored.client_id = &request.client_id;
  scored.index = index;
  scored.raw_score = score.raw_score;
  // No RsCIN in a line (it needs a batch): the final score is the raw score.
  scored.final_score = score.raw_score;
  scored.metadata = &request.metadata;
  scored.decision = &decision;
  // Maps are always kept in a line (Create sets keep_maps), so the map is never empty here.
  scored.map = cv::Mat(s, s, CV_32FC1, const_cast<float*>(score.map.data()));
  scored.width = request.pixels.cols;
  scored.height = request.pixels.rows;
  absl::Status built =
      BuildImageResult(*product_, scored, request.map_options, metrics_, response.mutable_result());
  *response.mutable_line() = state;
  if (metrics_ != nullptr) {
    metrics_->LineImageScored(product_->name, SecondsSince(request.arrival), response.line(),
                              decision);
  }
  if (!built.ok()) {
    request.done(built);
    return;
  }
  request.done(std::move(response));
}

}  // namespace musc
