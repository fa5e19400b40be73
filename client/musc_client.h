// A small synchronous C++ client for musc.v1.MuscService, used by musc-client and the tests.
// Unary calls that are safe to repeat are retried on UNAVAILABLE with exponential backoff;
// every call has a deadline.
#ifndef MUSC_CLIENT_MUSC_CLIENT_H_
#define MUSC_CLIENT_MUSC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "musc/v1/musc_service.grpc.pb.h"

namespace musc {

struct ClientOptions {
  std::chrono::milliseconds deadline{30000};               // Per unary call and per upload.
  std::chrono::milliseconds stream_deadline{3600 * 1000};  // For StreamResults / Inspect.
  int max_attempts = 4;                                    // Unary calls, on UNAVAILABLE.
  std::chrono::milliseconds initial_backoff{200};
  size_t chunk_bytes = 1 << 20;  // Images are sent in chunks of this size.
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
};

struct EncodedImage {
  std::string client_id;
  std::string bytes;  // PNG/JPEG/BMP/TIFF file contents.
  std::map<std::string, std::string> metadata;
};

class MuscClient {
 public:
  static std::unique_ptr<MuscClient> Connect(const std::string& target, ClientOptions options = {});

  absl::StatusOr<std::vector<v1::Product>> ListProducts();
  absl::StatusOr<v1::Product> GetProduct(const std::string& name);
  // Not retried: a retry after a lost reply would open a second session.
  absl::StatusOr<v1::Session> CreateSession(const v1::CreateSessionRequest& request);
  // Streams the images (chunked) and returns one acknowledgement per image, in order of arrival.
  // Rejected images are returned with accepted=false, not as an error; the call fails only if
  // the stream itself fails (unknown session, connection lost, deadline).
  absl::StatusOr<std::vector<v1::ImageAck>> AddImages(const std::string& session_id,
                                                      const std::vector<EncodedImage>& images);
  absl::StatusOr<v1::Session> SealSession(const std::string& session_id);
  absl::StatusOr<v1::Session> CancelSession(const std::string& session_id);
  absl::StatusOr<v1::Session> GetSession(const std::string& session_id);
  absl::StatusOr<std::vector<v1::Session>> ListSessions(
      const std::string& product, const std::vector<v1::SessionState>& states = {});
  // Delivers every event to on_event until the session's final event. If the connection drops
  // (UNAVAILABLE) it reconnects and skips results it already delivered, so each image's result
  // is delivered exactly once.
  absl::Status StreamResults(const std::string& session_id, const v1::MapOptions& options,
                             const std::function<void(const v1::ResultEvent&)>& on_event);
  // The standard gRPC health check; service "" is the whole server.
  absl::StatusOr<bool> IsServing(const std::string& service = "");

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  MuscClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options);
  template <typename Call>
  absl::Status WithRetries(Call call);
  std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::milliseconds deadline) const;

  std::shared_ptr<grpc::Channel> channel_;
  ClientOptions options_;
  std::unique_ptr<v1::MuscService::Stub> stub_;
};

// gRPC status → absl::Status (the codes are the same).
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace musc

#endif  // MUSC_CLIENT_MUSC_CLIENT_H_
