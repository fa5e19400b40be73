#include "server/batch/session_manager.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "server/log.h"

namespace musc {
namespace {

// "<product>:<32 lowercase hex>". 128 random bits: session ids are unguessable, so knowing one
// is a capability. The product prefix lets a client (and a proxy routing by the x-musc-product
// header) find the replica that holds the session from the id alone; product names are restricted
// to [A-Za-z0-9._-] (product_config.cc), so the last ':' always separates the two parts.
std::string NewSessionId(const std::string& product) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%s:%016x%016x", product, rng(), rng());
}

}  // namespace

SessionManager::SessionManager(std::vector<ProductConfig> products, Scheduler* scheduler,
                               SessionManagerOptions options, ServerMetrics* metrics)
    : products_(std::move(products)), scheduler_(scheduler), options_(options), metrics_(metrics) {
  janitor_ = std::thread([this] { JanitorLoop(); });
}

SessionManager::~SessionManager() {
  {
    std::lock_guard<std::mutex> lock(janitor_mu_);
    janitor_stop_ = true;
  }
  janitor_wake_.notify_all();
  janitor_.join();
}

const ProductConfig* SessionManager::FindProduct(const std::string& name) const {
  for (const ProductConfig& p : products_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<Session>> SessionManager::Create(
    const std::string& product_name, std::optional<SealPolicyConfig> seal_policy,
    std::map<std::string, std::string> labels) {
  if (!accepting_) return absl::UnavailableError("server is shutting down; not opening sessions");
  const ProductConfig* product = FindProduct(product_name);
  if (product == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown product '", product_name, "'"));
  }
  const SealPolicyConfig policy = seal_policy.value_or(product->auto_seal);
  if (policy.idle_seconds < 0) {
    return absl::InvalidArgumentError("seal_policy.idle_seconds must not be negative");
  }
  if (policy.at_count > product->max_images) {
    return absl::InvalidArgumentError(absl::StrCat("seal_policy.at_count ", policy.at_count,
                                                   " exceeds product '", product->name,
                                                   "' max_images ", product->max_images));
  }
  auto session = std::make_shared<Session>(NewSessionId(product->name), product, policy,
                                           std::move(labels), metrics_);
  std::lock_guard<std::mutex> lock(mu_);
  if (sessions_.size() >= options_.max_sessions) {
    if (metrics_ != nullptr) metrics_->LimitRefused("max_sessions");
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server holds ", sessions_.size(), " sessions, its maximum; finish or cancel some"));
  }
  if (options_.max_sessions_per_product > 0) {
    size_t unfinished = 0;
    for (const auto& [id, other] : sessions_) {
      if (other->product().name == product->name && !other->IsFinal()) ++unfinished;
    }
    if (unfinished >= options_.max_sessions_per_product) {
      if (metrics_ != nullptr) metrics_->LimitRefused("sessions_per_product");
      return absl::ResourceExhaustedError(absl::StrCat(
          "product '", product->name, "' has ", unfinished,
          " unfinished sessions, its maximum (--max_sessions_per_product); seal, finish or "
          "cancel some"));
    }
  }
  // Durable before the id is returned, so every image acknowledged later has its session.
  if (options_.spool != nullptr) MUSC_RETURN_IF_ERROR(session->StoreIn(options_.spool));
  sessions_[session->id()] = session;
  if (metrics_ != nullptr) metrics_->SessionCreated(product->name);
  return session;
}

absl::StatusOr<std::shared_ptr<Session>> SessionManager::Get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "session '", id,
        "' not found on this replica (unknown, its results' retention period has ended, or it "
        "lived on a replica that restarted)"));
  }
  return it->second;
}

void SessionManager::Adopt(std::shared_ptr<Session> session) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[session->id()] = std::move(session);
}

std::vector<std::shared_ptr<Session>> SessionManager::List(
    const std::string& product, const std::vector<v1::SessionState>& states) const {
  std::vector<std::shared_ptr<Session>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, session] : sessions_) {
    if (!product.empty() && session->product().name != product) continue;
    if (!states.empty() &&
        std::find(states.begin(), states.end(), session->state()) == states.end()) {
      continue;
    }
    out.push_back(session);
  }
  return out;
}

absl::StatusOr<uint32_t> SessionManager::AddImage(Session& session, SessionImage image) {
  if (!accepting_) return absl::UnavailableError("server is shutting down; not accepting images");
  bool reached_seal_count = false;
  absl::StatusOr<uint32_t> index =
      session.AddImage(std::move(image), options_.max_session_bytes, &reached_seal_count);
  if (index.ok() && reached_seal_count) {
    absl::StatusOr<std::shared_ptr<Session>> shared = Get(session.id());
    // An auto-seal the queue refuses leaves the session OPEN; the janitor retries it.
    if (shared.ok()) Seal(*shared).IgnoreError();
  }
  return index;
}

absl::Status SessionManager::Seal(const std::shared_ptr<Session>& session) {
  const v1::SessionState before = session->state();
  if (absl::Status s = session->Seal(); !s.ok()) return s;
  if (before != v1::OPEN) return absl::OkStatus();  // Already sealed: idempotent.
  if (absl::Status s = scheduler_->Enqueue(session); !s.ok()) {
    session->Unseal();
    return s;
  }
  return absl::OkStatus();
}

std::map<std::pair<std::string, v1::SessionState>, int> SessionManager::CountByState() const {
  std::map<std::pair<std::string, v1::SessionState>, int> counts;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, session] : sessions_) {
    ++counts[{session->product().name, session->state()}];
  }
  return counts;
}

void SessionManager::StopAccepting() { accepting_ = false; }

void SessionManager::Sweep(Clock::time_point now) {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, session] : sessions_) all.push_back(session);
  }
  std::vector<std::string> expired;
  for (const auto& session : all) {
    const v1::SessionState state = session->state();
    if (state == v1::OPEN) {
      const double idle = std::chrono::duration<double>(now - session->last_activity()).count();
      const bool enough = session->image_count() >= session->product().min_images;
      if (session->idle_seal_seconds() > 0 && idle >= session->idle_seal_seconds() && enough) {
        // Refused by a full queue: stays OPEN and is retried on the next sweep.
        Seal(session).IgnoreError();
      } else if (idle * 1000.0 >= static_cast<double>(options_.idle_ttl.count())) {
        session
            ->Cancel(absl::StrCat("expired: no activity for ", static_cast<int64_t>(idle),
                                  " s (idle TTL)"))
            .IgnoreError();
      }
    } else if (session->IsFinal() && now - session->finish_time() >= options_.retention) {
      expired.push_back(session->id());
    }
  }
  if (!expired.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& id : expired) sessions_.erase(id);
  }
  if (options_.spool != nullptr) {
    // A session whose files stay behind comes back at the next start and is swept again then.
    for (const std::string& id : expired) {
      if (absl::Status s = options_.spool->Remove(id); !s.ok()) LogWarning(s.ToString());
    }
  }
}

void SessionManager::JanitorLoop() {
  std::unique_lock<std::mutex> lock(janitor_mu_);
  while (!janitor_stop_) {
    janitor_wake_.wait_for(lock, options_.sweep_interval, [this] { return janitor_stop_; });
    if (janitor_stop_) break;
    lock.unlock();
    Sweep(Clock::now());
    lock.lock();
  }
}

}  // namespace musc
