// Anomaly maps and image scores (MUSC-SPEC §5).
#ifndef MUSC_CORE_MUSC_ANOMALY_MAP_H_
#define MUSC_CORE_MUSC_ANOMALY_MAP_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace musc {

// patch_scores: N×H×W (any floating type) → N×out_h×out_w float32, bilinear, align_corners=true.
at::Tensor UpsamplePatchScores(const at::Tensor& patch_scores, int64_t out_h, int64_t out_w);

// Resizes one out-of-engine map (H×W float32) to a client's original resolution (bilinear,
// align_corners=false, as an image resize).
at::Tensor ResizeMap(const at::Tensor& map, int64_t out_h, int64_t out_w);

// The raw image score of each map: its maximum. maps: N×H×W → N float32.
at::Tensor MaxOfMaps(const at::Tensor& maps);

}  // namespace musc

#endif  // MUSC_CORE_MUSC_ANOMALY_MAP_H_
