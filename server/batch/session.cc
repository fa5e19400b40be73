#include "server/batch/session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/results/result_builder.h"

namespace musc {
namespace {

void SetTimestamp(Clock::time_point t, google::protobuf::Timestamp* out) {
  if (t == Clock::time_point{}) return;
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

bool IsFinalState(v1::SessionState s) {
  return s == v1::DONE || s == v1::FAILED || s == v1::CANCELLED;
}

}  // namespace

Session::Session(std::string id, const ProductConfig* product, SealPolicyConfig policy,
                 std::map<std::string, std::string> labels, ServerMetrics* metrics,
                 Clock::time_point create_time)
    : id_(std::move(id)),
      product_(product),
      policy_(policy),
      labels_(std::move(labels)),
      create_time_(create_time == Clock::time_point{} ? Clock::now() : create_time),
      metrics_(metrics),
      last_activity_(create_time_) {}

std::shared_ptr<Session> Session::Restore(const SessionRecord& record, const ProductConfig* product,
                                          std::vector<SessionImage> images,
                                          std::vector<SessionResult> results, SessionStore* store,
                                          ServerMetrics* metrics) {
  auto session = std::make_shared<Session>(record.id, product, record.seal_policy, record.labels,
                                           metrics, record.create_time);
  for (const SessionImage& image : images) {
    session->client_ids_.insert(image.client_id);
    session->total_bytes_ += image.encoded_bytes;
  }
  session->images_ = std::move(images);
  session->state_ = record.state;
  session->error_ = record.error;
  session->small_batch_ = record.small_batch;
  session->seal_time_ = record.seal_time;
  session->start_time_ = record.start_time;
  session->finish_time_ = record.finish_time;
  session->results_ = std::move(results);
  session->timings_ = record.timings;
  session->last_activity_ = Clock::now();
  session->store_ = store;
  return session;
}

absl::Status Session::StoreIn(SessionStore* store) {
  SessionRecord record;
  {
    std::lock_guard<std::mutex> lock(mu_);
    record = RecordLocked();
  }
  MUSC_RETURN_IF_ERROR(store->CreateSession(record));
  store_ = store;
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Session::AddImage(SessionImage image, int64_t max_session_bytes,
                                           bool* reached_seal_count) {
  *reached_seal_count = false;
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != v1::OPEN) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", id_, " is ", v1::SessionState_Name(state_),
                     "; images can only be added while it is OPEN"));
  }
  if (client_ids_.count(image.client_id) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("image id '", image.client_id, "' was already accepted in session ", id_));
  }
  if (images_.size() >= product_->max_images) {
    if (metrics_ != nullptr) metrics_->LimitRefused("images_per_session");
    return absl::ResourceExhaustedError(absl::StrCat("session ", id_, " already holds ",
                                                     images_.size(), " images, the maximum for ",
                                                     "product '", product_->name, "'"));
  }
  if (total_bytes_ + image.encoded_bytes > max_session_bytes) {
    if (metrics_ != nullptr) metrics_->LimitRefused("session_bytes");
    return absl::ResourceExhaustedError(
        absl::StrCat("session ", id_, " would exceed its limit of ", max_session_bytes, " bytes"));
  }
  image.index = static_cast<uint32_t>(images_.size());
  image.width = image.pixels.cols;
  image.height = image.pixels.rows;
  // Durable before it is counted (and so before it is acknowledged): an image the store refuses
  // was never accepted.
  if (store_ != nullptr) MUSC_RETURN_IF_ERROR(store_->AppendImage(id_, image));
  std::string().swap(image.encoded);  // Decoded pixels are what scoring needs.
  total_bytes_ += image.encoded_bytes;
  client_ids_.insert(image.client_id);
  const uint32_t index = image.index;
  images_.push_back(std::move(image));
  last_activity_ = Clock::now();
  *reached_seal_count = policy_.at_count > 0 && images_.size() == policy_.at_count;
  return index;
}

