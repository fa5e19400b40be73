// `musc-bench line`: line mode's per-image latency against scoring a whole batch, on real images
// through the core (no server): a bank of M images is filled, then each further image is
// extracted, scored against the bank and admitted, timed one by one. The batch reference is one
// MuSc batch of M+1 images (each image compared with M others, as in the line), per image.
// Last line: line_p50_ms=… line_p99_ms=… batch_ms_per_image=… line_over_batch=…
#ifndef MUSC_BENCH_LINE_BENCHMARK_H_
#define MUSC_BENCH_LINE_BENCHMARK_H_

#include <cstdint>
#include <string>

#include "core/musc_engine.h"

namespace musc {

struct LineBenchmarkOptions {
  std::string data_dir;  // Images (searched recursively, sorted); reused cyclically if too few.
  int64_t bank_size = 64;
  int64_t scored = 32;  // Images timed after the bank is full.
  EngineOptions engine;
};

int RunLineBenchmark(const LineBenchmarkOptions& options);

}  // namespace musc

#endif  // MUSC_BENCH_LINE_BENCHMARK_H_
