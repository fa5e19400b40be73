// Naive, obviously-correct MuSc stages (MUSC-SPEC §3–§6) for the core's tests: float64, explicit
// loops over plain accessors, no blocking, no GEMM tricks. Slow on purpose; only for tiny shapes.
// Every function takes float tensors of any floating type and returns float64 tensors.
#ifndef MUSC_TESTS_CORE_MUSC_NAIVE_REFERENCE_H_
#define MUSC_TESTS_CORE_MUSC_NAIVE_REFERENCE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace musc {
namespace naive {

// LayerNorm over each image's whole C×H×W block (biased variance, eps 1e-5, no affine).
// maps: N×C×H×W → N×C×H×W.
at::Tensor LayerNormPerImage(const at::Tensor& maps);

// Mean of the r×r window centred on each position, zero padding (r−1)/2 counted in the mean.
// maps: N×C×H×W → N×C×H×W.
at::Tensor MeanPoolCountPad(const at::Tensor& maps, int64_t r);

// Bilinear resize written from the definition (PyTorch's index convention, no antialiasing).
// maps: N×C×H×W → N×C×out_h×out_w.
at::Tensor ResizeBilinear(const at::Tensor& maps, int64_t out_h, int64_t out_w, bool align_corners);

// Bicubic resize (a = −0.75, indices clamped at the borders, align_corners = false) written from
// the definition: output pixel x reads source coordinate (x + 0.5)·ratio − 0.5, where ratio is
// in/out for a resize by output size (ratio ≤ 0 selects that) or any other source-per-output
// ratio (a resize by scale factor s uses 1/s). maps: N×C×H×W → N×C×out_h×out_w.
at::Tensor ResizeBicubic(const at::Tensor& maps, int64_t out_h, int64_t out_w, double ratio_h = 0,
                         double ratio_w = 0);

// Aggregation of a layer-normalised map: pool with degree r, resize to the grid (align_corners =
// false) if it differs, then L2-normalise every position. Returns N×(grid_h·grid_w)×C.
at::Tensor AggregateNeighbourhood(const at::Tensor& normed_maps, int64_t r, int64_t grid_h,
                                  int64_t grid_w);

// The averaged ranks [begin, end) of the N−1 sorted distances, from the definition:
// k = floor(fraction·(N−1)) for both ends (swapped if reversed); an empty interval is widened to
// the single rank begin (clamped to N−2).
struct Ranks {
  int64_t begin = 0;
  int64_t end = 0;
};
Ranks IntervalRanks(int64_t n_images, double interval_low, double interval_high);

// d(i, p, j) = min_q ‖Z[i,p] − Z[j,q]‖₂ for j ≠ i (explicit differences, no ⟨a,b⟩ identity).
// z: N×L×C. Returns N×L×N with the diagonal j = i set to +inf.
at::Tensor PatchToImageDistances(const at::Tensor& z);

// MSM: the mean of the sorted N−1 distances of every (i, p) over the interval's ranks. z: N×L×C.
// Returns N×L.
at::Tensor MutualScores(const at::Tensor& z, double interval_low, double interval_high);

// The full patch-score pipeline over several layers (each N×C_l×H_l×W_l, grids may differ): LNAMD
// per layer and degree at the first layer's grid, MSM, mean over layers and degrees.
// Returns N×grid_h×grid_w.
at::Tensor PatchScores(const std::vector<at::Tensor>& layer_maps,
                       const std::vector<int64_t>& degrees, double interval_low,
                       double interval_high);

// RsCIN (MUSC-SPEC §6) with explicit loops. raw: N; features: N×D or undefined. Windows larger
// than N are clamped to N; empty windows / a 0 window / no features return raw unchanged.
// Ties in a row are broken by the lower column index.
at::Tensor Rescore(const at::Tensor& raw, const at::Tensor& features,
                   const std::vector<int64_t>& windows);

// Maximum of each N×H×W map → N.
at::Tensor MaxOfMaps(const at::Tensor& maps);

// L2-normalise every row of an M×D tensor.
at::Tensor NormaliseRows(const at::Tensor& rows);

// Test helpers: standard-normal float32 tensor from its own generator (same seed → same values),
// and the largest absolute element-wise difference of two tensors of equal shape (in float64).
at::Tensor Randn(at::IntArrayRef shape, uint64_t seed);
double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b);
// N×L×C random unit rows (float32, contiguous): Z as MSM receives it.
at::Tensor UnitRows(int64_t n, int64_t l, int64_t c, uint64_t seed);

}  // namespace naive
}  // namespace musc

#endif  // MUSC_TESTS_CORE_MUSC_NAIVE_REFERENCE_H_
