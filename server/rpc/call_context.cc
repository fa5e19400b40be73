#include "server/rpc/call_context.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/log.h"

namespace musc {
namespace {

const absl::Status& WarmingUp() {
  static const absl::Status* const status = new absl::Status(
      absl::UnavailableError("musc-server is loading and warming up its backbones; retry shortly"));
  return *status;
}

// The product part of a session id "<product>:<hex>"; empty without a ':'.
std::string SessionIdProduct(const std::string& id) {
  const size_t colon = id.rfind(':');
  return colon == std::string::npos ? std::string() : id.substr(0, colon);
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpc(s));
  return reactor;
}

absl::StatusOr<CallContext> CallContext::Enter(SessionManager* sessions,
                                               const Authenticator* authenticator,
                                               const grpc::CallbackServerContext& context) {
  if (sessions == nullptr) return WarmingUp();
  if (authenticator == nullptr) {
    Principal anonymous;
    anonymous.name = "anonymous";
    return CallContext(sessions, std::move(anonymous));
  }
  absl::StatusOr<Principal> principal = authenticator->Authenticate(context);
  if (!principal.ok()) {
    if (sessions->metrics() != nullptr) sessions->metrics()->AuthFailure("unauthenticated");
    LogDebug(absl::StrCat("unauthenticated call from ", context.peer(), ": ",
                          principal.status().message()));
    return principal.status();
  }
  return CallContext(sessions, *std::move(principal));
}

absl::Status CallContext::May(Permission permission, const std::string& product) const {
  absl::Status s = Authorize(principal_, permission, product);
  if (!s.ok()) {
    if (metrics() != nullptr) metrics()->AuthFailure("permission_denied");
    LogDebug(absl::StrCat("permission denied: ", s.message()));
  }
  return s;
}

absl::StatusOr<std::shared_ptr<Session>> CallContext::FindSession(Permission permission,
                                                                  const std::string& id) const {
  const std::string prefix = SessionIdProduct(id);
  if (!prefix.empty()) MUSC_RETURN_IF_ERROR(May(permission, prefix));
  MUSC_ASSIGN_OR_RETURN(std::shared_ptr<Session> session, sessions_->Get(id));
  MUSC_RETURN_IF_ERROR(May(permission, session->product().name));
  return session;
}

absl::Status CallContext::AcquireStream(std::atomic<int>& open, int max) {
  const int before = open.fetch_add(1);
  StreamSlot slot(&open);
  if (max > 0 && before >= max) {
    if (metrics() != nullptr) metrics()->LimitRefused("concurrent_streams");
    return absl::ResourceExhaustedError(
        absl::StrCat("the server has ", max,
                     " streams open, its maximum (--max_concurrent_streams); retry later"));
  }
  stream_slot_.emplace(std::move(slot));
  return absl::OkStatus();
}

}  // namespace musc
