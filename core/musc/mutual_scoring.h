// MSM — the Mutual Scoring Mechanism (MUSC-SPEC §4), exact, blocked and memory-bounded.
//
// For every image i and patch p, d(i,p,j) = min_q ‖Z[i,p] − Z[j,q]‖ for each j ≠ i, and the
// patch's score is the mean of the k smallest of those N−1 distances (the interval
// [interval_low, interval_high) of the sorted list; the paper uses 0 … 30 %).
//
// How it is computed: rows of Z are unit vectors, so ‖a−b‖² = 2 − 2⟨a,b⟩ and the minimum distance
// is sqrt(2 − 2·max⟨a,b⟩). One GEMM Z_i·Z_jᵀ gives both directions of the unordered pair (i, j):
// row maxima are i→j, column maxima are j→i. Pairs are visited in tiles of at most
// tile_budget bytes of similarities, and the patch-to-image table d (one float per (i, p, j)) is
// held only for a "resident" stripe of images sized to fit the rest of the budget. Pairs inside
// the stripe are computed once (both directions); a pair reaching outside it is computed from
// each side (row maxima only). With the default budget every realistic batch is one stripe.
// Peak extra memory: ≤ max(block_budget_bytes, L²·4 B + L·N·4 B) — the second term being the
// minimum working set of one pair's similarity tile plus one image's distance rows, linear in N —
// never N² (see docs/ALGORITHM.md).
#ifndef MUSC_CORE_MUSC_MUTUAL_SCORING_H_
#define MUSC_CORE_MUSC_MUTUAL_SCORING_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace musc {

struct MutualScoringOptions {
  double interval_low = 0.0;   // Fraction of the N−1 sorted distances skipped at the bottom.
  double interval_high = 0.3;  // Fraction at which the interval ends (exclusive).
  // Bound on the extra memory MSM may use (similarity tiles + the resident distance table).
  int64_t block_budget_bytes = int64_t{512} << 20;
  // 0 = exact. M in [1, N−2]: each image i is compared with the M images (i + o_k) mod N,
  // o_k = 1 + ⌊k·(N−1)/M⌋ (k = 0 … M−1): distinct, never i, spread evenly over the batch, so every
  // image is also chosen by M others. The interval is then taken over those M distances. Row
  // maxima only (the chosen relation is not symmetric), memory L·M floats per image in flight.
  int64_t approximate_neighbours = 0;
  // Element type of the similarity GEMMs on the tensor-op path (accelerators): float32, or
  // bfloat16/float16 where half-precision GEMMs are many times faster (their rounding of the
  // similarities is measured by bench/gpu_check.sh). The CPU blocked path multiplies in float32
  // only and rejects anything else.
  at::ScalarType gemm_dtype = at::kFloat;
  // Run the tensor-op path on a CPU tensor too. It is the path every non-CPU tensor takes; tests
  // use this to check it against the blocked path where no accelerator exists.
  bool force_tensor_path = false;
};

// The neighbour offsets the approximate mode uses for a batch of n images (empty when exact).
std::vector<int64_t> ApproximateNeighbourOffsets(int64_t n_images, int64_t neighbours);

// The ranks [begin, end) of the sorted N−1 distances that are averaged. Follows the reference
// (k = floor(fraction·(N−1)), bounds swapped if given in the wrong order). When that interval is
// empty — batches with N < 5 at the paper's 30 % — it is widened to one rank, [begin, begin+1)
// (for the paper's interval: the single nearest image), so small batches still get a score; the
// engine flags them as small_batch. Requires n_images ≥ 2 and 0 ≤ fractions ≤ 1.
struct IntervalRanks {
  int64_t begin = 0;
  int64_t end = 0;
  bool widened = false;
};
IntervalRanks ComputeIntervalRanks(int64_t n_images, double interval_low, double interval_high);

// How the work was laid out; reported by benchmarks and the engine's timings.
struct MutualScoringStats {
  int64_t resident_images = 0;  // Images whose distance rows are held at once (stripe size).
  int64_t stripes = 0;
  int64_t group_images = 1;  // Images stacked as the rows of one GEMM (small L only).
  int64_t pair_gemms = 0;    // Image pairs multiplied (N(N−1)/2 when fully paired).
  int64_t tile_bytes = 0;
  int64_t table_bytes = 0;
  // Wall time of the per-patch interval selection (partial sorts and means), the part of MSM
  // that is not GEMM or its max-reduction.
  double selection_seconds = 0.0;
};

// Two implementations, same results up to GEMM rounding:
//  - blocked (CPU tensors): paired GEMMs, vectorised max-reduction and partial sorts on raw
//    memory, as described above;
//  - tensor-op (any other device, or force_tensor_path): per image i, GEMMs against chunks of
//    partners, amax over each partner's patches, then top-k over the distance table of a
//    resident stripe, all as ATen ops on z's device. Unpaired (each direction computed once per
//    side) — accelerators have GEMM throughput to spare and this keeps everything in device ops.
//    Memory: the same budget split into a similarity tile and a stripe table.
// Adds weight · score(i, p) to scores_accum[i][p] for every image and patch.
// z: N×L×C contiguous float32, bfloat16 or float16 with unit-norm rows (half-precision tokens are
// widened to float32 one GEMM operand at a time: storage halves, the arithmetic stays fp32).
// scores_accum: N×L float64, contiguous, on z's device. Requires N ≥ 2. Throws c10::Error on
// malformed input.
MutualScoringStats AccumulateMutualScores(const at::Tensor& z, const MutualScoringOptions& options,
                                          double weight, at::Tensor& scores_accum);

// MSM of one query image against a bank of M other images (line mode): for each query patch the
// minimum distance to each bank image, and the mean over the interval of those M sorted distances
// — the score the query gets in a batch of the bank plus itself (ranks of
// ComputeIntervalRanks(M + 1, …)), without the bank's distances to each other. Uses the
// options' interval only; bank images are multiplied bank_chunk at a time (extra memory
// L × bank_chunk·L floats per GEMM). ATen ops on the tensors' device; the mean is in float32.
// Adds weight · score(p) to scores_accum[p]. query: L×C float32 with unit rows; bank: M×L×C
// float32 contiguous with unit rows, M ≥ 1; scores_accum: L float64. Throws c10::Error on
// malformed input.
void AccumulateQueryScores(const at::Tensor& query, const at::Tensor& bank,
                           const MutualScoringOptions& options, int64_t bank_chunk, double weight,
                           at::Tensor& scores_accum);

// Convenience: the N×L float64 scores of one (layer, degree).
at::Tensor MutualScores(const at::Tensor& z, const MutualScoringOptions& options);

}  // namespace musc

#endif  // MUSC_CORE_MUSC_MUTUAL_SCORING_H_
