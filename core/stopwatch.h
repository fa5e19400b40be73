// Wall-clock lap timer for stage timings (engine stages, MSM's selection share).
#ifndef MUSC_CORE_STOPWATCH_H_
#define MUSC_CORE_STOPWATCH_H_

#include <chrono>

namespace musc {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  // Seconds since construction or the previous Lap.
  double Lap() {
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - start_).count();
    start_ = now;
    return s;
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace musc

#endif  // MUSC_CORE_STOPWATCH_H_
