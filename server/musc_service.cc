#include "server/musc_service.h"

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/image_assembler.h"

namespace musc {
namespace {

// Pending acknowledgements beyond which a stream stops reading until the client catches up.
constexpr size_t kMaxPendingAcks = 64;

// absl and gRPC share the canonical status codes.
grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpc(s));
  return reactor;
}

const absl::Status& WarmingUp() {
  static const absl::Status* const status = new absl::Status(
      absl::UnavailableError("musc-server is loading and warming up its backbones; retry shortly"));
  return *status;
}

// A streaming reactor that only reports an error.
template <typename Base>
class ErrorReactor final : public Base {
 public:
  explicit ErrorReactor(const absl::Status& s) { this->Finish(ToGrpc(s)); }
  void OnDone() override { delete this; }
};

// Where a results stream is: everything before `next_result` was sent.
struct ResultCursor {
  size_t next_result = 0;
  uint64_t progress_version_sent = 0;
};

// The next event a results stream should send, if any is ready. *is_final is set for the
// closing SessionFinished event.
absl::Status NextResultEvent(Session& session, const v1::MapOptions& options,
                             ResultCursor& cursor, std::optional<v1::ResultEvent>* event,
                             bool* is_final) {
  *is_final = false;
  event->reset();
  const Session::Snapshot snap = session.snapshot();
  if (cursor.next_result < snap.result_count) {
    v1::ResultEvent e;
    if (absl::Status s = session.BuildResult(cursor.next_result, options, e.mutable_result());
        !s.ok()) {
      return s;
    }
    ++cursor.next_result;
    *event = std::move(e);
    return absl::OkStatus();
  }
  if (snap.state == v1::DONE || snap.state == v1::FAILED || snap.state == v1::CANCELLED) {
    v1::ResultEvent e;
    *e.mutable_finished()->mutable_session() = session.ToProto();
    *event = std::move(e);
    *is_final = true;
    return absl::OkStatus();
  }
  if (snap.state == v1::RUNNING && snap.progress_version != cursor.progress_version_sent) {
    cursor.progress_version_sent = snap.progress_version;
    v1::ResultEvent e;
    e.mutable_progress()->set_stage(snap.stage);
    e.mutable_progress()->set_done(snap.progress_done);
    e.mutable_progress()->set_total(snap.progress_total);
    *event = std::move(e);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// StreamResults: writes are driven by OnWriteDone and by session changes; at most one in flight.
class ResultsReactor final : public grpc::ServerWriteReactor<v1::ResultEvent>,
                             public SessionWatcher,
                             public std::enable_shared_from_this<ResultsReactor> {
 public:
  ResultsReactor(std::shared_ptr<Session> session, v1::MapOptions options)
      : session_(std::move(session)), options_(std::move(options)) {}

  // The reactor owns itself until OnDone; the session holds it weakly.
  void Begin() {
    self_ = shared_from_this();
    session_->AddWatcher(self_);
    Pump();
  }

  void OnSessionChanged() override { Pump(); }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      if (final_written_) return FinishLocked(grpc::Status::OK);
      if (cancelled_) return FinishLocked(grpc::Status::CANCELLED);
    }
    Pump();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    // Released outside any lock; the object may live on briefly in a notifying thread.
    std::shared_ptr<ResultsReactor> keep = std::move(self_);
  }

 private:
  void Pump() {
    std::unique_lock<std::mutex> lock(mu_);
    if (writing_ || finish_called_ || cancelled_) return;
    std::optional<v1::ResultEvent> event;
    bool is_final = false;
    if (absl::Status s = NextResultEvent(*session_, options_, cursor_, &event, &is_final);
        !s.ok()) {
      return FinishLocked(ToGrpc(s));
    }
    if (!event) return;  // Nothing new; a session change will call again.
    event_ = *std::move(event);
    final_written_ = is_final;
    writing_ = true;
    lock.unlock();
    StartWrite(&event_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finish_called_) return;
    finish_called_ = true;
    Finish(status);
  }

  const std::shared_ptr<Session> session_;
  const v1::MapOptions options_;
  std::shared_ptr<ResultsReactor> self_;
  std::mutex mu_;
  ResultCursor cursor_;
  v1::ResultEvent event_;
  bool writing_ = false;
  bool final_written_ = false;
  bool cancelled_ = false;
  bool finish_called_ = false;
};

