#include "server/rpc/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <iterator>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "server/yaml_keys.h"

namespace musc {
namespace {

// Far above any real token (openssl rand -hex 32 gives 64 characters); bounds the hashing work
// an unauthenticated caller can ask for.
constexpr size_t kMaxTokenLength = 4096;

Authenticator::Digest Sha256(absl::string_view data) {
  Authenticator::Digest digest{};
  unsigned int length = 0;
  // EVP_Digest cannot fail for SHA-256 on in-memory data short of an allocation failure, which
  // leaves the digest zero: no stored hash is all zeros in practice, so that matches nothing.
  EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

bool ParseHexDigest(const std::string& hex, Authenticator::Digest* out) {
  if (hex.size() != 2 * out->size()) return false;
  for (size_t i = 0; i < out->size(); ++i) {
    int byte = 0;
    for (int k = 0; k < 2; ++k) {
      const char c = absl::ascii_tolower(static_cast<unsigned char>(hex[2 * i + k]));
      int v = 0;
      if (c >= '0' && c <= '9') {
        v = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
      } else {
        return false;
      }
      byte = byte * 16 + v;
    }
    (*out)[i] = static_cast<unsigned char>(byte);
  }
  return true;
}

bool IsEntryName(const std::string& name) {
  return !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
           c == '@';
  });
}

absl::StatusOr<Role> ParseRole(const std::string& text) {
  if (text == "read") return Role::kRead;
  if (text == "submit") return Role::kSubmit;
  if (text == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("role '", text, "' is not one of read, submit, admin"));
}

const char* PermissionVerb(Permission p) {
  switch (p) {
    case Permission::kRead:
      return "read";
    case Permission::kSubmit:
      return "submit to";
    case Permission::kAdmin:
      return "administer";
  }
  return "use";
}

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  const Authenticator::Digest digest = Sha256(data);
  std::string hex;
  hex.reserve(2 * digest.size());
  for (unsigned char b : digest) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 15]);
  }
  return hex;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kSubmit:
      return "submit";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Parse(
    const std::string& yaml_text, const std::string& source_name,
    const std::vector<std::string>& known_products) {
  const std::set<std::string> known(known_products.begin(), known_products.end());
  std::vector<Entry> entries;
  try {
    const YAML::Node root = YAML::Load(yaml_text);
    // Either a list of entries or {tokens: [entries]}.
    YAML::Node list = root;
    if (root.IsMap()) {
      MUSC_RETURN_IF_ERROR(CheckKeys(root, {"tokens"}, source_name, "expected 'tokens'"));
      list = root["tokens"];
    }
    if (!list || !list.IsSequence() || list.size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          source_name, ": expected a non-empty list of tokens ({name, sha256, products, role})"));
    }
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node node = list[i];
      std::string where = absl::StrCat(source_name, ": tokens[", i, "]");
      if (!node.IsMap()) return absl::InvalidArgumentError(where + ": expected a mapping");
      // Errors name the entry by its name too once it is known.
      Entry entry;
      if (node["name"]) {
        entry.principal.name = node["name"].as<std::string>();
        if (!IsEntryName(entry.principal.name)) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": name '", entry.principal.name,
                           "' must be 1..128 characters of A-Z a-z 0-9 . _ - @"));
        }
        where = absl::StrCat(where, " ('", entry.principal.name, "')");
      }
      // The hint lists the keys in the order the documentation gives them.
      MUSC_RETURN_IF_ERROR(CheckKeys(node, {"name", "sha256", "products", "role"}, where,
                                     "allowed: name, sha256, products, role"));
      if (!node["name"]) return absl::InvalidArgumentError(where + ": missing 'name'");
      if (!names.insert(entry.principal.name).second) {
        return absl::InvalidArgumentError(where + ": duplicate name");
      }
      // The hash is deliberately not echoed in errors: the file may be shown to more people than
      // should see it.
      if (!node["sha256"]) return absl::InvalidArgumentError(where + ": missing 'sha256'");
      if (!ParseHexDigest(node["sha256"].as<std::string>(), &entry.sha256)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where,
                         ": sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum, or "
                         "musc-client hash-token)"));
      }
      for (const Entry& other : entries) {
        if (CRYPTO_memcmp(other.sha256.data(), entry.sha256.data(), entry.sha256.size()) == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": same sha256 as '", other.principal.name, "' (one token, two entries)"));
        }
      }
      if (!node["role"]) return absl::InvalidArgumentError(where + ": missing 'role'");
      absl::StatusOr<Role> role = ParseRole(node["role"].as<std::string>());
      if (!role.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", role.status().message()));
      }
      entry.principal.role = *role;
      std::vector<std::string> products;
      if (node["products"]) {
        if (!node["products"].IsSequence()) {
          return absl::InvalidArgumentError(
              where + ": products must be a list of product names, or [\"*\"] for all");
        }
        products = node["products"].as<std::vector<std::string>>();
      }
      const bool star = std::find(products.begin(), products.end(), "*") != products.end();
      if (*role == Role::kAdmin) {
        // Admin is defined as every product; a narrower list would suggest a restriction that
        // does not exist.
        if (!products.empty() && !(star && products.size() == 1)) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": role admin applies to every product; omit products or set [\"*\"]"));
        }
        entry.principal.all_products = true;
      } else if (products.empty()) {
        return absl::InvalidArgumentError(
            where + ": missing 'products' (a list of product names, or [\"*\"] for all)");
      } else if (star) {
        if (products.size() != 1) {
          return absl::InvalidArgumentError(where + ": \"*\" must be the only entry of products");
        }
        entry.principal.all_products = true;
      } else {
        entry.principal.all_products = false;
        for (const std::string& p : products) {
          if (known.count(p) == 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                where, ": unknown product '", p, "' (known: ", absl::StrJoin(known, ", "), ")"));
          }
          entry.principal.products.insert(p);
        }
      }
      entries.push_back(std::move(entry));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
  return std::unique_ptr<Authenticator>(new Authenticator(std::move(entries)));
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::LoadFile(
    const std::string& path, const std::vector<std::string>& known_products) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot read tokens file ", path));
  return Parse(*text, path, known_products);
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    const grpc::CallbackServerContext& context) const {
  const auto& metadata = context.client_metadata();
  const auto [first, last] = metadata.equal_range("authorization");
  if (first == last) return AuthenticateHeader(nullptr);
  if (std::next(first) != last) {
    return absl::UnauthenticatedError(
        "more than one authorization header; send exactly one 'authorization: Bearer <token>'");
  }
  const std::string value(first->second.data(), first->second.size());
  return AuthenticateHeader(&value);
}

