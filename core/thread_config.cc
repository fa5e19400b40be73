#include "core/thread_config.h"

#include <ATen/Parallel.h>

#include <thread>

namespace musc {

int ConfigureIntraOpThreads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Sets OpenMP's thread count too, which OpenBLAS-openmp follows.
  at::set_num_threads(n);
  return at::get_num_threads();
}

}  // namespace musc
