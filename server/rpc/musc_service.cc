#include "server/rpc/musc_service.h"

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/images/image_assembler.h"
#include "server/log.h"

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

// The caller of one RPC, as authenticated, and the checks on what it may do. Refusals are
// counted in musc_auth_failures_total and logged at debug level by the entry's name only.
class Caller {
 public:
  Caller(Principal principal, ServerMetrics* metrics)
      : principal_(std::move(principal)), metrics_(metrics) {}

  // PERMISSION_DENIED unless the caller holds `permission` on `product`.
  absl::Status May(Permission permission, const std::string& product) const {
    absl::Status s = Authorize(principal_, permission, product);
    if (!s.ok()) {
      if (metrics_ != nullptr) metrics_->AuthFailure("permission_denied");
      LogDebug(absl::StrCat("permission denied: ", s.message()));
    }
    return s;
  }
  // Whether listings may show `product` (and its sessions) to the caller.
  bool Sees(const std::string& product) const { return principal_.MaySee(product); }

 private:
  Principal principal_;
  ServerMetrics* metrics_;
};

// UNAUTHENTICATED unless authentication is off (everyone is then an anonymous admin) or the call
// carries a configured token. Called after the warming-up check, so that orchestrators and
// clients without a token see UNAVAILABLE, not UNAUTHENTICATED, while the server loads.
absl::StatusOr<Caller> Authenticate(const Authenticator* authenticator,
                                    const grpc::CallbackServerContext& context,
                                    const SessionManager& sessions) {
  if (authenticator == nullptr) {
    Principal anonymous;
    anonymous.name = "anonymous";
    return Caller(std::move(anonymous), sessions.metrics());
  }
  absl::StatusOr<Principal> principal = authenticator->Authenticate(context);
  if (!principal.ok()) {
    if (sessions.metrics() != nullptr) sessions.metrics()->AuthFailure("unauthenticated");
    LogDebug(absl::StrCat("unauthenticated call from ", context.peer(), ": ",
                          principal.status().message()));
    return principal.status();
  }
  return Caller(*std::move(principal), sessions.metrics());
}

// Every RPC's first step: UNAVAILABLE while the server loads (so orchestrators and token-less
// clients see "warming up", not UNAUTHENTICATED), then the caller's credentials. Sets *sessions.
absl::StatusOr<Caller> Enter(const std::atomic<SessionManager*>& active,
                             const Authenticator* authenticator,
                             const grpc::CallbackServerContext& context,
                             SessionManager** sessions) {
  *sessions = active.load();
  if (*sessions == nullptr) return WarmingUp();
  return Authenticate(authenticator, context, **sessions);
}

// The product part of a session id "<product>:<hex>"; empty without a ':'.
std::string SessionIdProduct(const std::string& id) {
  const size_t colon = id.rfind(':');
  return colon == std::string::npos ? std::string() : id.substr(0, colon);
}

// The session `id` for a caller that needs `permission` on its product. The permission is decided
// from the id's product prefix before the lookup: a caller without access to that product gets
// PERMISSION_DENIED whether or not the session exists, so it learns nothing about another
// product's sessions (and an id without a prefix cannot exist: NOT_FOUND). The prefix is
// authoritative because ids are minted by this server; the real product is checked after the
// lookup all the same.
absl::StatusOr<std::shared_ptr<Session>> FindSession(const SessionManager& sessions,
                                                     const Caller& caller, Permission permission,
                                                     const std::string& id) {
  const std::string prefix = SessionIdProduct(id);
  if (!prefix.empty()) {
    if (absl::Status s = caller.May(permission, prefix); !s.ok()) return s;
  }
  absl::StatusOr<std::shared_ptr<Session>> session = sessions.Get(id);
  if (!session.ok()) return session.status();
  if (absl::Status s = caller.May(permission, (*session)->product().name); !s.ok()) return s;
  return session;
}

// One of --max_concurrent_streams, held by a streaming reactor and released when it is destroyed.
class StreamSlot {
 public:
  explicit StreamSlot(std::atomic<int>* open) : open_(open) {}
  StreamSlot(StreamSlot&& other) noexcept : open_(std::exchange(other.open_, nullptr)) {}
  StreamSlot& operator=(StreamSlot&&) = delete;
  ~StreamSlot() {
    if (open_ != nullptr) open_->fetch_sub(1);
  }

 private:
  std::atomic<int>* open_;
};

