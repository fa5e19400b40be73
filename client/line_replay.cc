#include "client/line_replay.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"

namespace musc {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

absl::StatusOr<LineReplayResult> ReplayLine(MuscClient& client,
                                            const std::vector<EncodedImage>& images,
                                            const LineReplayOptions& options,
                                            const LineResultCallback& on_result) {
  absl::StatusOr<v1::Product> product = client.GetProduct(options.product);
  if (!product.ok()) return product.status();
  if (!product->has_line()) {
    return absl::FailedPreconditionError(
        absl::StrCat("product '", options.product, "' has no line mode on this server"));
  }
  LineReplayResult result;
  result.warmup_images =
      static_cast<int>(std::min<size_t>(product->line().warmup_images(), images.size()));
  result.responses.resize(images.size());
  result.latency_seconds.resize(images.size());

  std::mutex mu;
  std::condition_variable changed;
  absl::Status first_error;
  int in_flight = 0;
  auto score = [&](size_t i) {
    const Clock::time_point sent = Clock::now();
    absl::StatusOr<v1::ScoreImageResponse> r =
        client.ScoreImage(options.product, images[i], options.map_options);
    const double latency = Seconds(Clock::now() - sent);
    std::lock_guard<std::mutex> lock(mu);
    if (r.ok()) {
      result.responses[i] = *std::move(r);
      result.latency_seconds[i] = latency;
      if (on_result) on_result(i, result.responses[i], latency);
    } else if (first_error.ok()) {
      first_error = absl::Status(r.status().code(), absl::StrCat("image '", images[i].client_id,
                                                                 "': ", r.status().message()));
    }
    --in_flight;
    changed.notify_all();
  };

  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  // The warm-up images wait for each other on the server: they must be in flight together.
  for (size_t i = 0; i < static_cast<size_t>(result.warmup_images); ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++in_flight;
    }
    threads.emplace_back(score, i);
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    changed.wait(lock, [&] { return in_flight == 0; });
  }
  const Clock::time_point line_start = Clock::now();
  for (size_t i = static_cast<size_t>(result.warmup_images); i < images.size(); ++i) {
    if (options.rate <= 0) {
      score(i);  // Back to back: the line's order is exactly the given order.
      std::lock_guard<std::mutex> lock(mu);
      if (!first_error.ok()) break;
      continue;
    }
    const Clock::time_point due =
        line_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                         static_cast<double>(i - result.warmup_images) / options.rate));
    std::this_thread::sleep_until(due);
    std::unique_lock<std::mutex> lock(mu);
    changed.wait(lock, [&] { return in_flight < std::max(1, options.max_in_flight); });
    if (!first_error.ok()) break;
    ++in_flight;
    lock.unlock();
    threads.emplace_back(score, i);
  }
  for (std::thread& t : threads) t.join();
  result.seconds = Seconds(Clock::now() - start);
  if (!first_error.ok()) return first_error;
  return result;
}

}  // namespace musc
