// Resident-memory readings of this process from /proc (Linux).
#ifndef MUSC_BENCH_PROCESS_MEMORY_H_
#define MUSC_BENCH_PROCESS_MEMORY_H_

#include <cstdint>

namespace musc {

int64_t CurrentRssBytes();  // VmRSS
int64_t PeakRssBytes();     // VmHWM
// Resets the peak to the current RSS (writes 5 to /proc/self/clear_refs), so a peak can be
// measured per experiment inside one process. Returns false if the kernel refuses.
bool ResetPeakRss();

}  // namespace musc

#endif  // MUSC_BENCH_PROCESS_MEMORY_H_
