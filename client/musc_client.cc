#include "client/musc_client.h"

#include <algorithm>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace musc {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string ProductOfSessionId(const std::string& session_id) {
  const size_t colon = session_id.rfind(':');
  return colon == std::string::npos ? std::string() : session_id.substr(0, colon);
}

namespace {

// Product names are 1..128 of [A-Za-z0-9._-] on the server; anything else is not sent as a header
// (gRPC refuses some header values outright), and the server answers NOT_FOUND for it anyway.
bool IsHeaderSafeProduct(const std::string& product) {
  if (product.empty() || product.size() > 128) return false;
  for (const char c : product) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// FromGrpc for this client's calls. A call cut off after its response had started — the replica
// behind a proxy died mid-stream, and the proxy reset the HTTP/2 stream — reaches us from gRPC's
// transport as INTERNAL "Received RST_STREAM with error code 2", which says nothing useful and is
// not retried. It is a transport failure, like a refused connection: report it as UNAVAILABLE
// with a message that says so, so that callers (and the retries here, for calls that are safe to
// repeat) treat it as they treat a lost connection. A server's own INTERNAL never has that text.
absl::Status FromGrpcCall(const grpc::Status& status) {
  absl::Status s = FromGrpc(status);
  if (s.code() == absl::StatusCode::kInternal &&
      absl::StartsWith(s.message(), "Received RST_STREAM")) {
    return absl::UnavailableError(
        absl::StrCat("the call was cut off mid-stream (", s.message(),
                     "): the connection or the server replica behind a proxy was lost"));
  }
  return s;
}

}  // namespace

namespace {

// The message names the file by its role: "cannot read client key PATH".
absl::StatusOr<std::string> ReadCredentialFile(const std::string& what, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("cannot read ", what, " ", path));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsChannelCredentials(
    const TlsFiles& files) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError("a client certificate and its key go together");
  }
  grpc::SslCredentialsOptions options;
  if (!files.ca.empty()) {
    MUSC_ASSIGN_OR_RETURN(options.pem_root_certs, ReadCredentialFile("CA file", files.ca));
  }
  if (!files.cert.empty()) {
    MUSC_ASSIGN_OR_RETURN(options.pem_cert_chain,
                          ReadCredentialFile("client certificate", files.cert));
    MUSC_ASSIGN_OR_RETURN(options.pem_private_key, ReadCredentialFile("client key", files.key));
  }
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  MUSC_ASSIGN_OR_RETURN(const std::string text, ReadCredentialFile("token file", path));
  const std::string token(absl::StripAsciiWhitespace(text));
  // The token itself is never part of a message.
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  }
  for (const char c : token) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isspace(u) || absl::ascii_iscntrl(u)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token file ", path, " holds more than one word; it must hold the token only"));
    }
  }
  return token;
}

std::unique_ptr<MuscClient> MuscClient::Connect(const std::string& target, ClientOptions options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);  // Result events carry full-resolution maps.
  auto channel = grpc::CreateCustomChannel(target, options.credentials, args);
  return std::unique_ptr<MuscClient>(new MuscClient(std::move(channel), std::move(options)));
}

MuscClient::MuscClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : channel_(std::move(channel)),
      options_(std::move(options)),
      stub_(v1::MuscService::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> MuscClient::NewContext(std::chrono::milliseconds deadline,
                                                            const std::string& product) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + deadline);
  if (IsHeaderSafeProduct(product)) context->AddMetadata(kProductHeader, product);
  if (!options_.bearer_token.empty()) {
    context->AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
  return context;
}

template <typename Call>
absl::Status MuscClient::WithRetries(const std::string& product, Call call) {
  std::chrono::milliseconds backoff = options_.initial_backoff;
  absl::Status status;
  for (int attempt = 1; attempt <= std::max(1, options_.max_attempts); ++attempt) {
    std::unique_ptr<grpc::ClientContext> context = NewContext(options_.deadline, product);
    status = FromGrpcCall(call(context.get()));
    if (status.code() != absl::StatusCode::kUnavailable) return status;
    std::this_thread::sleep_for(backoff);
    backoff *= 2;
  }
  return status;
}

absl::StatusOr<std::vector<v1::Product>> MuscClient::ListProducts() {
  v1::ListProductsResponse response;
  // Any replica knows every product: no product header, so a proxy may pick any.
  MUSC_RETURN_IF_ERROR(WithRetries("", [&](grpc::ClientContext* c) {
    return stub_->ListProducts(c, v1::ListProductsRequest(), &response);
  }));
  return std::vector<v1::Product>(response.products().begin(), response.products().end());
}

absl::StatusOr<v1::Product> MuscClient::GetProduct(const std::string& name) {
  v1::GetProductRequest request;
  request.set_name(name);
  v1::Product response;
  MUSC_RETURN_IF_ERROR(WithRetries(
      name, [&](grpc::ClientContext* c) { return stub_->GetProduct(c, request, &response); }));
  return response;
}

absl::StatusOr<v1::ScoreImageResponse> MuscClient::ScoreImage(const std::string& product,
                                                              const EncodedImage& image,
                                                              const v1::MapOptions& options) {
  v1::ScoreImageRequest request;
  request.set_product(product);
  request.set_client_image_id(image.client_id);
  request.set_data(image.bytes);
  request.mutable_metadata()->insert(image.metadata.begin(), image.metadata.end());
  *request.mutable_map_options() = options;
  v1::ScoreImageResponse response;
  // The first images of a line wait for the warm-up batch: allow the stream deadline.
  std::unique_ptr<grpc::ClientContext> context = NewContext(options_.stream_deadline, product);
  MUSC_RETURN_IF_ERROR(FromGrpcCall(stub_->ScoreImage(context.get(), request, &response)));
  return response;
}

