#include "tests/server/in_process_fixture.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "server/images/image_decoder.h"
#include "tests/server/test_images.h"

namespace musc::testing {

std::vector<ProductConfig> ProductsFromYaml(const std::string& yaml) {
  absl::StatusOr<std::vector<ProductConfig>> products =
      ParseProducts(yaml, "in-process test products", "/");
  EXPECT_TRUE(products.ok()) << products.status();
  return products.ok() ? *std::move(products) : std::vector<ProductConfig>{};
}

std::string TexturePngFor(uint64_t seed) { return TexturePng(seed, /*defect=*/false); }

cv::Mat DecodedTexture(uint64_t seed) {
  absl::StatusOr<DecodedImage> decoded = DecodeImage(TexturePngFor(seed), DecodeLimits{});
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return decoded.ok() ? decoded->pixels : cv::Mat();
}

namespace {

// Counts the session's change notifications. The waiter reads the count before it checks the
// session and sleeps only until the count moves, so a change between the check and the wait is
// never missed; the session's own lock is never taken while this mutex is held.
class ChangeCounter final : public SessionWatcher {
 public:
  void OnSessionChanged() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++changes_;
    }
    changed_.notify_all();
  }
  uint64_t changes() {
    std::lock_guard<std::mutex> lock(mu_);
    return changes_;
  }
  // False when the deadline passed with no change after `seen`.
  bool WaitPast(uint64_t seen, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_until(lock, deadline, [&] { return changes_ != seen; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  uint64_t changes_ = 0;
};

}  // namespace

bool WaitFinal(Session& session, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto counter = std::make_shared<ChangeCounter>();
  session.AddWatcher(counter);
  for (;;) {
    const uint64_t seen = counter->changes();
    if (session.IsFinal()) return true;
    if (!counter->WaitPast(seen, deadline)) return session.IsFinal();
  }
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

std::optional<double> SampleValue(const std::string& exposition, const std::string& sample) {
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 &&
        line[sample.size()] == ' ') {
      return std::stod(line.substr(sample.size() + 1));
    }
  }
  return std::nullopt;
}

}  // namespace musc::testing
