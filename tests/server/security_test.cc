// Security and limits of musc-server, end to end: TLS and mutual TLS with certificates made by
// openssl in the test, bearer tokens with per-product roles, the metrics endpoint on its own
// interface, and every configured limit answering RESOURCE_EXHAUSTED and counted in metrics.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/rpc/auth.h"
#include "tests/server/run_command.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"
#include "tests/test_support.h"

namespace musc::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kProducts[] = R"(
products:
  - name: alpha
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
    scoring: {degrees: [1]}
    batch: {min_images: 3, max_images: 40}
  - name: beta
    backbone: {model: vit-tiny-random, seed: 2, input_size: 64}
    scoring: {degrees: [1]}
    batch: {min_images: 3, max_images: 40}
  - name: tiny
    backbone: {model: vit-tiny-random, seed: 3, input_size: 64}
    scoring: {degrees: [1]}
    batch: {min_images: 2, max_images: 3}
)";

std::vector<EncodedImage> MakeImages(int n, uint64_t seed0, const std::string& prefix = "img-") {
  std::vector<EncodedImage> images;
  for (int i = 0; i < n; ++i) {
    images.push_back({absl::StrCat(prefix, i), TexturePng(seed0 + i, i == n - 1), {}});
  }
  return images;
}

v1::CreateSessionRequest SessionFor(const std::string& product) {
  v1::CreateSessionRequest request;
  request.set_product(product);
  request.mutable_seal_policy();  // Sealed when told.
  return request;
}

// A sample of the text exposition, e.g. Sample(text, "musc_limit_refusals_total",
// "limit=\"max_sessions\""); -1 when absent.
double Sample(const std::string& exposition, const std::string& name, const std::string& label) {
  const std::string key = label.empty() ? name + " " : absl::StrCat(name, "{", label, "} ");
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size()));
  }
  return -1;
}

// A client that gives up at once: refusals are expected, retries would only slow the test.
ClientOptions Impatient(ClientOptions options = {}) {
  options.max_attempts = 1;
  options.deadline = std::chrono::seconds(10);
  return options;
}

// ---------------------------------------------------------------------------------------------
// Certificates: a CA, a server certificate for 127.0.0.1/localhost, a client certificate, an
// unrelated CA with a client certificate of its own, and an expired client certificate of the
// right CA. Made once per test binary with Debian's openssl (3.0: `openssl ca` sets past dates).

class Pki {
 public:
  static const Pki& Get() {
    static const Pki* const pki = new Pki();
    return *pki;
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string Path(const std::string& name) const { return dir_.Path(name); }

 private:
  Pki() {
    const std::string script = dir_.Path("make-pki.sh");
    std::ofstream(script) << R"(set -eu
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 30 -subj "/CN=musc test CA"
key other_ca.key
openssl req -x509 -new -key other_ca.key -out other_ca.pem -days 30 -subj "/CN=unrelated CA"
key server.key
openssl req -new -key server.key -out server.csr -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost"
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -copy_extensions copy -out server.pem
key client.key
openssl req -new -key client.key -out client.csr -subj "/CN=line-3 camera"
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -out client.pem
openssl x509 -req -in client.csr -CA other_ca.pem -CAkey other_ca.key -CAcreateserial -days 30 \
  -out foreign_client.pem
touch index.txt
echo 1000 > serial
cat > ca.cnf <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
EOF
openssl ca -batch -config ca.cnf -in client.csr -out expired_client.pem -notext \
  -startdate 20200101000000Z -enddate 20200102000000Z
openssl ca -batch -config ca.cnf -in client.csr -out ca_signed_client.pem -notext \
  -startdate 20200101000000Z -enddate 20991231235959Z
)";
    const CommandResult r = RunCommand(absl::StrCat("cd ", dir_.path(), " && bash make-pki.sh"));
    ok_ = r.exit_code == 0;
    error_ = r.output;
  }

  ScratchDir dir_;
  bool ok_ = false;
  std::string error_;
};

ClientOptions TlsClient(const std::string& ca, const std::string& cert = "",
                        const std::string& key = "") {
  const Pki& pki = Pki::Get();
  TlsFiles files;
  files.ca = pki.Path(ca);
  if (!cert.empty()) files.cert = pki.Path(cert);
  if (!key.empty()) files.key = pki.Path(key);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      TlsChannelCredentials(files);
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  ClientOptions options;
  if (credentials.ok()) options.credentials = *credentials;
  return options;
}

// The first call's outcome with `options`: OK, or how the connection was refused.
absl::Status FirstCall(const ServerProcess& server, const ClientOptions& options) {
  return server.Connect(Impatient(options))->ListProducts().status();
}

class SecurityTlsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Pki::Get().ok()) << Pki::Get().error(); }
};

TEST_F(SecurityTlsTest, TlsServerRefusesPlaintextAndClientsTrustingAnotherCa) {
  const Pki& pki = Pki::Get();
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(
      kProducts, {"--tls_cert=" + pki.Path("server.pem"), "--tls_key=" + pki.Path("server.key")},
      TlsClient("ca.pem"));
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->ReadLog().find("(TLS,") != std::string::npos) << server->ReadLog();

  EXPECT_TRUE(FirstCall(*server, TlsClient("ca.pem")).ok());
  // A plaintext client gets no further than the handshake.
  EXPECT_EQ(FirstCall(*server, ClientOptions()).code(), absl::StatusCode::kUnavailable);
  // A client that trusts another CA refuses the server's certificate.
  EXPECT_EQ(FirstCall(*server, TlsClient("other_ca.pem")).code(), absl::StatusCode::kUnavailable);

  // musc-client speaks TLS with --tls_ca.
  const CommandResult cli =
      RunCommand(absl::StrCat(MUSC_CLIENT_BIN, " --server ", server->address(), " --tls_ca ",
                              pki.Path("ca.pem"), " products"));
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_TRUE(cli.output.find("alpha") != std::string::npos) << cli.output;
  const CommandResult plain =
      RunCommand(absl::StrCat(MUSC_CLIENT_BIN, " --server ", server->address(), " products"));
  EXPECT_NE(plain.exit_code, 0) << plain.output;
}

TEST_F(SecurityTlsTest, MutualTlsAcceptsOnlyValidClientCertificatesOfItsCa) {
  const Pki& pki = Pki::Get();
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(
      kProducts,
      {"--tls_cert=" + pki.Path("server.pem"), "--tls_key=" + pki.Path("server.key"),
       "--tls_client_ca=" + pki.Path("ca.pem")},
      TlsClient("ca.pem", "client.pem", "client.key"));
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->ReadLog().find("(mutual TLS,") != std::string::npos) << server->ReadLog();

  const absl::Status good = FirstCall(*server, TlsClient("ca.pem", "client.pem", "client.key"));
  EXPECT_TRUE(good.ok()) << good;
  const absl::Status none = FirstCall(*server, TlsClient("ca.pem"));
  EXPECT_EQ(none.code(), absl::StatusCode::kUnavailable) << none;
  const absl::Status foreign =
      FirstCall(*server, TlsClient("ca.pem", "foreign_client.pem", "client.key"));
  EXPECT_EQ(foreign.code(), absl::StatusCode::kUnavailable) << foreign;
  const absl::Status expired =
      FirstCall(*server, TlsClient("ca.pem", "expired_client.pem", "client.key"));
  EXPECT_EQ(expired.code(), absl::StatusCode::kUnavailable) << expired;
  // The control: made the same way (openssl ca), differing only in its dates, and accepted.
  const absl::Status current =
      FirstCall(*server, TlsClient("ca.pem", "ca_signed_client.pem", "client.key"));
  EXPECT_TRUE(current.ok()) << current;
  EXPECT_EQ(FirstCall(*server, ClientOptions()).code(), absl::StatusCode::kUnavailable);

  const CommandResult cli = RunCommand(absl::StrCat(
      MUSC_CLIENT_BIN, " --server ", server->address(), " --tls_ca ", pki.Path("ca.pem"),
      " --tls_cert ", pki.Path("client.pem"), " --tls_key ", pki.Path("client.key"), " health"));
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
}