// ---------------------------------------------------------------------------------------------
// AddImages: reads chunks, answers one ImageAck per image; back-pressure pauses reading while too
// many acknowledgements wait for the client.
class UploadReactor final : public grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck> {
 public:
  UploadReactor(SessionManager* sessions, DecodeLimits limits)
      : sessions_(sessions), assembler_(sessions, limits) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    bool read_more = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_called_) return;
      if (!ok) {
        read_done_ = true;
        for (v1::ImageAck& ack : assembler_.Finish()) acks_.push_back(std::move(ack));
      } else if (absl::Status s = Accept(); !s.ok()) {
        read_done_ = true;
        final_status_ = ToGrpc(s);
      } else {
        read_more = acks_.size() < kMaxPendingAcks;
        read_paused_ = !read_more;
      }
    }
    if (read_more) StartRead(&request_);
    Pump();
  }

  void OnWriteDone(bool ok) override {
    bool resume = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      if (read_paused_ && acks_.size() < kMaxPendingAcks && !read_done_) {
        read_paused_ = false;
        resume = true;
      }
    }
    if (resume) StartRead(&request_);
    Pump();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
    read_done_ = true;
  }

  void OnDone() override { delete this; }

 private:
  // Handles request_ (under mu_). A non-OK status ends the stream.
  absl::Status Accept() {
    if (session_ == nullptr) {
      if (request_.session_id().empty()) {
        return absl::InvalidArgumentError("the first AddImages message must carry session_id");
      }
      absl::StatusOr<std::shared_ptr<Session>> session = sessions_->Get(request_.session_id());
      if (!session.ok()) return session.status();
      session_ = *std::move(session);
    } else if (!request_.session_id().empty() && request_.session_id() != session_->id()) {
      return absl::InvalidArgumentError(absl::StrCat("session_id changed within the stream (",
                                                     session_->id(), " → ", request_.session_id(),
                                                     ")"));
    }
    for (v1::ImageAck& ack : assembler_.Feed(request_, *session_)) acks_.push_back(std::move(ack));
    return absl::OkStatus();
  }

  void Pump() {
    std::unique_lock<std::mutex> lock(mu_);
    if (writing_ || finish_called_) return;
    if (!acks_.empty()) {
      ack_ = std::move(acks_.front());
      acks_.pop_front();
      writing_ = true;
      lock.unlock();
      StartWrite(&ack_);
      return;
    }
    if (read_done_) FinishLocked(final_status_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finish_called_) return;
    finish_called_ = true;
    Finish(status);
  }

  SessionManager* const sessions_;
  std::mutex mu_;
  ImageAssembler assembler_;
  std::shared_ptr<Session> session_;
  v1::AddImagesRequest request_;
  v1::ImageAck ack_;
  std::deque<v1::ImageAck> acks_;
  grpc::Status final_status_ = grpc::Status::OK;
  bool writing_ = false;
  bool read_done_ = false;
  bool read_paused_ = false;
  bool finish_called_ = false;
};

