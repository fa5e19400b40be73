// Minimal leveled logging to stderr with timestamps (one line per event; no secrets are logged).
#ifndef MUSC_SERVER_LOG_H_
#define MUSC_SERVER_LOG_H_

#include <string>
#include <string_view>

namespace musc {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Returns false for an unknown level name.
bool SetLogLevel(std::string_view name);
void Log(LogLevel level, std::string_view message);
inline void LogDebug(std::string_view m) { Log(LogLevel::kDebug, m); }
inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(std::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, m); }

}  // namespace musc

#endif  // MUSC_SERVER_LOG_H_