absl::Status Session::Seal() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == v1::SEALED || state_ == v1::RUNNING || state_ == v1::DONE) {
      return absl::OkStatus();
    }
    if (state_ != v1::OPEN) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", id_, " is ", v1::SessionState_Name(state_), " and cannot be sealed"));
    }
    if (images_.size() < product_->min_images) {
      return absl::FailedPreconditionError(
          absl::StrCat("session ", id_, " has ", images_.size(), " image(s); product '",
                       product_->name, "' needs at least ", product_->min_images,
                       " because MuSc scores each image against the others of its batch"));
    }
    state_ = v1::SEALED;
    seal_time_ = Clock::now();
    // A seal that is acknowledged survives a restart (the batch is queued again).
    if (absl::Status s = PersistLocked(); !s.ok()) {
      state_ = v1::OPEN;
      seal_time_ = {};
      return s;
    }
  }
  NotifyWatchers();
  return absl::OkStatus();
}

void Session::Unseal() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != v1::SEALED) return;
    state_ = v1::OPEN;
    seal_time_ = {};
    // If this write fails the store still says SEALED: a restart queues the batch, which is safe.
    PersistLocked().IgnoreError();
  }
  NotifyWatchers();
}

absl::Status Session::Cancel(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == v1::CANCELLED) return absl::OkStatus();
    if (IsFinalState(state_)) {
      return absl::FailedPreconditionError(
          absl::StrCat("session ", id_, " is already ", v1::SessionState_Name(state_)));
    }
    const bool running = state_ == v1::RUNNING;
    state_ = v1::CANCELLED;
    error_ = reason;
    finish_time_ = Clock::now();
    CountFinishedLocked();
    PersistLocked().IgnoreError();  // Logged and counted; memory is the truth until restart.
    // A running batch still reads the pixels; the worker releases them when it stops.
    if (!running) ReleasePixelsLocked();
  }
  NotifyWatchers();
  return absl::OkStatus();
}

bool Session::MarkRunning() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != v1::SEALED) return false;
    state_ = v1::RUNNING;
    start_time_ = Clock::now();
  }
  NotifyWatchers();
  return true;
}

void Session::SetProgress(const std::string& stage, uint32_t done, uint32_t total) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stage_ = stage;
    progress_done_ = done;
    progress_total_ = total;
    ++progress_version_;
  }
  NotifyWatchers();
}

void Session::Complete(std::vector<SessionResult> results, const v1::StageTimings& timings,
                       bool small_batch) {
  // Results first and outside the lock (maps can be large): the record says DONE only once they
  // are on disk. If they cannot be written the store still says SEALED and a restart rescores.
  bool results_stored = false;
  if (store_ != nullptr && !results.empty() && state() == v1::RUNNING) {
    results_stored = store_->WriteResults(id_, results).ok();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == v1::RUNNING) {
      results_ = std::move(results);
      timings_ = timings;
      small_batch_ = small_batch;
      state_ = v1::DONE;
      stage_.clear();
      finish_time_ = Clock::now();
      CountFinishedLocked();
      if (results_stored) PersistLocked().IgnoreError();
    }
    ReleasePixelsLocked();
  }
  NotifyWatchers();
}

void Session::Fail(const std::string& error, bool persist) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == v1::RUNNING || state_ == v1::SEALED) {
      state_ = v1::FAILED;
      error_ = error;
      finish_time_ = Clock::now();
      CountFinishedLocked();
      if (persist) PersistLocked().IgnoreError();
    }
    ReleasePixelsLocked();
  }
  NotifyWatchers();
}

SessionRecord Session::RecordLocked() const {
  SessionRecord record;
  record.id = id_;
  record.product = product_->name;
  record.seal_policy = policy_;
  record.labels = labels_;
  record.state = state_;
  record.error = error_;
  record.create_time = create_time_;
  record.seal_time = seal_time_;
  record.start_time = start_time_;
  record.finish_time = finish_time_;
  record.image_count = images_.size();
  record.small_batch = small_batch_;
  record.timings = timings_;
  return record;
}

absl::Status Session::PersistLocked() {
  return store_ == nullptr ? absl::OkStatus() : store_->UpdateState(RecordLocked());
}

void Session::CountFinishedLocked() {
  if (metrics_ != nullptr) metrics_->SessionFinished(product_->name, state_);
}