// ---------------------------------------------------------------------------------------------
// Inspect: start message, images (acknowledged as ResultEvent.ack), half-close seals, then the
// results as in StreamResults.
class InspectReactor final : public grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>,
                             public SessionWatcher,
                             public std::enable_shared_from_this<InspectReactor> {
 public:
  InspectReactor(SessionManager* sessions, DecodeLimits limits)
      : sessions_(sessions), assembler_(sessions, limits) {}

  void Begin() {
    self_ = shared_from_this();
    StartRead(&request_);
  }

  void OnSessionChanged() override { Pump(); }

  void OnReadDone(bool ok) override {
    bool read_more = false;
    bool seal = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_called_) return;
      if (!ok) {
        read_done_ = true;
        for (v1::ImageAck& ack : assembler_.Finish()) PushAck(std::move(ack));
        seal = session_ != nullptr && !cancelled_;
        sealing_ = seal;  // Until the seal's outcome is known, the stream must not finish.
        if (session_ == nullptr) {
          final_status_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                       "Inspect stream ended without a start message");
        }
      } else if (absl::Status s = Accept(); !s.ok()) {
        read_done_ = true;
        final_status_ = ToGrpc(s);
        if (session_ != nullptr) session_->Cancel(std::string(s.message())).IgnoreError();
      } else {
        read_more = pending_.size() < kMaxPendingAcks;
        read_paused_ = !read_more;
      }
    }
    if (seal) {
      const absl::Status s = sessions_->Seal(session_);
      {
        std::lock_guard<std::mutex> lock(mu_);
        results_phase_ = s.ok();
        sealing_ = false;
        if (!s.ok()) final_status_ = ToGrpc(s);
      }
      if (s.ok()) {
        session_->AddWatcher(self_);
      } else {
        session_->Cancel(absl::StrCat("Inspect could not seal: ", s.message())).IgnoreError();
      }
    }
    if (read_more) StartRead(&request_);
    Pump();
  }

  void OnWriteDone(bool ok) override {
    bool resume = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      if (final_written_) return FinishLocked(grpc::Status::OK);
      if (read_paused_ && pending_.size() < kMaxPendingAcks && !read_done_) {
        read_paused_ = false;
        resume = true;
      }
    }
    if (resume) StartRead(&request_);
    Pump();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    read_done_ = true;
    // Images of a batch the client abandoned before sealing will never be scored.
    if (session_ != nullptr && !results_phase_) {
      session_->Cancel("Inspect stream cancelled by the client").IgnoreError();
    }
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override { std::shared_ptr<InspectReactor> keep = std::move(self_); }

 private:
  void PushAck(v1::ImageAck ack) {
    v1::ResultEvent event;
    *event.mutable_ack() = std::move(ack);
    pending_.push_back(std::move(event));
  }

  absl::Status Accept() {
    if (session_ == nullptr) {
      if (!request_.has_start()) {
        return absl::InvalidArgumentError("the first Inspect message must be `start`");
      }
      absl::StatusOr<std::shared_ptr<Session>> session =
          sessions_->Create(request_.start().product(), SealPolicyConfig{},
                            {request_.start().labels().begin(), request_.start().labels().end()});
      if (!session.ok()) return session.status();
      session_ = *std::move(session);
      options_ = request_.start().map_options();
      return absl::OkStatus();
    }
    if (!request_.has_image()) {
      return absl::InvalidArgumentError("after `start`, Inspect messages must carry `image`");
    }
    for (v1::ImageAck& ack : assembler_.Feed(request_.image(), *session_)) {
      PushAck(std::move(ack));
    }
    return absl::OkStatus();
  }

  void Pump() {
    std::unique_lock<std::mutex> lock(mu_);
    if (writing_ || finish_called_) return;
    if (!pending_.empty()) {
      event_ = std::move(pending_.front());
      pending_.pop_front();
    } else if (results_phase_ && !cancelled_) {
      std::optional<v1::ResultEvent> event;
      bool is_final = false;
      if (absl::Status s = NextResultEvent(*session_, options_, cursor_, &event, &is_final);
          !s.ok()) {
        return FinishLocked(ToGrpc(s));
      }
      if (!event) return;
      event_ = *std::move(event);
      final_written_ = is_final;
    } else {
      if (read_done_ && !results_phase_ && !sealing_) FinishLocked(final_status_);
      return;
    }
    writing_ = true;
    lock.unlock();
    StartWrite(&event_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finish_called_) return;
    finish_called_ = true;
    Finish(status);
  }

  SessionManager* const sessions_;
  std::shared_ptr<InspectReactor> self_;
  std::mutex mu_;
  ImageAssembler assembler_;
  std::shared_ptr<Session> session_;
  v1::MapOptions options_;
  v1::InspectRequest request_;
  v1::ResultEvent event_;
  std::deque<v1::ResultEvent> pending_;
  ResultCursor cursor_;
  grpc::Status final_status_ = grpc::Status::OK;
  bool results_phase_ = false;
  bool sealing_ = false;
  bool writing_ = false;
  bool final_written_ = false;
  bool read_done_ = false;
  bool read_paused_ = false;
  bool cancelled_ = false;
  bool finish_called_ = false;
};

}  // namespace

