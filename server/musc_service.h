// The musc.v1.MuscService gRPC service (callback API).
#ifndef MUSC_SERVER_MUSC_SERVICE_H_
#define MUSC_SERVER_MUSC_SERVICE_H_

#include "musc/v1/musc_service.grpc.pb.h"
#include "server/image_decoder.h"
#include "server/session_manager.h"

namespace musc {

class MuscServiceImpl final : public v1::MuscService::CallbackService {
 public:
  MuscServiceImpl(SessionManager* sessions, DecodeLimits decode_limits)
      : sessions_(sessions), decode_limits_(decode_limits) {}

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

 private:
  SessionManager* const sessions_;
  const DecodeLimits decode_limits_;
};

}  // namespace musc

#endif  // MUSC_SERVER_MUSC_SERVICE_H_
