// The musc.v1.MuscService gRPC service (callback API).
#ifndef MUSC_SERVER_RPC_MUSC_SERVICE_H_
#define MUSC_SERVER_RPC_MUSC_SERVICE_H_

#include <atomic>

#include "musc/v1/musc_service.grpc.pb.h"
#include "server/batch/session_manager.h"
#include "server/images/image_decoder.h"
#include "server/line/line_runner.h"
#include "server/rpc/auth.h"
#include "server/rpc/call_context.h"

namespace musc {

// Who may call, and how many streams may be open at once. Fixed at construction.
struct ServiceGuards {
  // Null: no authentication (every caller is an anonymous admin; for trusted networks only).
  // Otherwise it must outlive the service.
  const Authenticator* authenticator = nullptr;
  // AddImages, StreamResults and Inspect streams open at once; beyond it a new stream is refused
  // with RESOURCE_EXHAUSTED. 0 = no limit.
  int max_concurrent_streams = 0;
};

// Starts unready: until Activate() every call answers UNAVAILABLE ("warming up"), so the server
// can listen (and answer health checks with NOT_SERVING) while backbones load.
class MuscServiceImpl final : public v1::MuscService::CallbackService {
 public:
  explicit MuscServiceImpl(DecodeLimits decode_limits, ServiceGuards guards = {})
      : decode_limits_(decode_limits), guards_(guards) {}

  // Makes the service answer. `sessions` (and `lines`, the line-mode runners, when given) must
  // outlive the service's use.
  void Activate(SessionManager* sessions, const LineRunners* lines = nullptr) {
    lines_.store(lines);
    sessions_.store(sessions);
  }

  grpc::ServerUnaryReactor* ListProducts(grpc::CallbackServerContext* context,
                                         const v1::ListProductsRequest* request,
                                         v1::ListProductsResponse* response) override;
  grpc::ServerUnaryReactor* GetProduct(grpc::CallbackServerContext* context,
                                       const v1::GetProductRequest* request,
                                       v1::Product* response) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* context,
                                          const v1::CreateSessionRequest* request,
                                          v1::Session* response) override;
  grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck>* AddImages(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* SealSession(grpc::CallbackServerContext* context,
                                        const v1::SealSessionRequest* request,
                                        v1::Session* response) override;
  grpc::ServerUnaryReactor* CancelSession(grpc::CallbackServerContext* context,
                                          const v1::CancelSessionRequest* request,
                                          v1::Session* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const v1::GetSessionRequest* request,
                                       v1::Session* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) override;
  grpc::ServerWriteReactor<v1::ResultEvent>* StreamResults(
      grpc::CallbackServerContext* context, const v1::StreamResultsRequest* request) override;
  grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>* Inspect(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ScoreImage(grpc::CallbackServerContext* context,
                                       const v1::ScoreImageRequest* request,
                                       v1::ScoreImageResponse* response) override;

 private:
  // CallContext::Enter with this service's sessions (null until activated) and authenticator.
  absl::StatusOr<CallContext> Enter(const grpc::CallbackServerContext& context) const {
    return CallContext::Enter(sessions_.load(), guards_.authenticator, context);
  }

  // Null until activated; once set never changes.
  std::atomic<SessionManager*> sessions_{nullptr};
  std::atomic<const LineRunners*> lines_{nullptr};
  const DecodeLimits decode_limits_;
  const ServiceGuards guards_;
  std::atomic<int> open_streams_{0};  // Counted against guards_.max_concurrent_streams.
};

}  // namespace musc

#endif  // MUSC_SERVER_RPC_MUSC_SERVICE_H_
