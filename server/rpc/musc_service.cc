#include "server/rpc/musc_service.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/images/measured_decode.h"
#include "server/rpc/inspect_reactor.h"
#include "server/rpc/results_reactor.h"
#include "server/rpc/upload_reactor.h"

namespace musc {
namespace {

absl::Status UnknownProduct(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("unknown product '", name, "'"));
}

}  // namespace

grpc::ServerUnaryReactor* MuscServiceImpl::ListProducts(grpc::CallbackServerContext* context,
                                                        const v1::ListProductsRequest*,
                                                        v1::ListProductsResponse* response) {
  return Answer(context, Enter(*context), [&](const CallContext& call) {
    for (const ProductConfig& p : call.sessions().products()) {
      if (call.Sees(p.name)) ProductToProto(p, response->add_products());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MuscServiceImpl::GetProduct(grpc::CallbackServerContext* context,
                                                      const v1::GetProductRequest* request,
                                                      v1::Product* response) {
  return Answer(context, Enter(*context), [&](const CallContext& call) -> absl::Status {
    // Authorised before the lookup, so a caller learns nothing about products it is not granted.
    MUSC_RETURN_IF_ERROR(call.May(Permission::kRead, request->name()));
    const ProductConfig* p = call.sessions().FindProduct(request->name());
    if (p == nullptr) return UnknownProduct(request->name());
    ProductToProto(*p, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MuscServiceImpl::CreateSession(grpc::CallbackServerContext* context,
                                                         const v1::CreateSessionRequest* request,
                                                         v1::Session* response) {
  return Answer(context, Enter(*context), [&](const CallContext& call) -> absl::Status {
    MUSC_RETURN_IF_ERROR(call.May(Permission::kSubmit, request->product()));
    std::optional<SealPolicyConfig> policy;
    if (request->has_seal_policy()) {
      policy = SealPolicyConfig{request->seal_policy().at_count(),
                                request->seal_policy().idle_seconds()};
    }
    MUSC_ASSIGN_OR_RETURN(
        std::shared_ptr<Session> session,
        call.sessions().Create(request->product(), policy,
                               {request->labels().begin(), request->labels().end()}));
    *response = session->ToProto();
    return absl::OkStatus();
  });
}

grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck>* MuscServiceImpl::AddImages(
    grpc::CallbackServerContext* context) {
  using Base = grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck>;
  return StreamOrError<Base>([&]() -> absl::StatusOr<Base*> {
    MUSC_ASSIGN_OR_RETURN(CallContext call, Enter(*context));
    MUSC_RETURN_IF_ERROR(call.AcquireStream(open_streams_, guards_.max_concurrent_streams));
    return new UploadReactor(std::move(call), decode_limits_);
  });
}

grpc::ServerUnaryReactor* MuscServiceImpl::SealSession(grpc::CallbackServerContext* context,
                                                       const v1::SealSessionRequest* request,
                                                       v1::Session* response) {
  return Answer(context, Enter(*context), [&](const CallContext& call) -> absl::Status {
    MUSC_ASSIGN_OR_RETURN(std::shared_ptr<Session> session,
                          call.FindSession(Permission::kSubmit, request->session_id()));
    MUSC_RETURN_IF_ERROR(call.sessions().Seal(session));
    *response = session->ToProto();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MuscServiceImpl::CancelSession(grpc::CallbackServerContext* context,
                                                         const v1::CancelSessionRequest* request,
                                                         v1::Session* response) {
  return Answer(context, Enter(*context), [&](const CallContext& call) -> absl::Status {
    MUSC_ASSIGN_OR_RETURN(std::shared_ptr<Session> session,
                          call.FindSession(Permission::kSubmit, request->session_id()));
    MUSC_RETURN_IF_ERROR(session->Cancel("cancelled by a client"));
    *response = session->ToProto();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MuscServiceImpl::GetSession(grpc::CallbackServerContext* context,
                                                      const v1::GetSessionRequest* request,
                                                      v1::Session* response) {
  return Answer(context, Enter(*context), [&](const CallContext& call) -> absl::Status {
    MUSC_ASSIGN_OR_RETURN(std::shared_ptr<Session> session,
                          call.FindSession(Permission::kRead, request->session_id()));
    *response = session->ToProto();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MuscServiceImpl::ListSessions(grpc::CallbackServerContext* context,
                                                        const v1::ListSessionsRequest* request,
                                                        v1::ListSessionsResponse* response) {
  return Answer(context, Enter(*context), [&](const CallContext& call) -> absl::Status {
    // Naming a product the caller is not granted is refused; listing all is confined to its own.
    if (!request->product().empty()) {
      MUSC_RETURN_IF_ERROR(call.May(Permission::kRead, request->product()));
    }
    std::vector<v1::SessionState> states;
    for (int s : request->states()) states.push_back(static_cast<v1::SessionState>(s));
    for (const auto& session : call.sessions().List(request->product(), states)) {
      if (call.Sees(session->product().name)) *response->add_sessions() = session->ToProto();
    }
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::ResultEvent>* MuscServiceImpl::StreamResults(
    grpc::CallbackServerContext* context, const v1::StreamResultsRequest* request) {
  using Base = grpc::ServerWriteReactor<v1::ResultEvent>;
  return StreamOrError<Base>([&]() -> absl::StatusOr<Base*> {
    MUSC_ASSIGN_OR_RETURN(CallContext call, Enter(*context));
    MUSC_ASSIGN_OR_RETURN(std::shared_ptr<Session> session,
                          call.FindSession(Permission::kRead, request->session_id()));
    MUSC_RETURN_IF_ERROR(call.AcquireStream(open_streams_, guards_.max_concurrent_streams));
    return ResultsReactor::Start(std::move(call), std::move(session), request->map_options());
  });
}

grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>* MuscServiceImpl::Inspect(
    grpc::CallbackServerContext* context) {
  using Base = grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>;
  return StreamOrError<Base>([&]() -> absl::StatusOr<Base*> {
    MUSC_ASSIGN_OR_RETURN(CallContext call, Enter(*context));
    MUSC_RETURN_IF_ERROR(call.AcquireStream(open_streams_, guards_.max_concurrent_streams));
    // The product to authorise arrives with the start message.
    return InspectReactor::Start(std::move(call), decode_limits_);
  });
}

grpc::ServerUnaryReactor* MuscServiceImpl::ScoreImage(grpc::CallbackServerContext* context,
                                                      const v1::ScoreImageRequest* request,
                                                      v1::ScoreImageResponse* response) {
  absl::StatusOr<CallContext> entered = Enter(*context);
  if (!entered.ok()) return Reply(context, entered.status());
  const CallContext& call = *entered;
  if (absl::Status s = call.May(Permission::kSubmit, request->product()); !s.ok()) {
    return Reply(context, s);
  }
  const ProductConfig* product = call.sessions().FindProduct(request->product());
  if (product == nullptr) return Reply(context, UnknownProduct(request->product()));
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
  if (!call.sessions().accepting()) {
    return Reply(context, absl::UnavailableError("server is shutting down; not scoring images"));
  }
  ServerMetrics* const metrics = call.metrics();
  if (metrics != nullptr) {
    metrics->ImageReceived(product->name, static_cast<int64_t>(request->data().size()));
  }
  absl::StatusOr<DecodedImage> decoded = DecodeMeasured(
      request->data(), decode_limits_, request->client_image_id(), product->name, metrics);
  if (!decoded.ok()) return Reply(context, decoded.status());
  // The reply comes when the line has scored the image, from its thread.
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