TEST_F(SecurityTlsTest, BadTlsFlagsStopTheServerWithAClearMessage) {
  const Pki& pki = Pki::Get();
  ScratchDir dir;
  dir.Write("products.yaml", kProducts);
  const std::string base = absl::StrCat(MUSC_SERVER_BIN, " --products=", dir.Path("products.yaml"),
                                        " --listen=127.0.0.1:0 --metrics_listen= ");
  CommandResult r = RunCommand(base + "--tls_cert=" + pki.Path("server.pem"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.output.find("--tls_cert and --tls_key go together") != std::string::npos)
      << r.output;
  r = RunCommand(base + "--tls_client_ca=" + pki.Path("ca.pem"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.output.find("--tls_client_ca needs") != std::string::npos) << r.output;
  r = RunCommand(base + "--tls_cert=" + pki.Path("server.pem") +
                 " --tls_key=" + dir.Path("missing.key"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.output.find("missing.key") != std::string::npos) << r.output;
}

// ---------------------------------------------------------------------------------------------
// Tokens.

std::string RandomToken() {
  std::random_device rd;
  return absl::StrCat("tok", absl::Hex(rd(), absl::kZeroPad8), absl::Hex(rd(), absl::kZeroPad8),
                      absl::Hex(rd(), absl::kZeroPad8), absl::Hex(rd(), absl::kZeroPad8));
}

struct Tokens {
  std::string reader_alpha = RandomToken();
  std::string submitter_alpha = RandomToken();
  std::string submitter_beta = RandomToken();
  std::string admin = RandomToken();
  std::string all_reader = RandomToken();

  std::vector<std::string> all() const {
    return {reader_alpha, submitter_alpha, submitter_beta, admin, all_reader};
  }
  std::string Yaml() const {
    return absl::StrCat("tokens:\n", "  - {name: reader-alpha, sha256: ", Sha256Hex(reader_alpha),
                        ", products: [alpha], role: read}\n",
                        "  - {name: submitter-alpha, sha256: ", Sha256Hex(submitter_alpha),
                        ", products: [alpha], role: submit}\n",
                        "  - {name: submitter-beta, sha256: ", Sha256Hex(submitter_beta),
                        ", products: [beta, tiny], role: submit}\n",
                        "  - {name: ops, sha256: ", Sha256Hex(admin), ", role: admin}\n",
                        "  - {name: dashboard, sha256: ", Sha256Hex(all_reader),
                        ", products: [\"*\"], role: read}\n");
  }
};

class SecurityTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tokens_ = new Tokens();
    dir_ = new ScratchDir();
    dir_->Write("tokens.yaml", tokens_->Yaml());
    // Start's own calls carry the admin token: once the service answers, it checks tokens.
    ClientOptions admin;
    admin.bearer_token = tokens_->admin;
    server_ = ServerProcess::Start(kProducts, {"--auth_tokens=" + dir_->Path("tokens.yaml")}, admin)
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
    delete tokens_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << "server did not start"; }

  static std::unique_ptr<MuscClient> As(const std::string& token) {
    ClientOptions options = Impatient();
    options.bearer_token = token;
    return server_->Connect(options);
  }
  // A session of `product` created by `token`, with `n` images added and sealed when n > 0.
  static std::string NewSession(const std::string& token, const std::string& product, int n = 0) {
    std::unique_ptr<MuscClient> client = As(token);
    absl::StatusOr<v1::Session> session = client->CreateSession(SessionFor(product));
    EXPECT_TRUE(session.ok()) << session.status();
    if (!session.ok()) return "";
    if (n > 0) {
      absl::StatusOr<std::vector<v1::ImageAck>> acks =
          client->AddImages(session->id(), MakeImages(n, 7));
      EXPECT_TRUE(acks.ok()) << acks.status();
      EXPECT_TRUE(client->SealSession(session->id()).ok());
    }
    return session->id();
  }
  static absl::Status Stream(MuscClient& client, const std::string& id, int* results = nullptr) {
    return client.StreamResults(id, v1::MapOptions(), [results](const v1::ResultEvent& e) {
      if (results != nullptr && e.has_result()) ++*results;
    });
  }
  static absl::Status Upload(MuscClient& client, const std::string& id) {
    return client.AddImages(id, MakeImages(1, 99, "late-")).status();
  }
  // Inspect through the raw stub (the client library has no Inspect call).
  static grpc::Status Inspect(const std::string& token, const std::string& product) {
    std::unique_ptr<MuscClient> client = As(token);
    auto stub = v1::MuscService::NewStub(client->channel());
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    auto stream = stub->Inspect(&context);
    v1::InspectRequest start;
    start.mutable_start()->set_product(product);
    stream->Write(start);
    stream->WritesDone();
    v1::ResultEvent event;
    while (stream->Read(&event)) {
    }
    return stream->Finish();
  }

  static Tokens* tokens_;
  static ScratchDir* dir_;
  static ServerProcess* server_;
};
Tokens* SecurityTokenTest::tokens_ = nullptr;
ScratchDir* SecurityTokenTest::dir_ = nullptr;
ServerProcess* SecurityTokenTest::server_ = nullptr;

TEST_F(SecurityTokenTest, MissingMalformedOrUnknownTokensAreUnauthenticated) {
  const std::string id = NewSession(tokens_->submitter_alpha, "alpha");
  for (const std::string& token : {std::string(), RandomToken()}) {
    SCOPED_TRACE(token.empty() ? "no token" : "unknown token");
    std::unique_ptr<MuscClient> client = As(token);
    EXPECT_EQ(client->ListProducts().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->GetProduct("alpha").status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->CreateSession(SessionFor("alpha")).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->GetSession(id).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->ListSessions("").status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->SealSession(id).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->CancelSession(id).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Stream(*client, id).code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Upload(*client, id).code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Inspect(token, "alpha").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // Not a bearer token at all, or the right token under the wrong scheme.
  std::unique_ptr<MuscClient> raw = As("");
  auto stub = v1::MuscService::NewStub(raw->channel());
  for (const std::string& header :
       {"Basic " + tokens_->admin, std::string("Bearer "), tokens_->admin}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", header);
    v1::ListProductsResponse response;
    EXPECT_EQ(stub->ListProducts(&context, v1::ListProductsRequest(), &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  // The scheme is case-insensitive (RFC 6750).
  grpc::ClientContext context;
  context.AddMetadata("authorization", "bearer " + tokens_->admin);
  v1::ListProductsResponse response;
  EXPECT_TRUE(stub->ListProducts(&context, v1::ListProductsRequest(), &response).ok());

  // Health and reflection stay open: kubelet probes and grpcurl carry no token.
  absl::StatusOr<bool> serving = raw->IsServing();
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_TRUE(*serving);
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(raw->channel());
  grpc::ClientContext reflection_context;
  auto stream = reflection->ServerReflectionInfo(&reflection_context);
  grpc::reflection::v1alpha::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  ASSERT_TRUE(stream->WritesDone());
  grpc::reflection::v1alpha::ServerReflectionResponse answer;
  int services = 0;
  while (stream->Read(&answer)) services += answer.list_services_response().service_size();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_GT(services, 0);
}

TEST_F(SecurityTokenTest, ReadOnlyTokenReadsButCannotSubmit) {
  const std::string id = NewSession(tokens_->submitter_alpha, "alpha", 4);
  ASSERT_FALSE(id.empty());
  std::unique_ptr<MuscClient> reader = As(tokens_->reader_alpha);

  EXPECT_EQ(reader->CreateSession(SessionFor("alpha")).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Inspect(tokens_->reader_alpha, "alpha").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Upload(*reader, id).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(reader->SealSession(id).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(reader->CancelSession(id).status().code(), absl::StatusCode::kPermissionDenied);

  absl::StatusOr<v1::Session> session = reader->GetSession(id);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->product(), "alpha");
  int results = 0;
  const absl::Status streamed = Stream(*reader, id, &results);
  EXPECT_TRUE(streamed.ok()) << streamed;
  EXPECT_EQ(results, 4);
  absl::StatusOr<v1::Product> product = reader->GetProduct("alpha");
  EXPECT_TRUE(product.ok()) << product.status();

  // Listings show only the products the token is granted.
  absl::StatusOr<std::vector<v1::Product>> products = reader->ListProducts();
  ASSERT_TRUE(products.ok()) << products.status();
  ASSERT_EQ(products->size(), 1u);
  EXPECT_EQ((*products)[0].name(), "alpha");
  absl::StatusOr<std::vector<v1::Product>> everything = As(tokens_->all_reader)->ListProducts();
  ASSERT_TRUE(everything.ok());
  EXPECT_EQ(everything->size(), 3u);
  // A "*" reader still cannot submit.
  EXPECT_EQ(As(tokens_->all_reader)->CreateSession(SessionFor("beta")).status().code(),
            absl::StatusCode::kPermissionDenied);

  // musc-client reads its token from a file or MUSC_TOKEN, never from the command line.
  ScratchDir dir;
  dir.Write("token", tokens_->reader_alpha + "\n");
  CommandResult cli = RunCommand(absl::StrCat(MUSC_CLIENT_BIN, " --server ", server_->address(),
                                              " --token_file ", dir.Path("token"), " products"));
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_TRUE(cli.output.find("alpha") != std::string::npos) << cli.output;
  EXPECT_TRUE(cli.output.find("beta") == std::string::npos) << cli.output;
  cli = RunCommand(absl::StrCat("MUSC_TOKEN=", tokens_->all_reader, " ", MUSC_CLIENT_BIN,
                                " --server ", server_->address(), " products"));
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_TRUE(cli.output.find("beta") != std::string::npos) << cli.output;
  cli = RunCommand(absl::StrCat(MUSC_CLIENT_BIN, " --server ", server_->address(), " products"));
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_TRUE(cli.output.find("UNAUTHENTICATED") != std::string::npos) << cli.output;
}

TEST_F(SecurityTokenTest, TokenForOneProductCannotTouchAnothersSessions) {
  const std::string beta_id = NewSession(tokens_->submitter_beta, "beta");
  const std::string alpha_id = NewSession(tokens_->submitter_alpha, "alpha");
  ASSERT_FALSE(beta_id.empty());
  std::unique_ptr<MuscClient> alpha = As(tokens_->submitter_alpha);

  EXPECT_EQ(alpha->CreateSession(SessionFor("beta")).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(alpha->GetProduct("beta").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(alpha->GetSession(beta_id).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(alpha->SealSession(beta_id).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(alpha->CancelSession(beta_id).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Stream(*alpha, beta_id).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Upload(*alpha, beta_id).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(alpha->ListSessions("beta").status().code(), absl::StatusCode::kPermissionDenied);

  // Whether a session of another product exists is not revealed: an id that was never issued
  // gets the same answer. For its own product, the caller learns NOT_FOUND.
  const std::string unknown_beta = "beta:0123456789abcdef0123456789abcdef";
  EXPECT_EQ(alpha->GetSession(unknown_beta).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(alpha->GetSession("alpha:0123456789abcdef0123456789abcdef").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(As(tokens_->admin)->GetSession(unknown_beta).status().code(),
            absl::StatusCode::kNotFound);

  // Listing everything shows only the caller's products; the admin sees all.
  absl::StatusOr<std::vector<v1::Session>> listed = alpha->ListSessions("");
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::set<std::string> ids;
  for (const v1::Session& s : *listed) {
    EXPECT_EQ(s.product(), "alpha");
    ids.insert(s.id());
  }
  EXPECT_EQ(ids.count(alpha_id), 1u);
  EXPECT_EQ(ids.count(beta_id), 0u);
  absl::StatusOr<std::vector<v1::Session>> all = As(tokens_->admin)->ListSessions("");
  ASSERT_TRUE(all.ok()) << all.status();
  ids.clear();
  for (const v1::Session& s : *all) ids.insert(s.id());
  EXPECT_EQ(ids.count(alpha_id), 1u);
  EXPECT_EQ(ids.count(beta_id), 1u);

  // The session is untouched, and its own product's token and the admin can work with it.
  absl::StatusOr<v1::Session> beta = As(tokens_->submitter_beta)->GetSession(beta_id);
  ASSERT_TRUE(beta.ok()) << beta.status();
  EXPECT_EQ(beta->state(), v1::OPEN);
  EXPECT_TRUE(As(tokens_->admin)->CancelSession(beta_id).ok());
}

TEST_F(SecurityTokenTest, FailuresAreCountedAndNoSecretReachesLogsOrMetrics) {
  const std::string before = server_->ScrapeMetrics();
  const double unauthenticated =
      Sample(before, "musc_auth_failures_total", "reason=\"unauthenticated\"");
  const double denied = Sample(before, "musc_auth_failures_total", "reason=\"permission_denied\"");
  ASSERT_GE(unauthenticated, 0) << before;
  ASSERT_GE(denied, 0) << before;

  EXPECT_EQ(As(RandomToken())->ListProducts().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(As(tokens_->reader_alpha)->CreateSession(SessionFor("alpha")).status().code(),
            absl::StatusCode::kPermissionDenied);

  const std::string after = server_->ScrapeMetrics();
  EXPECT_EQ(Sample(after, "musc_auth_failures_total", "reason=\"unauthenticated\""),
            unauthenticated + 1);
  EXPECT_EQ(Sample(after, "musc_auth_failures_total", "reason=\"permission_denied\""), denied + 1);

  // Every token was used by now (tests of this suite run in order; this one is last). The log
  // is at debug level, where refusals are logged by the entry's name.
  for (const std::string& token : tokens_->all()) As(token)->ListProducts().IgnoreError();
  const std::string log = server_->ReadLog();
  EXPECT_TRUE(log.find("reader-alpha") != std::string::npos) << "refusals are logged by name";
  for (const std::string& token : tokens_->all()) {
    EXPECT_EQ(log.find(token), std::string::npos) << "a token is in the server log";
    EXPECT_EQ(log.find(Sha256Hex(token)), std::string::npos) << "a token hash is in the log";
    EXPECT_EQ(after.find(token), std::string::npos) << "a token is in the metrics";
    EXPECT_EQ(after.find(Sha256Hex(token)), std::string::npos) << "a hash is in the metrics";
  }
}

TEST(SecurityTokenFileTest, ErrorsNameTheEntry) {
  const std::vector<std::string> products = {"alpha", "beta"};
  const std::string hash = Sha256Hex("secret-1");
  const std::string good = absl::StrCat("  - {name: first, sha256: ", Sha256Hex("secret-0"),
                                        ", products: [alpha], role: read}\n");
  struct Case {
    std::string second_entry;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"  - {name: second, sha256: abc, products: [alpha], role: read}\n",
       "tokens[1] ('second'): sha256 must be 64 hex digits"},
      {absl::StrCat("  - {name: second, sha256: ", hash, ", products: [gamma], role: read}\n"),
       "tokens[1] ('second'): unknown product 'gamma'"},
      {absl::StrCat("  - {name: second, sha256: ", hash, ", products: [alpha], role: owner}\n"),
       "tokens[1] ('second'): role 'owner' is not one of read, submit, admin"},
      {absl::StrCat("  - {name: second, sha256: ", hash, ", role: submit}\n"),
       "tokens[1] ('second'): missing 'products'"},
      {absl::StrCat("  - {name: second, sha256: ", hash, ", products: [alpha], role: admin}\n"),
       "tokens[1] ('second'): role admin applies to every product"},
      {absl::StrCat("  - {name: first, sha256: ", hash, ", products: [alpha], role: read}\n"),
       "tokens[1] ('first'): duplicate name"},
      {absl::StrCat("  - {name: second, sha256: ", Sha256Hex("secret-0"),
                    ", products: [alpha], role: read}\n"),
       "tokens[1] ('second'): same sha256 as 'first'"},
      {absl::StrCat("  - {name: second, sha256: ", hash, ", products: [alpha], role: read, ",
                    "token: x}\n"),
       "tokens[1] ('second'): unknown key 'token'"},
      {absl::StrCat("  - {sha256: ", hash, ", products: [alpha], role: read}\n"),
       "tokens[1]: missing 'name'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<Authenticator>> parsed =
        Authenticator::Parse("tokens:\n" + good + c.second_entry, "t.yaml", products);
    ASSERT_FALSE(parsed.ok()) << c.second_entry;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(MessageHas(parsed.status(), "t.yaml: " + c.expected));
  }
  EXPECT_FALSE(Authenticator::Parse("tokens: []\n", "t.yaml", products).ok());

  // A bare list works too, and "*" (quoted: a bare * is a YAML alias) means every product.
  absl::StatusOr<std::unique_ptr<Authenticator>> parsed = Authenticator::Parse(
      absl::StrCat(good, "  - {name: second, sha256: ", hash, ", products: ['*'], role: submit}\n"),
      "t.yaml", products);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::string header = "Bearer secret-1";
  absl::StatusOr<Principal> second = (*parsed)->AuthenticateHeader(&header);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->name, "second");
  EXPECT_TRUE(Authorize(*second, Permission::kSubmit, "beta").ok());
  EXPECT_EQ(Authorize(*second, Permission::kAdmin, "").code(), absl::StatusCode::kPermissionDenied);
  const std::string first_header = "Bearer secret-0";
  absl::StatusOr<Principal> first = (*parsed)->AuthenticateHeader(&first_header);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(Authorize(*first, Permission::kRead, "alpha").ok());
  EXPECT_EQ(Authorize(*first, Permission::kRead, "beta").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Authorize(*first, Permission::kSubmit, "alpha").code(),
            absl::StatusCode::kPermissionDenied);
  const std::string wrong = "Bearer secret-2";
  absl::StatusOr<Principal> nobody = (*parsed)->AuthenticateHeader(&wrong);
  EXPECT_EQ(nobody.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(std::string(nobody.status().message()).find("secret"), std::string::npos);
  EXPECT_EQ((*parsed)->AuthenticateHeader(nullptr).status().code(),
            absl::StatusCode::kUnauthenticated);

  // The server refuses to start with a bad tokens file, naming the entry.
  ScratchDir dir;
  dir.Write("products.yaml", kProducts);
  dir.Write("tokens.yaml", "tokens:\n" + good + cases[1].second_entry);
  const CommandResult r = RunCommand(absl::StrCat(
      MUSC_SERVER_BIN, " --products=", dir.Path("products.yaml"),
      " --auth_tokens=", dir.Path("tokens.yaml"), " --listen=127.0.0.1:0 --metrics_listen="));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(r.output.find("tokens[1] ('second'): unknown product 'gamma'") != std::string::npos)
      << r.output;
}

TEST(SecurityTokenFileTest, HashTokenMatchesTheServersHashAndSha256sum) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string token = "s3cr3t-line-3";
  CommandResult r = RunCommand(absl::StrCat("echo ", token, " | ", MUSC_CLIENT_BIN, " hash-token"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, Sha256Hex(token) + "\n");
  r = RunCommand(absl::StrCat("printf %s ", token, " | sha256sum"));
  EXPECT_EQ(r.output.substr(0, 64), Sha256Hex(token));
}

TEST(SecurityWarningTest, PlaintextWithoutTokensOnAllInterfacesIsWarnedAbout) {
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts, {"--listen=0.0.0.0:0"});
  ASSERT_NE(server, nullptr);
  const std::string log = server->ReadLog();
  EXPECT_TRUE(log.find("without TLS or tokens") != std::string::npos) << log;
  std::unique_ptr<ServerProcess> loopback = ServerProcess::Start(kProducts);
  ASSERT_NE(loopback, nullptr);
  EXPECT_EQ(loopback->ReadLog().find("without TLS"), std::string::npos) << loopback->ReadLog();
}

// ---------------------------------------------------------------------------------------------
// The metrics endpoint on an interface of its own.

// The status line of GET /metrics from host:port; empty when nothing answers there.
std::string HttpStatusLine(const std::string& host, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[256];
      const ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n > 0) reply.assign(buffer, static_cast<size_t>(n));
    }
  }
  close(fd);
  return reply.substr(0, reply.find("\r\n"));
}

TEST(SecurityMetricsTest, MetricsEndpointBindsToItsOwnInterface) {
  // gRPC on 127.0.0.1, metrics on 127.0.0.2 (another address of the loopback interface, as a
  // management network would be another NIC): each answers only where it was bound.
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start(kProducts, {"--metrics_listen=127.0.0.2:0"});
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->metrics_port(), 0);
  EXPECT_EQ(HttpStatusLine("127.0.0.2", server->metrics_port()), "HTTP/1.1 200 OK");
  EXPECT_EQ(HttpStatusLine("127.0.0.1", server->metrics_port()), "");
  EXPECT_TRUE(server->Connect()->ListProducts().ok());
}

// ---------------------------------------------------------------------------------------------
// Limits: each refused with RESOURCE_EXHAUSTED and counted in musc_limit_refusals_total.

double Refusals(const ServerProcess& server, const std::string& limit) {
  return Sample(server.ScrapeMetrics(), "musc_limit_refusals_total",
                absl::StrCat("limit=\"", limit, "\""));
}

TEST(LimitsTest, SessionsPerProductAndSessionsPerServer) {
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start(kProducts, {"--max_sessions_per_product=2", "--max_sessions=4"});
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  EXPECT_EQ(Refusals(*server, "sessions_per_product"), 0);
  absl::StatusOr<v1::Session> first = client->CreateSession(SessionFor("alpha"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(client->CreateSession(SessionFor("alpha")).ok());
  absl::StatusOr<v1::Session> third = client->CreateSession(SessionFor("alpha"));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MessageHas(third.status(), "--max_sessions_per_product"));
  EXPECT_EQ(Refusals(*server, "sessions_per_product"), 1);
  // Other products are not affected, and a finished session frees its product's slot.
  ASSERT_TRUE(client->CreateSession(SessionFor("beta")).ok());
  ASSERT_TRUE(client->CancelSession(first->id()).ok());
  ASSERT_TRUE(client->CreateSession(SessionFor("alpha")).ok());
  // The cancelled session is still held (its results stay readable): 4 held, the maximum.
  absl::StatusOr<v1::Session> fifth = client->CreateSession(SessionFor("beta"));
  EXPECT_EQ(fifth.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Refusals(*server, "max_sessions"), 1);
  EXPECT_EQ(Refusals(*server, "sessions_per_product"), 1);
}

TEST(LimitsTest, ImagesAndBytesPerSession) {
  const std::vector<EncodedImage> images = MakeImages(4, 300);
  int64_t two_images = 0;
  for (int i = 0; i < 2; ++i) two_images += static_cast<int64_t>(images[i].bytes.size());
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start(kProducts, {absl::StrCat("--max_session_bytes=", two_images + 10)});
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();

  // Product "tiny" holds at most 3 images.
  absl::StatusOr<v1::Session> tiny = client->CreateSession(SessionFor("tiny"));
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  std::vector<EncodedImage> small;  // Far below the byte limit together.
  for (int i = 0; i < 4; ++i) {
    small.push_back({absl::StrCat("t", i), TexturePng(400 + i, false, 16, 16), {}});
  }
  absl::StatusOr<std::vector<v1::ImageAck>> tiny_acks = client->AddImages(tiny->id(), small);
  ASSERT_TRUE(tiny_acks.ok()) << tiny_acks.status();
  ASSERT_EQ(tiny_acks->size(), 4u);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE((*tiny_acks)[i].accepted()) << (*tiny_acks)[i].error_message();
  EXPECT_FALSE((*tiny_acks)[3].accepted());
  EXPECT_EQ((*tiny_acks)[3].error_code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(Refusals(*server, "images_per_session"), 1);

  // Bytes: the third image would pass --max_session_bytes.
  absl::StatusOr<v1::Session> alpha = client->CreateSession(SessionFor("alpha"));
  ASSERT_TRUE(alpha.ok()) << alpha.status();
  absl::StatusOr<std::vector<v1::ImageAck>> acks =
      client->AddImages(alpha->id(), {images[0], images[1], images[2]});
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), 3u);
  EXPECT_TRUE((*acks)[0].accepted());
  EXPECT_TRUE((*acks)[1].accepted());
  EXPECT_FALSE((*acks)[2].accepted());
  EXPECT_EQ((*acks)[2].error_code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(Refusals(*server, "session_bytes"), 1);
}

// An AddImages stream held open on `session`, with one image acknowledged (so the server has
// certainly admitted the stream).
struct OpenUpload {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AddImagesRequest, v1::ImageAck>> stream;

  OpenUpload(v1::MuscService::Stub& stub, const std::string& session, const std::string& id) {
    stream = stub.AddImages(&context);
    v1::AddImagesRequest request;
    request.set_session_id(session);
    request.set_client_image_id(id);
    request.set_data(TexturePng(500, false, 16, 16));
    request.set_last_chunk(true);
    stream->Write(request);
  }
  bool Acknowledged() {
    v1::ImageAck ack;
    return stream->Read(&ack) && ack.accepted();
  }
  grpc::Status Close() {
    stream->WritesDone();
    v1::ImageAck ack;
    while (stream->Read(&ack)) {
    }
    return stream->Finish();
  }
};

TEST(LimitsTest, ConcurrentStreams) {
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start(kProducts, {"--max_concurrent_streams=2"});
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  absl::StatusOr<v1::Session> session = client->CreateSession(SessionFor("alpha"));
  ASSERT_TRUE(session.ok()) << session.status();
  auto stub = v1::MuscService::NewStub(client->channel());

  auto first = std::make_unique<OpenUpload>(*stub, session->id(), "a");
  ASSERT_TRUE(first->Acknowledged());
  OpenUpload second(*stub, session->id(), "b");
  ASSERT_TRUE(second.Acknowledged());
  // Unary calls are not streams: still answered.
  EXPECT_TRUE(client->GetSession(session->id()).ok());
  // A third stream of any kind is refused at its start.
  OpenUpload third(*stub, session->id(), "c");
  const grpc::Status refused = third.Close();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  const absl::Status stream_refused =
      client->StreamResults(session->id(), v1::MapOptions(), [](const v1::ResultEvent&) {});
  EXPECT_EQ(stream_refused.code(), absl::StatusCode::kResourceExhausted) << stream_refused;
  EXPECT_EQ(Refusals(*server, "concurrent_streams"), 2);

  // A stream that ends gives its slot back (the server releases it just after the status).
  EXPECT_TRUE(first->Close().ok());
  first.reset();
  absl::StatusOr<std::vector<v1::ImageAck>> acks;
  for (int attempt = 0; attempt < 50; ++attempt) {
    acks = client->AddImages(session->id(), {{"d", TexturePng(501, false, 16, 16), {}}});
    if (acks.ok()) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(acks.ok()) << acks.status();
  EXPECT_TRUE(second.Close().ok());
}

TEST(LimitsTest, MessageSize) {
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start(kProducts, {"--max_message_bytes=65536"});
  ASSERT_NE(server, nullptr);
  ClientOptions options;
  options.chunk_bytes = 1 << 20;
  std::unique_ptr<MuscClient> client = server->Connect(options);
  absl::StatusOr<v1::Session> session = client->CreateSession(SessionFor("alpha"));
  ASSERT_TRUE(session.ok()) << session.status();
  // An image of ~150 KB sent as one message is refused by gRPC itself…
  const std::string big = TexturePng(600, false, 400, 300);
  ASSERT_GT(big.size(), 65536u);
  absl::StatusOr<std::vector<v1::ImageAck>> acks =
      client->AddImages(session->id(), {{"big", big, {}}});
  EXPECT_EQ(acks.status().code(), absl::StatusCode::kResourceExhausted) << acks.status();
  // …and accepted in chunks below the limit.
  options.chunk_bytes = 32 << 10;
  acks = server->Connect(options)->AddImages(session->id(), {{"big", big, {}}});
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), 1u);
  EXPECT_TRUE((*acks)[0].accepted()) << (*acks)[0].error_message();
}

}  // namespace
}  // namespace musc::testing
