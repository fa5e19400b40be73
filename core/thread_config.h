// Intra-op thread count for LibTorch and OpenBLAS (both OpenMP). LibTorch defaults to 1 thread
// on small VMs, so the engine always sets it explicitly.
#ifndef MUSC_CORE_THREAD_CONFIG_H_
#define MUSC_CORE_THREAD_CONFIG_H_

namespace musc {

// n ≤ 0 selects std::thread::hardware_concurrency(). Returns the count in effect.
int ConfigureIntraOpThreads(int n);

}  // namespace musc

#endif  // MUSC_CORE_THREAD_CONFIG_H_
