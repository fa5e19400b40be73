// A small synchronous C++ client for musc.v1.MuscService, used by musc-client and the tests.
// Unary calls that are safe to repeat are retried on UNAVAILABLE with exponential backoff;
// every call has a deadline. A call cut off mid-stream (e.g. a proxy lost the replica serving it)
// fails with UNAVAILABLE, like a lost connection, never with an empty or partial OK.
//
// Sessions are state held by one server replica, so every call that concerns a product carries
// the product in the kProductHeader metadata: a proxy in front of several replicas routes by it
// (consistent hashing, docs/DEPLOYMENT.md) and all of a product's sessions stay on one replica.
// Calls that name only a session take the product from the session id ("<product>:<hex>").
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

// gRPC metadata key (lowercase, as HTTP/2 requires) naming the product a call is about.
inline constexpr char kProductHeader[] = "x-musc-product";

// The product part of a session id "<product>:<hex>" (the text before the last ':'); empty for an
// id without one (e.g. from an older server), in which case calls carry no product header.
std::string ProductOfSessionId(const std::string& session_id);

struct ClientOptions {
  std::chrono::milliseconds deadline{30000};               // Per unary call and per upload.
  std::chrono::milliseconds stream_deadline{3600 * 1000};  // For StreamResults / Inspect.
  int max_attempts = 4;                                    // Unary calls, on UNAVAILABLE.
  std::chrono::milliseconds initial_backoff{200};
  size_t chunk_bytes = 1 << 20;  // Images are sent in chunks of this size.
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  // When not empty, sent as `authorization: Bearer <token>` on every call (servers started with
  // --auth_tokens). Plain metadata rather than call credentials, which gRPC refuses to send over
  // a plaintext channel (e.g. to a TLS-terminating proxy on the same host).
  std::string bearer_token;
};

// PEM files for a TLS channel: the CA that signed the server's certificate (empty: the system's
// roots) and, for mutual TLS, the client's certificate chain and key (both or neither).
struct TlsFiles {
  std::string ca;
  std::string cert;
  std::string key;
};
// Channel credentials for ClientOptions::credentials; errors name the file at fault.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsChannelCredentials(
    const TlsFiles& files);
// A bearer token kept in a file (so that it never appears on a command line): the file's text
// without surrounding whitespace. INVALID_ARGUMENT for an empty token or one with inner whitespace.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

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
  // Not retried: a retry after a lost reply would open a second session. (A proxy may still send
  // it to another replica when the first one could not be connected to: it never arrived there.)
  absl::StatusOr<v1::Session> CreateSession(const v1::CreateSessionRequest& request);
  // Streams the images (chunked) and returns one acknowledgement per image, in order of arrival.
  // Rejected images are returned with accepted=false, not as an error; the call fails only if
  // the stream itself fails (unknown session, connection lost, deadline).
  absl::StatusOr<std::vector<v1::ImageAck>> AddImages(const std::string& session_id,
                                                      const std::vector<EncodedImage>& images);
  absl::StatusOr<v1::Session> SealSession(const std::string& session_id);
  absl::StatusOr<v1::Session> CancelSession(const std::string& session_id);
  absl::StatusOr<v1::Session> GetSession(const std::string& session_id);
  // Behind a proxy with several replicas, an empty product lists only the sessions of whichever
  // replica the call reached; name the product to reach the replica that holds its sessions.
  absl::StatusOr<std::vector<v1::Session>> ListSessions(
      const std::string& product, const std::vector<v1::SessionState>& states = {});
  // Delivers every event to on_event until the session's final event. If the connection drops
  // (UNAVAILABLE) it reconnects and skips results it already delivered, so each image's result
  // is delivered exactly once. If the replica holding the session died, the reconnection reaches
  // another replica, which answers NOT_FOUND: the session and its results are lost.
  absl::Status StreamResults(const std::string& session_id, const v1::MapOptions& options,
                             const std::function<void(const v1::ResultEvent&)>& on_event);
  // Line mode: scores one image at once against the product's bank (docs/LINE_MODE.md). Not
  // retried: a retry after a lost reply would score the image twice (and admit it twice).
  absl::StatusOr<v1::ScoreImageResponse> ScoreImage(const std::string& product,
                                                    const EncodedImage& image,
                                                    const v1::MapOptions& options = {});
  // The standard gRPC health check; service "" is the whole server.
  absl::StatusOr<bool> IsServing(const std::string& service = "");

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  MuscClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options);
  // `product` goes into kProductHeader when it is a valid product name (not when empty).
  template <typename Call>
  absl::Status WithRetries(const std::string& product, Call call);
  std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::milliseconds deadline,
                                                  const std::string& product) const;

  std::shared_ptr<grpc::Channel> channel_;
  ClientOptions options_;
  std::unique_ptr<v1::MuscService::Stub> stub_;
};

// gRPC status → absl::Status (the codes are the same).
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace musc

#endif  // MUSC_CLIENT_MUSC_CLIENT_H_
