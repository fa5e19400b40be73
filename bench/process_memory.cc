#include "bench/process_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace musc {
namespace {

int64_t StatusFieldBytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::istringstream values(line.substr(field.size() + 1));
      int64_t kib = 0;
      values >> kib;
      return kib * 1024;
    }
  }
  return -1;
}

}  // namespace

int64_t CurrentRssBytes() { return StatusFieldBytes("VmRSS"); }
int64_t PeakRssBytes() { return StatusFieldBytes("VmHWM"); }

bool ResetPeakRss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

}  // namespace musc