void Session::NoteServedLocked(size_t k) {
  if (metrics_ == nullptr || seal_time_ == Clock::time_point{}) return;
  if (served_.size() < results_.size()) served_.resize(results_.size(), false);
  if (served_[k]) return;
  served_[k] = true;
  ++served_count_;
  const double since_seal = std::chrono::duration<double>(Clock::now() - seal_time_).count();
  if (served_count_ == 1) metrics_->FirstResultServed(product_->name, since_seal);
  if (served_count_ == results_.size() && state_ == v1::DONE) {
    metrics_->LastResultServed(product_->name, since_seal);
  }
}

void Session::ReleasePixelsLocked() {
  for (SessionImage& image : images_) image.pixels.release();
}

bool Session::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == v1::CANCELLED;
}

v1::SessionState Session::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

size_t Session::image_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return images_.size();
}

bool Session::IsFinal() const { return IsFinalState(state()); }

Clock::time_point Session::last_activity() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_activity_;
}

Clock::time_point Session::seal_time() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seal_time_;
}

Clock::time_point Session::finish_time() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finish_time_;
}

v1::Session Session::ToProto() const {
  std::lock_guard<std::mutex> lock(mu_);
  v1::Session out;
  out.set_id(id_);
  out.set_product(product_->name);
  out.set_state(state_);
  out.set_image_count(static_cast<uint32_t>(images_.size()));
  out.set_result_count(static_cast<uint32_t>(results_.size()));
  if (state_ == v1::DONE) {
    out.set_progress(1.0);
  } else if (state_ == v1::RUNNING && progress_total_ > 0) {
    out.set_progress(static_cast<double>(progress_done_) / progress_total_);
  }
  out.set_stage(stage_);
  out.mutable_seal_policy()->set_at_count(policy_.at_count);
  out.mutable_seal_policy()->set_idle_seconds(policy_.idle_seconds);
  for (const auto& [k, v] : labels_) (*out.mutable_labels())[k] = v;
  out.set_error(error_);
  SetTimestamp(create_time_, out.mutable_create_time());
  SetTimestamp(seal_time_, out.mutable_seal_time());
  SetTimestamp(start_time_, out.mutable_start_time());
  SetTimestamp(finish_time_, out.mutable_finish_time());
  if (state_ == v1::DONE) *out.mutable_timings() = timings_;
  out.set_small_batch(small_batch_);
  return out;
}

Session::Snapshot Session::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {state_, results_.size(), stage_, progress_done_, progress_total_, progress_version_};
}

absl::Status Session::BuildResult(size_t k, const v1::MapOptions& options, v1::ImageResult* out) {
  // Results and images are immutable once the session is DONE, so the result is built outside
  // the lock (the map encoding is the slow part) from data that cannot change.
  const SessionResult* result;
  const SessionImage* image;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (k >= results_.size()) return absl::OutOfRangeError("no such result");
    result = &results_[k];
    image = &images_[result->index];
    NoteServedLocked(k);
  }
  ScoredImage scored;
  scored.client_id = &image->client_id;
  scored.index = result->index;
  scored.raw_score = result->raw_score;
  scored.final_score = result->final_score;
  scored.metadata = &image->metadata;
  scored.decision = &result->decision;
  scored.map = result->map;
  scored.width = image->width;
  scored.height = image->height;
  return BuildImageResult(*product_, scored, options, metrics_, out);
}

void Session::AddWatcher(std::weak_ptr<SessionWatcher> watcher) {
  std::lock_guard<std::mutex> lock(mu_);
  // Drop watchers whose streams have ended while we are here.
  watchers_.erase(
      std::remove_if(watchers_.begin(), watchers_.end(), [](const auto& w) { return w.expired(); }),
      watchers_.end());
  watchers_.push_back(std::move(watcher));
}

void Session::NotifyWatchers() {
  std::vector<std::shared_ptr<SessionWatcher>> alive;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& w : watchers_) {
      if (auto s = w.lock()) alive.push_back(std::move(s));
    }
  }
  for (const auto& w : alive) w->OnSessionChanged();
}

}  // namespace musc