absl::StatusOr<Principal> Authenticator::AuthenticateHeader(
    const std::string* authorization) const {
  if (authorization == nullptr) {
    return absl::UnauthenticatedError(
        "this server requires a token: send metadata 'authorization: Bearer <token>' "
        "(musc-client: --token_file or MUSC_TOKEN)");
  }
  // RFC 6750: the scheme is case-insensitive; the token is what follows the separating space.
  constexpr absl::string_view kScheme = "bearer ";
  const absl::string_view value(*authorization);
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected 'Bearer <token>'");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(value.substr(kScheme.size()));
  if (token.empty() || token.size() > kMaxTokenLength) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected 'Bearer <token>'");
  }
  const Digest digest = Sha256(token);
  // Every entry is compared, each in constant time, so the time taken says nothing about how
  // close the token came to a stored one or where in the file its entry is.
  const Entry* match = nullptr;
  for (const Entry& entry : entries_) {
    const bool equal = CRYPTO_memcmp(entry.sha256.data(), digest.data(), digest.size()) == 0;
    if (equal) match = &entry;
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown or revoked token");
  return match->principal;
}

absl::Status Authorize(const Principal& principal, Permission permission,
                       const std::string& product) {
  const bool role_ok = static_cast<int>(principal.role) >= static_cast<int>(permission);
  const bool product_ok =
      principal.all_products || (!product.empty() && principal.products.count(product) != 0);
  if (role_ok && product_ok) return absl::OkStatus();
  if (!role_ok) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token '", principal.name, "' has role ", RoleName(principal.role), " and may not ",
        PermissionVerb(permission),
        product.empty() ? std::string(" this server") : absl::StrCat(" product '", product, "'")));
  }
  return absl::PermissionDeniedError(
      absl::StrCat("token '", principal.name, "' is not granted product '", product, "'"));
}

}  // namespace musc
