#include "server/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace musc {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
const char* const kNames[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

}  // namespace

bool SetLogLevel(std::string_view name) {
  for (int k = 0; k < 4; ++k) {
    std::string lower(kNames[k]);
    for (char& c : lower) c = static_cast<char>(c - 'A' + 'a');
    if (name == lower) {
      g_level = k;
      return true;
    }
  }
  return false;
}

void Log(LogLevel level, std::string_view message) {
  if (static_cast<int>(level) < g_level.load()) return;
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stderr, "%s.%03dZ %s %.*s\n", stamp, ms, kNames[static_cast<int>(level)],
               static_cast<int>(message.size()), message.data());
}

}  // namespace musc
