// What every MuscService RPC does before its own work, done once: the warming-up check, the
// caller's credentials, session lookup with authorisation, and (for streams) a slot counted
// against --max_concurrent_streams. Also the one absl → gRPC status mapping and the replies that
// carry it. In the manner of Triton's per-RPC call data: one CallContext per call, held by the
// RPC method (unary calls) or by the stream's reactor for the stream's life.
#ifndef MUSC_SERVER_RPC_CALL_CONTEXT_H_
#define MUSC_SERVER_RPC_CALL_CONTEXT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/batch/session_manager.h"
#include "server/rpc/auth.h"

namespace musc {

// absl and gRPC share the canonical status codes: the message is passed on as it is.
grpc::Status ToGrpc(const absl::Status& s);

// Finishes a unary call with `s` (its response already filled in when `s` is OK).
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& s);

// A streaming reactor that only reports an error: what a stream RPC returns when it is refused
// before its real reactor exists.
template <typename Base>
class ErrorReactor final : public Base {
 public:
  explicit ErrorReactor(const absl::Status& s) { this->Finish(ToGrpc(s)); }
  void OnDone() override { delete this; }
};

// One of --max_concurrent_streams, held for a stream's life and released when destroyed.
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

// One call, once it is past the warming-up check and authentication: who called, and the
// sessions it may reach. Refusals are counted in musc_auth_failures_total and logged at debug
// level by the token entry's name only.
class CallContext {
 public:
  // Every RPC's first step. UNAVAILABLE while `sessions` is null (the server loads and warms its
  // backbones), so that orchestrators and clients without a token see "warming up", not
  // UNAUTHENTICATED; then UNAUTHENTICATED unless `authenticator` is null (authentication off:
  // everyone is an anonymous admin) or the call carries a configured token.
  static absl::StatusOr<CallContext> Enter(SessionManager* sessions,
                                           const Authenticator* authenticator,
                                           const grpc::CallbackServerContext& context);

  CallContext(CallContext&&) = default;
  CallContext& operator=(CallContext&&) = delete;

  SessionManager& sessions() const { return *sessions_; }
  ServerMetrics* metrics() const { return sessions_->metrics(); }

  // PERMISSION_DENIED unless the caller holds `permission` on `product`.
  absl::Status May(Permission permission, const std::string& product) const;
  // Whether listings may show `product` (and its sessions) to the caller.
  bool Sees(const std::string& product) const { return principal_.MaySee(product); }

  // The session `id`, for a caller that needs `permission` on its product. The permission is
  // decided from the id's product prefix before the lookup: a caller without access to that
  // product gets PERMISSION_DENIED whether or not the session exists, so it learns nothing about
  // another product's sessions (and an id without a prefix cannot exist: NOT_FOUND). The prefix
  // is authoritative because ids are minted by this server; the real product is checked after
  // the lookup all the same.
  absl::StatusOr<std::shared_ptr<Session>> FindSession(Permission permission,
                                                       const std::string& id) const;

  // Takes a stream slot for this call's life, or RESOURCE_EXHAUSTED when `max` streams are open
  // (counted in `open`; 0 = no limit). Refusing at the start is cheap for the server and clear
  // for the client, unlike a stream that is accepted and then starved.
  absl::Status AcquireStream(std::atomic<int>& open, int max);

 private:
  CallContext(SessionManager* sessions, Principal principal)
      : sessions_(sessions), principal_(std::move(principal)) {}

  SessionManager* const sessions_;
  const Principal principal_;
  std::optional<StreamSlot> stream_slot_;  // Streams only.
};

// Answers a unary call: CallContext::Enter, then `body(call)` (which fills in the response and
// returns the call's status); either's error is the reply.
template <typename Body>
grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                 absl::StatusOr<CallContext> call, Body body) {
  if (!call.ok()) return Reply(context, call.status());
  return Reply(context, body(*call));
}

// Opens a stream: `open()` returns the reactor, or the error that an ErrorReactor reports.
template <typename Base, typename Open>
Base* StreamOrError(Open open) {
  absl::StatusOr<Base*> reactor = open();
  if (!reactor.ok()) return new ErrorReactor<Base>(reactor.status());
  return *reactor;
}

}  // namespace musc

#endif  // MUSC_SERVER_RPC_CALL_CONTEXT_H_
