// `musc-bench demo`: scores an MVTec-layout test split as one batch through MuscEngine and reports
// per-image scores, image AUROC and stage timings. Real images, real features, no server.
#ifndef MUSC_BENCH_DEMO_BATCH_H_
#define MUSC_BENCH_DEMO_BATCH_H_

#include <cstdint>
#include <string>

#include "core/musc_engine.h"

namespace musc {

struct DemoOptions {
  std::string data_dir;  // A category folder: <data_dir>/test/<type>/*.png
  int64_t limit = 0;     // Use at most this many images (spread over the types); 0 = all.
  std::string out_dir;   // If set, write per-image heat maps (PNG) here.
  EngineOptions engine;
};

int RunDemoBatch(const DemoOptions& options);

}  // namespace musc

#endif  // MUSC_BENCH_DEMO_BATCH_H_
