// Bearer-token authentication and per-token permissions for the MuscService RPCs.
//
// Tokens are configured in a YAML file (--auth_tokens; format in docs/SECURITY.md) that stores
// only their SHA-256, so the file can be read (or leaked from a config map) without giving away a
// credential. A call presents its token as `authorization: Bearer <token>` metadata; the server
// hashes it and compares against every stored hash in constant time. Each token has a role and
// a set of products:
//   read   ListProducts, GetProduct, GetSession, ListSessions, StreamResults
//   submit read + CreateSession, AddImages, SealSession, CancelSession, Inspect
//   admin  everything, for every product (and the admin RPCs to come)
// Missing, malformed or unknown tokens are UNAUTHENTICATED; a known token lacking the role or the
// product is PERMISSION_DENIED. Neither a token nor its hash is ever logged or exported.
#ifndef MUSC_SERVER_RPC_AUTH_H_
#define MUSC_SERVER_RPC_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <array>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace musc {

// Ordered: a role grants every permission up to its own.
enum class Role { kRead = 0, kSubmit = 1, kAdmin = 2 };
enum class Permission { kRead = 0, kSubmit = 1, kAdmin = 2 };

// Who a call is from: a tokens-file entry, or the anonymous admin when authentication is off.
struct Principal {
  std::string name;  // The entry's name: safe to log, never the token.
  Role role = Role::kAdmin;
  bool all_products = true;        // products: ["*"] (always for admin).
  std::set<std::string> products;  // When !all_products.

  bool MaySee(const std::string& product) const {
    return all_products || products.count(product) != 0;
  }
};

// Lowercase hex of the SHA-256 of `data` (OpenSSL libcrypto).
std::string Sha256Hex(absl::string_view data);

class Authenticator {
 public:
  using Digest = std::array<unsigned char, 32>;

  // Parses a tokens file. `known_products` are the products file's names: a token naming any
  // other product is an error (a typo would otherwise silently deny access). Errors name the
  // source, the entry (by index and name) and the key.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Parse(
      const std::string& yaml_text, const std::string& source_name,
      const std::vector<std::string>& known_products);
  static absl::StatusOr<std::unique_ptr<Authenticator>> LoadFile(
      const std::string& path, const std::vector<std::string>& known_products);

  // The principal of a call, from its `authorization` metadata; UNAUTHENTICATED when it is
  // missing, malformed or names no configured token. Messages never contain the token.
  absl::StatusOr<Principal> Authenticate(const grpc::CallbackServerContext& context) const;
  // The same for one `authorization` value (null: the call had none).
  absl::StatusOr<Principal> AuthenticateHeader(const std::string* authorization) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Digest sha256;
    Principal principal;
  };
  explicit Authenticator(std::vector<Entry> entries) : entries_(std::move(entries)) {}

  std::vector<Entry> entries_;
};

// OK when `principal` holds `permission` on `product` (admin: on every product; an empty product
// stands for "not about one product" and needs admin). Otherwise PERMISSION_DENIED naming the
// token's entry, its role and what it lacked.
absl::Status Authorize(const Principal& principal, Permission permission,
                       const std::string& product);

const char* RoleName(Role role);

}  // namespace musc

#endif  // MUSC_SERVER_RPC_AUTH_H_