// A slot for a new stream, or RESOURCE_EXHAUSTED when `max` streams are open (0 = no limit).
// Refusing at the start is cheap for the server and clear for the client, unlike a stream that
// is accepted and then starved.
absl::StatusOr<StreamSlot> AcquireStream(std::atomic<int>& open, int max,
                                         const SessionManager& sessions) {
  const int before = open.fetch_add(1);
  StreamSlot slot(&open);
  if (max > 0 && before >= max) {
    if (sessions.metrics() != nullptr) sessions.metrics()->LimitRefused("concurrent_streams");
    return absl::ResourceExhaustedError(
        absl::StrCat("the server has ", max,
                     " streams open, its maximum (--max_concurrent_streams); retry later"));
  }
  return slot;
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
absl::Status NextResultEvent(Session& session, const v1::MapOptions& options, ResultCursor& cursor,
                             std::optional<v1::ResultEvent>* event, bool* is_final) {
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
  ResultsReactor(std::shared_ptr<Session> session, v1::MapOptions options, StreamSlot slot)
      : session_(std::move(session)), options_(std::move(options)), slot_(std::move(slot)) {}

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
  const StreamSlot slot_;
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
  UploadReactor(SessionManager* sessions, DecodeLimits limits, Caller caller, StreamSlot slot)
      : sessions_(sessions),
        caller_(std::move(caller)),
        slot_(std::move(slot)),
        assembler_(sessions, limits) {
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
      absl::StatusOr<std::shared_ptr<Session>> session =
          FindSession(*sessions_, caller_, Permission::kSubmit, request_.session_id());
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
  const Caller caller_;
  const StreamSlot slot_;
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
  InspectReactor(SessionManager* sessions, DecodeLimits limits, Caller caller, StreamSlot slot)
      : sessions_(sessions),
        caller_(std::move(caller)),
        slot_(std::move(slot)),
        assembler_(sessions, limits) {}

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
      if (absl::Status s = caller_.May(Permission::kSubmit, request_.start().product()); !s.ok()) {
        return s;
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
  const Caller caller_;
  const StreamSlot slot_;
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
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  for (const ProductConfig& p : sessions->products()) {
    if (caller->Sees(p.name)) ProductToProto(p, response->add_products());
  }
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::GetProduct(grpc::CallbackServerContext* context,
                                                      const v1::GetProductRequest* request,
                                                      v1::Product* response) {
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  // Authorised before the lookup, so a caller learns nothing about products it is not granted.
  if (absl::Status s = caller->May(Permission::kRead, request->name()); !s.ok()) {
    return Reply(context, s);
  }
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
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  if (absl::Status s = caller->May(Permission::kSubmit, request->product()); !s.ok()) {
    return Reply(context, s);
  }
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
    grpc::CallbackServerContext* context) {
  using UploadError = ErrorReactor<grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck>>;
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return new UploadError(caller.status());
  absl::StatusOr<StreamSlot> slot =
      AcquireStream(open_streams_, guards_.max_concurrent_streams, *sessions);
  if (!slot.ok()) return new UploadError(slot.status());
  // The session (and so the product to authorise) arrives with the first message.
  return new UploadReactor(sessions, decode_limits_, *std::move(caller), *std::move(slot));
}

grpc::ServerUnaryReactor* MuscServiceImpl::SealSession(grpc::CallbackServerContext* context,
                                                       const v1::SealSessionRequest* request,
                                                       v1::Session* response) {
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  absl::StatusOr<std::shared_ptr<Session>> session =
      FindSession(*sessions, *caller, Permission::kSubmit, request->session_id());
  if (!session.ok()) return Reply(context, session.status());
  if (absl::Status s = sessions->Seal(*session); !s.ok()) return Reply(context, s);
  *response = (*session)->ToProto();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::CancelSession(grpc::CallbackServerContext* context,
                                                         const v1::CancelSessionRequest* request,
                                                         v1::Session* response) {
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  absl::StatusOr<std::shared_ptr<Session>> session =
      FindSession(*sessions, *caller, Permission::kSubmit, request->session_id());
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
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  absl::StatusOr<std::shared_ptr<Session>> session =
      FindSession(*sessions, *caller, Permission::kRead, request->session_id());
  if (!session.ok()) return Reply(context, session.status());
  *response = (*session)->ToProto();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* MuscServiceImpl::ListSessions(grpc::CallbackServerContext* context,
                                                        const v1::ListSessionsRequest* request,
                                                        v1::ListSessionsResponse* response) {
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  // Naming a product the caller is not granted is refused; listing all is confined to its own.
  if (!request->product().empty()) {
    if (absl::Status s = caller->May(Permission::kRead, request->product()); !s.ok()) {
      return Reply(context, s);
    }
  }
  std::vector<v1::SessionState> states;
  for (int s : request->states()) states.push_back(static_cast<v1::SessionState>(s));
  for (const auto& session : sessions->List(request->product(), states)) {
    if (caller->Sees(session->product().name)) *response->add_sessions() = session->ToProto();
  }
  return Reply(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::ResultEvent>* MuscServiceImpl::StreamResults(
    grpc::CallbackServerContext* context, const v1::StreamResultsRequest* request) {
  using WriteError = ErrorReactor<grpc::ServerWriteReactor<v1::ResultEvent>>;
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return new WriteError(caller.status());
  absl::StatusOr<std::shared_ptr<Session>> session =
      FindSession(*sessions, *caller, Permission::kRead, request->session_id());
  if (!session.ok()) return new WriteError(session.status());
  absl::StatusOr<StreamSlot> slot =
      AcquireStream(open_streams_, guards_.max_concurrent_streams, *sessions);
  if (!slot.ok()) return new WriteError(slot.status());
  auto reactor =
      std::make_shared<ResultsReactor>(*session, request->map_options(), *std::move(slot));
  reactor->Begin();
  return reactor.get();
}

grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>* MuscServiceImpl::Inspect(
    grpc::CallbackServerContext* context) {
  using InspectError = ErrorReactor<grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>>;
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return new InspectError(caller.status());
  absl::StatusOr<StreamSlot> slot =
      AcquireStream(open_streams_, guards_.max_concurrent_streams, *sessions);
  if (!slot.ok()) return new InspectError(slot.status());
  // The product to authorise arrives with the start message.
  auto reactor = std::make_shared<InspectReactor>(sessions, decode_limits_, *std::move(caller),
                                                  *std::move(slot));
  reactor->Begin();
  return reactor.get();
}

grpc::ServerUnaryReactor* MuscServiceImpl::ScoreImage(grpc::CallbackServerContext* context,
                                                      const v1::ScoreImageRequest* request,
                                                      v1::ScoreImageResponse* response) {
  SessionManager* sessions = nullptr;
  absl::StatusOr<Caller> caller = Enter(sessions_, guards_.authenticator, *context, &sessions);
  if (!caller.ok()) return Reply(context, caller.status());
  if (absl::Status s = caller->May(Permission::kSubmit, request->product()); !s.ok()) {
    return Reply(context, s);
  }
  const ProductConfig* product = sessions->FindProduct(request->product());
  if (product == nullptr) {
    return Reply(context,
                 absl::NotFoundError(absl::StrCat("unknown product '", request->product(), "'")));
  }
  const LineRunners* lines = lines_.load();
  const auto runner = lines == nullptr ? LineRunners::const_iterator() : lines->find(product->name);
  if (lines == nullptr || runner == lines->end()) {
    return Reply(context, absl::FailedPreconditionError(absl::StrCat(
                              "product '", product->name,
                              "' has no line mode: give it a `line` section in the products file "
                              "(docs/LINE_MODE.md), or use batch sessions")));
  }
  if (request->client_image_id().empty()) {
    return Reply(context, absl::InvalidArgumentError("client_image_id is required"));
  }
  if (!sessions->accepting()) {
    return Reply(context, absl::UnavailableError("server is shutting down; not scoring images"));
  }
  ServerMetrics* const metrics = sessions->metrics();
  if (metrics != nullptr) {
    metrics->ImageReceived(product->name, static_cast<int64_t>(request->data().size()));
  }
  const auto decode_start = std::chrono::steady_clock::now();
  absl::StatusOr<DecodedImage> decoded = DecodeImage(request->data(), decode_limits_);
  if (metrics != nullptr) {
    metrics->ImageDecoded(
        product->name,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - decode_start).count());
  }
  if (!decoded.ok()) {
    if (metrics != nullptr) metrics->ImageRejected(product->name, decoded.status().code());
    return Reply(context, absl::Status(decoded.status().code(),
                                       absl::StrCat("image '", request->client_image_id(),
                                                    "': ", decoded.status().message())));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  LineRequest line;
  line.client_id = request->client_image_id();
  line.pixels = std::move(decoded->pixels);
  line.metadata = {request->metadata().begin(), request->metadata().end()};
  // A copy of the bytes only where the line keeps its bank on disk.
  if (runner->second->keeps_images()) line.encoded = request->data();
  line.map_options = request->map_options();
  line.done = [reactor, response](absl::StatusOr<v1::ScoreImageResponse> result) {
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpc(result.status()));
  };
  runner->second->Submit(std::move(line));
  return reactor;
}

}  // namespace musc