absl::StatusOr<v1::Session> MuscClient::CreateSession(const v1::CreateSessionRequest& request) {
  v1::Session response;
  std::unique_ptr<grpc::ClientContext> context = NewContext(options_.deadline, request.product());
  MUSC_RETURN_IF_ERROR(FromGrpcCall(stub_->CreateSession(context.get(), request, &response)));
  return response;
}

absl::StatusOr<std::vector<v1::ImageAck>> MuscClient::AddImages(
    const std::string& session_id, const std::vector<EncodedImage>& images) {
  std::unique_ptr<grpc::ClientContext> context =
      NewContext(options_.deadline, ProductOfSessionId(session_id));
  auto stream = stub_->AddImages(context.get());
  // Write on a second thread while this one reads acknowledgements: the server pauses reading
  // when too many acknowledgements are unread, so one thread doing both could stall.
  std::thread writer([&] {
    const size_t chunk = std::max<size_t>(1, options_.chunk_bytes);
    bool first = true;
    for (const EncodedImage& image : images) {
      size_t offset = 0;
      do {
        v1::AddImagesRequest request;
        if (first) request.set_session_id(session_id);
        first = false;
        request.set_client_image_id(image.client_id);
        if (offset == 0)
          request.mutable_metadata()->insert(image.metadata.begin(), image.metadata.end());
        const size_t n = std::min(chunk, image.bytes.size() - offset);
        request.set_data(image.bytes.substr(offset, n));
        offset += n;
        request.set_last_chunk(offset >= image.bytes.size());
        if (!stream->Write(request)) return;  // The stream broke; Finish reports why.
      } while (offset < image.bytes.size());
    }
    stream->WritesDone();
  });
  std::vector<v1::ImageAck> acks;
  v1::ImageAck ack;
  while (stream->Read(&ack)) acks.push_back(ack);
  writer.join();
  MUSC_RETURN_IF_ERROR(FromGrpcCall(stream->Finish()));
  return acks;
}

absl::StatusOr<v1::Session> MuscClient::SealSession(const std::string& session_id) {
  v1::SealSessionRequest request;
  request.set_session_id(session_id);
  v1::Session response;
  // Sealing is idempotent on the server, so a retry is safe.
  MUSC_RETURN_IF_ERROR(WithRetries(ProductOfSessionId(session_id), [&](grpc::ClientContext* c) {
    return stub_->SealSession(c, request, &response);
  }));
  return response;
}

absl::StatusOr<v1::Session> MuscClient::CancelSession(const std::string& session_id) {
  v1::CancelSessionRequest request;
  request.set_session_id(session_id);
  v1::Session response;
  MUSC_RETURN_IF_ERROR(WithRetries(ProductOfSessionId(session_id), [&](grpc::ClientContext* c) {
    return stub_->CancelSession(c, request, &response);
  }));
  return response;
}

absl::StatusOr<v1::Session> MuscClient::GetSession(const std::string& session_id) {
  v1::GetSessionRequest request;
  request.set_session_id(session_id);
  v1::Session response;
  MUSC_RETURN_IF_ERROR(WithRetries(ProductOfSessionId(session_id), [&](grpc::ClientContext* c) {
    return stub_->GetSession(c, request, &response);
  }));
  return response;
}

absl::StatusOr<std::vector<v1::Session>> MuscClient::ListSessions(
    const std::string& product, const std::vector<v1::SessionState>& states) {
  v1::ListSessionsRequest request;
  request.set_product(product);
  for (v1::SessionState s : states) request.add_states(s);
  v1::ListSessionsResponse response;
  MUSC_RETURN_IF_ERROR(WithRetries(
      product, [&](grpc::ClientContext* c) { return stub_->ListSessions(c, request, &response); }));
  return std::vector<v1::Session>(response.sessions().begin(), response.sessions().end());
}

absl::Status MuscClient::StreamResults(
    const std::string& session_id, const v1::MapOptions& options,
    const std::function<void(const v1::ResultEvent&)>& on_event) {
  v1::StreamResultsRequest request;
  request.set_session_id(session_id);
  *request.mutable_map_options() = options;
  std::set<uint32_t> delivered;  // Result indices already handed to on_event.
  std::chrono::milliseconds backoff = options_.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    std::unique_ptr<grpc::ClientContext> context =
        NewContext(options_.stream_deadline, ProductOfSessionId(session_id));
    auto reader = stub_->StreamResults(context.get(), request);
    v1::ResultEvent event;
    bool finished = false;
    while (reader->Read(&event)) {
      if (event.has_result() && !delivered.insert(event.result().index()).second) continue;
      finished = finished || event.has_finished();
      on_event(event);
    }
    absl::Status s = FromGrpcCall(reader->Finish());
    if (s.ok() && !finished) {
      return absl::InternalError("result stream ended without a final event");
    }
    if (s.code() != absl::StatusCode::kUnavailable || attempt >= options_.max_attempts) return s;
    std::this_thread::sleep_for(backoff);
    backoff *= 2;
  }
}

absl::StatusOr<bool> MuscClient::IsServing(const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewContext(options_.deadline, "");
  MUSC_RETURN_IF_ERROR(FromGrpc(health->Check(context.get(), request, &response)));
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

}  // namespace musc