grpc::ServerUnaryReactor* MuscServiceImpl::ListProducts(grpc::CallbackServerContext* context,
                                                        const v1::ListProductsRequest*,
                                                        v1::ListProductsResponse* response) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return Reply(context, WarmingUp());
  for (const ProductConfig& p : sessions->products()) {
    ProductToProto(p, response->add_products());
  }
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::GetProduct(grpc::CallbackServerContext* context,
                                                      const v1::GetProductRequest* request,
                                                      v1::Product* response) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return Reply(context, WarmingUp());
  const ProductConfig* p = sessions->FindProduct(request->name());
  if (p == nullptr) {
    return Reply(context,
                 absl::NotFoundError(absl::StrCat("unknown product '", request->name(), "'")));
  }
  ProductToProto(*p, response);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::CreateSession(grpc::CallbackServerContext* context,
                                                         const v1::CreateSessionRequest* request,
                                                         v1::Session* response) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return Reply(context, WarmingUp());
  std::optional<SealPolicyConfig> policy;
  if (request->has_seal_policy()) {
    policy =
        SealPolicyConfig{request->seal_policy().at_count(), request->seal_policy().idle_seconds()};
  }
  absl::StatusOr<std::shared_ptr<Session>> session = sessions->Create(
      request->product(), policy, {request->labels().begin(), request->labels().end()});
  if (!session.ok()) return Reply(context, session.status());
  *response = (*session)->ToProto();
  return Reply(context, absl::OkStatus());
}

grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck>* MuscServiceImpl::AddImages(
    grpc::CallbackServerContext*) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) {
    return new ErrorReactor<grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck>>(
        WarmingUp());
  }
  return new UploadReactor(sessions, decode_limits_);
}

grpc::ServerUnaryReactor* MuscServiceImpl::SealSession(grpc::CallbackServerContext* context,
                                                       const v1::SealSessionRequest* request,
                                                       v1::Session* response) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return Reply(context, WarmingUp());
  absl::StatusOr<std::shared_ptr<Session>> session = sessions->Get(request->session_id());
  if (!session.ok()) return Reply(context, session.status());
  if (absl::Status s = sessions->Seal(*session); !s.ok()) return Reply(context, s);
  *response = (*session)->ToProto();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::CancelSession(grpc::CallbackServerContext* context,
                                                         const v1::CancelSessionRequest* request,
                                                         v1::Session* response) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return Reply(context, WarmingUp());
  absl::StatusOr<std::shared_ptr<Session>> session = sessions->Get(request->session_id());
  if (!session.ok()) return Reply(context, session.status());
  if (absl::Status s = (*session)->Cancel("cancelled by a client"); !s.ok()) {
    return Reply(context, s);
  }
  *response = (*session)->ToProto();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::GetSession(grpc::CallbackServerContext* context,
                                                      const v1::GetSessionRequest* request,
                                                      v1::Session* response) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return Reply(context, WarmingUp());
  absl::StatusOr<std::shared_ptr<Session>> session = sessions->Get(request->session_id());
  if (!session.ok()) return Reply(context, session.status());
  *response = (*session)->ToProto();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::ListSessions(grpc::CallbackServerContext* context,
                                                        const v1::ListSessionsRequest* request,
                                                        v1::ListSessionsResponse* response) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return Reply(context, WarmingUp());
  std::vector<v1::SessionState> states;
  for (int s : request->states()) states.push_back(static_cast<v1::SessionState>(s));
  for (const auto& session : sessions->List(request->product(), states)) {
    *response->add_sessions() = session->ToProto();
  }
  return Reply(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::ResultEvent>* MuscServiceImpl::StreamResults(
    grpc::CallbackServerContext*, const v1::StreamResultsRequest* request) {
  using WriteError = ErrorReactor<grpc::ServerWriteReactor<v1::ResultEvent>>;
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) return new WriteError(WarmingUp());
  absl::StatusOr<std::shared_ptr<Session>> session = sessions->Get(request->session_id());
  if (!session.ok()) return new WriteError(session.status());
  auto reactor = std::make_shared<ResultsReactor>(*session, request->map_options());
  reactor->Begin();
  return reactor.get();
}

grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>* MuscServiceImpl::Inspect(
    grpc::CallbackServerContext*) {
  SessionManager* const sessions = sessions_.load();
  if (sessions == nullptr) {
    return new ErrorReactor<grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>>(
        WarmingUp());
  }
  auto reactor = std::make_shared<InspectReactor>(sessions, decode_limits_);
  reactor->Begin();
  return reactor.get();
}

}  // namespace musc
