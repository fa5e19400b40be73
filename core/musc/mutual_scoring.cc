#include "core/musc/mutual_scoring.h"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/stopwatch.h"

namespace musc {
namespace {

// Small enough that the reduction reads the GEMM output back from cache (docs/ALGORITHM.md).
constexpr int64_t kMaxTileBytes = int64_t{8} << 20;

// The similarity tile's share of the block budget: a quarter, at most kMaxTileBytes.
int64_t TileShare(int64_t budget_bytes) { return std::min(kMaxTileBytes, budget_bytes / 4); }

// Minimum distance between unit vectors from their maximum inner product.
inline float DistanceFromSimilarity(float similarity) {
  return std::sqrt(std::max(0.0f, 2.0f - 2.0f * similarity));
}

// The same as tensor ops, in place: ‖a−b‖ = sqrt(2 − 2⟨a,b⟩) for unit vectors; rounding can push
// 2 − 2⟨a,b⟩ just below zero.
at::Tensor& DistancesFromSimilarities(at::Tensor& similarities) {
  return similarities.mul_(-2.0).add_(2.0).clamp_min_(0.0).sqrt_();
}

// query: L×C; partners: m×L×C (same type). The best similarity of each query patch within each
// partner image, L×m: one GEMM against all m partners, then the maximum over each one's patches.
at::Tensor BestSimilarities(const at::Tensor& query, const at::Tensor& partners) {
  const int64_t l = query.size(0);
  const int64_t m = partners.size(0);
  const at::Tensor sims =
      at::mm(query, partners.reshape({m * partners.size(1), query.size(1)}).t());
  return sims.view({l, m, partners.size(1)}).amax(-1);
}

// One L×L block of similarities between image a (rows) and image b (columns), inside a tile whose
// rows are `stride` floats apart. Writes the row maxima (a→b) to row_max[p] and, if col_max is not
// null, the column maxima (b→a) to col_max[q]. One pass over the block; both inner loops are
// element-wise or split into independent accumulators so they vectorise (AVX2 clone where the
// CPU has it, SSE2 otherwise).
__attribute__((target_clones("avx2", "default"))) void ReducePairBlock(const float* block,
                                                                       int64_t stride, int64_t rows,
                                                                       int64_t cols, float* row_max,
                                                                       float* col_max) {
  constexpr int kLanes = 16;
  const float lowest = -std::numeric_limits<float>::infinity();
  if (col_max != nullptr) std::fill(col_max, col_max + cols, lowest);
  for (int64_t p = 0; p < rows; ++p) {
    const float* row = block + p * stride;
    if (col_max != nullptr) {
      for (int64_t q = 0; q < cols; ++q) col_max[q] = row[q] > col_max[q] ? row[q] : col_max[q];
    }
    float lanes[kLanes];
    for (int k = 0; k < kLanes; ++k) lanes[k] = lowest;
    int64_t q = 0;
    for (; q + kLanes <= cols; q += kLanes) {
      for (int k = 0; k < kLanes; ++k) lanes[k] = row[q + k] > lanes[k] ? row[q + k] : lanes[k];
    }
    float m = lowest;
    for (int k = 0; k < kLanes; ++k) m = lanes[k] > m ? lanes[k] : m;
    for (; q < cols; ++q) m = row[q] > m ? row[q] : m;
    row_max[p] = m;
  }
}

// GEMMs shorter than this many rows run well below the machine's GEMM rate (ViT-B/32's L = 49):
// consecutive images are then stacked as the rows of one GEMM.
constexpr int64_t kTargetGemmRows = 512;

// Work layout for one call, derived from the budget.
struct Plan {
  int64_t group_images;     // Images stacked as the rows of one GEMM (1 unless L is small).
  int64_t chunk_images;     // Partner images per GEMM for a group (columns of a tile).
  int64_t resident_images;  // Images whose distance rows are held at once.
};

// widen_bytes: per partner image, the fp32 copy of its tokens made when Z is stored in half
// precision (L·C·4 B; 0 for fp32 Z), counted in the tile's share of the budget.
Plan MakePlan(int64_t n, int64_t l, int64_t budget_bytes, int64_t widen_bytes) {
  const int64_t pair_bytes = l * l * static_cast<int64_t>(sizeof(float)) + widen_bytes;
  const int64_t tile_share = TileShare(budget_bytes);
  Plan plan;
  // Stacking is limited by the tile's share of the budget as well, so small budgets keep the
  // documented bound.
  plan.group_images =
      std::clamp<int64_t>(std::min(kTargetGemmRows / l, tile_share / pair_bytes), 1, n);
  plan.chunk_images = std::clamp<int64_t>(tile_share / (plan.group_images * pair_bytes), 1,
                                          std::max<int64_t>(n - 1, 1));
  const int64_t table_budget =
      budget_bytes - plan.group_images * (plan.chunk_images * pair_bytes + widen_bytes);
  const int64_t row_bytes = l * n * static_cast<int64_t>(sizeof(float));
  plan.resident_images = std::clamp<int64_t>(table_budget / row_bytes, 1, n);
  return plan;
}

// Mean of ranks [ranks.begin, ranks.end) of values (reordered in place), in double.
double IntervalMean(std::vector<float>& values, const IntervalRanks& ranks) {
  std::nth_element(values.begin(), values.begin() + (ranks.end - 1), values.end());
  if (ranks.begin > 0) {
    std::nth_element(values.begin(), values.begin() + ranks.begin, values.begin() + ranks.end);
  }
  double sum = 0.0;
  for (int64_t k = ranks.begin; k < ranks.end; ++k) sum += values[k];
  return sum / static_cast<double>(ranks.end - ranks.begin);
}

// Approximate MSM: image i against its M chosen neighbours only. Image by image, so the distance
// table is L×M floats; neighbours are gathered (and widened to fp32) a chunk at a time so each GEMM
// is L × C × chunk·L like the exact path's.
MutualScoringStats AccumulateApproximate(const at::Tensor& z, const MutualScoringOptions& options,
                                         double weight, at::Tensor& scores_accum) {
  const int64_t n = z.size(0);
  const int64_t l = z.size(1);
  const int64_t c = z.size(2);
  const std::vector<int64_t> offsets =
      ApproximateNeighbourOffsets(n, std::min(options.approximate_neighbours, n - 1));
  const int64_t m_total = static_cast<int64_t>(offsets.size());
  // The interval is taken over the M distances each patch has, as if the batch held M + 1 images.
  const IntervalRanks ranks =
      ComputeIntervalRanks(m_total + 1, options.interval_low, options.interval_high);
  // Per neighbour in flight: its L×L similarities and its gathered fp32 tokens.
  const int64_t pair_bytes = (l * l + l * c) * static_cast<int64_t>(sizeof(float));
  const int64_t tile_share = TileShare(options.block_budget_bytes);
  const int64_t chunk = std::clamp<int64_t>(tile_share / pair_bytes, 1, m_total);

  MutualScoringStats stats;
  stats.resident_images = 1;
  stats.stripes = 1;
  stats.tile_bytes = chunk * l * l * static_cast<int64_t>(sizeof(float));
  stats.table_bytes = l * m_total * static_cast<int64_t>(sizeof(float));
  const at::TensorOptions fp32 = z.options().dtype(at::kFloat);
  at::Tensor tile = at::empty({chunk * l * l}, fp32);
  at::Tensor gathered = at::empty({chunk, l, c}, fp32);
  std::vector<float> table(static_cast<size_t>(l * m_total));
  float* const tile_data = tile.data_ptr<float>();
  double* const accum = scores_accum.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor zi = z[i].to(at::kFloat);  // A view when z is already fp32.
    for (int64_t k0 = 0; k0 < m_total; k0 += chunk) {
      const int64_t m = std::min(chunk, m_total - k0);
      for (int64_t k = 0; k < m; ++k) gathered[k].copy_(z[(i + offsets[k0 + k]) % n]);
      at::Tensor sims = tile.narrow(0, 0, m * l * l).view({l, m * l});
      at::mm_out(sims, zi, gathered.narrow(0, 0, m).view({m * l, c}).t());
      stats.pair_gemms += m;
      at::parallel_for(0, m, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> row_max(l);
        for (int64_t k = begin; k < end; ++k) {
          ReducePairBlock(tile_data + k * l, m * l, l, l, row_max.data(), nullptr);
          float* out = table.data() + k0 + k;
          for (int64_t p = 0; p < l; ++p) out[p * m_total] = DistanceFromSimilarity(row_max[p]);
        }
      });
    }
    Stopwatch selection;
    at::parallel_for(0, l, 64, [&](int64_t begin, int64_t end) {
      std::vector<float> values(m_total);
      for (int64_t p = begin; p < end; ++p) {
        const float* distances = table.data() + p * m_total;
        std::copy(distances, distances + m_total, values.begin());
        accum[i * l + p] += weight * IntervalMean(values, ranks);
      }
    });
    stats.selection_seconds += selection.Lap();
  }
  return stats;
}

// The tensor-op path (see the header): device-agnostic ATen ops only, no raw pointers.
MutualScoringStats AccumulateWithTensorOps(const at::Tensor& z, const MutualScoringOptions& options,
                                           double weight, at::Tensor& scores_accum) {
  const int64_t n = z.size(0);
  const int64_t l = z.size(1);
  const int64_t c = z.size(2);
  const bool approximate = options.approximate_neighbours > 0;
  // Partner columns per image: every image (its own column masked out) or its M neighbours.
  const std::vector<int64_t> offsets =
      approximate ? ApproximateNeighbourOffsets(n, std::min(options.approximate_neighbours, n - 1))
                  : std::vector<int64_t>{};
  const int64_t columns = approximate ? static_cast<int64_t>(offsets.size()) : n;
  const int64_t compared = approximate ? columns : n - 1;
  const IntervalRanks ranks =
      ComputeIntervalRanks(compared + 1, options.interval_low, options.interval_high);

  const at::Tensor zc = z.to(options.gemm_dtype);  // No copy when the types already agree.
  const int64_t gemm_elt = static_cast<int64_t>(c10::elementSize(options.gemm_dtype));
  const int64_t pair_bytes = l * l * gemm_elt + (approximate ? l * c * gemm_elt : 0);
  // The 8 MiB cap is for CPU caches; an accelerator wants few, large GEMMs (each launch costs
  // microseconds), so there the tile takes its whole share of the budget.
  const int64_t tile_share =
      z.is_cpu() ? TileShare(options.block_budget_bytes) : options.block_budget_bytes / 4;
  const int64_t chunk = std::clamp<int64_t>(tile_share / pair_bytes, 1, columns);
  // The stripe's table and its distance and top-k temporaries: ~3 floats per entry.
  const int64_t row_bytes = 3 * l * columns * static_cast<int64_t>(sizeof(float));
  const int64_t resident = std::clamp<int64_t>(
      (options.block_budget_bytes - chunk * pair_bytes) / std::max<int64_t>(row_bytes, 1), 1, n);

  MutualScoringStats stats;
  stats.resident_images = resident;
  stats.tile_bytes = chunk * l * l * gemm_elt;
  stats.table_bytes = resident * l * columns * static_cast<int64_t>(sizeof(float));
  const at::TensorOptions fp32 = z.options().dtype(at::kFloat);
  at::Tensor neighbour_index;
  if (approximate) {
    neighbour_index = at::tensor(offsets, z.options().dtype(at::kLong));
  }
  for (int64_t s0 = 0; s0 < n; s0 += resident) {
    const int64_t s1 = std::min(n, s0 + resident);
    ++stats.stripes;
    at::Tensor table = at::empty({s1 - s0, l, columns}, fp32);  // Best similarity per partner.
    for (int64_t i = s0; i < s1; ++i) {
      const at::Tensor zi = zc[i];
      at::Tensor partner_ids;
      if (approximate) partner_ids = (neighbour_index + i).remainder_(n);
      for (int64_t j0 = 0; j0 < columns; j0 += chunk) {
        const int64_t m = std::min(chunk, columns - j0);
        const at::Tensor partners =
            approximate ? zc.index_select(0, partner_ids.narrow(0, j0, m)) : zc.narrow(0, j0, m);
        table[i - s0].narrow(1, j0, m).copy_(BestSimilarities(zi, partners));
        stats.pair_gemms += m;
      }
    }
    Stopwatch selection;
    at::Tensor& distances = DistancesFromSimilarities(table);
    if (!approximate) {
      // An image is not its own partner: its column sorts last and never reaches the interval.
      for (int64_t i = s0; i < s1; ++i) {
        distances[i - s0].select(1, i).fill_(std::numeric_limits<float>::infinity());
      }
    }
    const at::Tensor nearest =
        std::get<0>(at::topk(distances, ranks.end, -1, /*largest=*/false, /*sorted=*/true));
    const at::Tensor means =
        nearest.narrow(-1, ranks.begin, ranks.end - ranks.begin).to(at::kDouble).mean(-1);
    scores_accum.narrow(0, s0, s1 - s0).add_(means, weight);
    stats.selection_seconds += selection.Lap();
  }
  return stats;
}

}  // namespace

std::vector<int64_t> ApproximateNeighbourOffsets(int64_t n_images, int64_t neighbours) {
  TORCH_CHECK(neighbours >= 0 && neighbours <= n_images - 1, "cannot choose ", neighbours,
              " neighbours among the ", n_images - 1, " other images");
  std::vector<int64_t> offsets;
  offsets.reserve(static_cast<size_t>(neighbours));
  // Step (N−1)/M ≥ 1, so the offsets are strictly increasing within [1, N−1]: distinct, never 0.
  for (int64_t k = 0; k < neighbours; ++k) offsets.push_back(1 + k * (n_images - 1) / neighbours);
  return offsets;
}

IntervalRanks ComputeIntervalRanks(int64_t n_images, double interval_low, double interval_high) {
  TORCH_CHECK(n_images >= 2, "mutual scoring needs at least 2 images, got ", n_images);
  TORCH_CHECK(
      interval_low >= 0.0 && interval_low <= 1.0 && interval_high >= 0.0 && interval_high <= 1.0,
      "interval fractions must lie in [0, 1], got [", interval_low, ", ", interval_high, ")");
  const int64_t others = n_images - 1;
  // Same arithmetic as the reference (Python int() of a double product).
  IntervalRanks ranks;
  ranks.begin = static_cast<int64_t>(interval_low * static_cast<double>(others));
  ranks.end = static_cast<int64_t>(interval_high * static_cast<double>(others));
  if (ranks.end < ranks.begin) std::swap(ranks.begin, ranks.end);
  if (ranks.end <= ranks.begin) {
    ranks.widened = true;
    ranks.begin = std::min(ranks.begin, others - 1);
    ranks.end = ranks.begin + 1;
  }
  return ranks;
}

MutualScoringStats AccumulateMutualScores(const at::Tensor& z, const MutualScoringOptions& options,
                                          double weight, at::Tensor& scores_accum) {
  TORCH_CHECK(z.dim() == 3, "Z must be N×L×C, got ", z.sizes());
  TORCH_CHECK((z.scalar_type() == at::kFloat || z.scalar_type() == at::kBFloat16 ||
               z.scalar_type() == at::kHalf) &&
                  z.is_contiguous(),
              "Z must be contiguous float32, bfloat16 or float16");
  const int64_t n = z.size(0);
  const int64_t l = z.size(1);
  const int64_t c = z.size(2);
  TORCH_CHECK(l > 0 && c > 0, "Z has no patches or no channels: ", z.sizes());
  TORCH_CHECK(scores_accum.scalar_type() == at::kDouble && scores_accum.is_contiguous() &&
                  scores_accum.dim() == 2 && scores_accum.size(0) == n && scores_accum.size(1) == l,
              "scores_accum must be a contiguous float64 N×L tensor matching Z");
  TORCH_CHECK(options.block_budget_bytes > 0, "block budget must be positive");
  TORCH_CHECK(options.approximate_neighbours >= 0, "approximate_neighbours must be >= 0");
  TORCH_CHECK(scores_accum.device() == z.device(), "scores_accum must be on Z's device (",
              z.device(), "), got ", scores_accum.device());
  TORCH_CHECK(options.gemm_dtype == at::kFloat || options.gemm_dtype == at::kBFloat16 ||
                  options.gemm_dtype == at::kHalf,
              "the MSM GEMM type must be float32, bfloat16 or float16");
  if (!z.is_cpu() || options.force_tensor_path) {
    return AccumulateWithTensorOps(z, options, weight, scores_accum);
  }
  TORCH_CHECK(options.gemm_dtype == at::kFloat,
              "half-precision MSM GEMMs run on accelerators only; on CPU they are float32");
  if (options.approximate_neighbours > 0) {
    return AccumulateApproximate(z, options, weight, scores_accum);
  }
  const IntervalRanks ranks = ComputeIntervalRanks(n, options.interval_low, options.interval_high);

  const bool widen = z.scalar_type() != at::kFloat;
  const Plan plan = MakePlan(n, l, options.block_budget_bytes,
                             widen ? l * c * static_cast<int64_t>(sizeof(float)) : 0);
  MutualScoringStats stats;
  stats.resident_images = plan.resident_images;
  stats.group_images = plan.group_images;
  const int64_t tile_blocks = plan.group_images * plan.chunk_images;  // L×L blocks per tile.
  stats.tile_bytes = tile_blocks * l * l * static_cast<int64_t>(sizeof(float));
  stats.table_bytes = plan.resident_images * l * n * static_cast<int64_t>(sizeof(float));

  at::Tensor tile = at::empty({tile_blocks * l * l}, z.options().dtype(at::kFloat));
  // table[(i − s0)][p][j] = min distance from patch p of image i to image j (j = i unused).
  std::vector<float> table(static_cast<size_t>(plan.resident_images * l * n));
  float* const tile_data = tile.data_ptr<float>();
  double* const accum = scores_accum.data_ptr<double>();

  // Partners [begin, end) of a group of row images. Paired: both directions come from one GEMM
  // (partners later in the stripe); unpaired: the row side only (partners outside the stripe,
  // which compute the reverse direction themselves when their stripe is resident).
  struct Range {
    int64_t begin, end;
    bool paired;
  };
  int64_t s0 = 0;  // The resident stripe [s0, s1) whose table rows are held.
  // Multiplies row images [r0, r0 + rows) against `range` a chunk of partners at a time and files
  // the distances of every (row image, partner) block into the table.
  const auto multiply = [&](int64_t r0, int64_t rows, const Range& range) {
    // Half-precision tokens are widened per GEMM operand: O(L·C) per image against the GEMM's
    // O(L²·C) per pair, so storage halves at a negligible cost. A view when z is fp32.
    const at::Tensor row_tokens = z.narrow(0, r0, rows).view({rows * l, c}).to(at::kFloat);
    const int64_t chunk = std::max<int64_t>(1, tile_blocks / rows);
    for (int64_t j0 = range.begin; j0 < range.end; j0 += chunk) {
      const int64_t m = std::min(chunk, range.end - j0);
      at::Tensor sims = tile.narrow(0, 0, rows * m * l * l).view({rows * l, m * l});
      const at::Tensor partners = z.narrow(0, j0, m).view({m * l, c});
      at::mm_out(sims, row_tokens, (widen ? partners.to(at::kFloat) : partners).t());
      stats.pair_gemms += rows * m;
      at::parallel_for(0, rows * m, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> row_max(l);
        std::vector<float> col_max(range.paired ? l : 0);
        for (int64_t block = begin; block < end; ++block) {
          const int64_t i = r0 + block / m;
          const int64_t j = j0 + block % m;
          ReducePairBlock(tile_data + (block / m) * l * m * l + (block % m) * l, m * l, l, l,
                          row_max.data(), range.paired ? col_max.data() : nullptr);
          float* row_out = table.data() + (i - s0) * l * n + j;
          for (int64_t p = 0; p < l; ++p) row_out[p * n] = DistanceFromSimilarity(row_max[p]);
          if (range.paired) {
            float* col_out = table.data() + (j - s0) * l * n + i;
            for (int64_t q = 0; q < l; ++q) col_out[q * n] = DistanceFromSimilarity(col_max[q]);
          }
        }
      });
    }
  };

  for (; s0 < n; s0 += plan.resident_images) {
    const int64_t s1 = std::min(n, s0 + plan.resident_images);
    ++stats.stripes;
    for (int64_t g0 = s0; g0 < s1; g0 += plan.group_images) {
      const int64_t g1 = std::min(s1, g0 + plan.group_images);
      // Pairs inside the group, image by image; then the whole group against everything else.
      for (int64_t i = g0; i + 1 < g1; ++i) multiply(i, 1, {i + 1, g1, true});
      for (const Range& range : {Range{g1, s1, true}, Range{s1, n, false}, Range{0, s0, false}}) {
        if (range.begin < range.end) multiply(g0, g1 - g0, range);
      }
    }
    // Interval mean over the N−1 distances of every (i, p) of the stripe.
    Stopwatch selection;
    at::parallel_for(s0 * l, s1 * l, 64, [&](int64_t begin, int64_t end) {
      std::vector<float> values(n - 1);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t i = row / l;
        const float* distances = table.data() + (row - s0 * l) * n;
        std::copy(distances, distances + i, values.begin());
        std::copy(distances + i + 1, distances + n, values.begin() + i);
        accum[row] += weight * IntervalMean(values, ranks);
      }
    });
    stats.selection_seconds += selection.Lap();
  }
  return stats;
}

void AccumulateQueryScores(const at::Tensor& query, const at::Tensor& bank,
                           const MutualScoringOptions& options, int64_t bank_chunk, double weight,
                           at::Tensor& scores_accum) {
  TORCH_CHECK(query.dim() == 2 && query.scalar_type() == at::kFloat,
              "the query must be L×C float32, got ", query.sizes());
  TORCH_CHECK(bank.dim() == 3 && bank.scalar_type() == at::kFloat && bank.is_contiguous() &&
                  bank.size(1) == query.size(0) && bank.size(2) == query.size(1),
              "the bank must be contiguous M×L×C float32 matching the query ", query.sizes(),
              ", got ", bank.sizes());
  TORCH_CHECK(bank.size(0) >= 1, "the bank holds no image to score against");
  TORCH_CHECK(bank_chunk >= 1, "bank_chunk must be at least 1");
  TORCH_CHECK(scores_accum.scalar_type() == at::kDouble && scores_accum.dim() == 1 &&
                  scores_accum.size(0) == query.size(0),
              "scores_accum must be a float64 vector of the query's L patches");
  const int64_t count = bank.size(0);
  const int64_t patches = query.size(0);
  const IntervalRanks ranks =
      ComputeIntervalRanks(count + 1, options.interval_low, options.interval_high);
  at::Tensor max_similarity = at::empty({patches, count}, query.options());
  // The bank in chunks: one GEMM per chunk of images, row maxima per image.
  for (int64_t begin = 0; begin < count; begin += bank_chunk) {
    const int64_t n = std::min(bank_chunk, count - begin);
    max_similarity.narrow(1, begin, n).copy_(BestSimilarities(query, bank.narrow(0, begin, n)));
  }
  const at::Tensor& distances = DistancesFromSimilarities(max_similarity);
  const at::Tensor sorted = std::get<0>(distances.sort(1));
  const at::Tensor interval_mean = sorted.narrow(1, ranks.begin, ranks.end - ranks.begin).mean(1);
  scores_accum += interval_mean.to(at::kDouble) * weight;
}

at::Tensor MutualScores(const at::Tensor& z, const MutualScoringOptions& options) {
  at::Tensor scores = at::zeros({z.size(0), z.size(1)}, z.options().dtype(at::kDouble));
  AccumulateMutualScores(z, options, 1.0, scores);
  return scores;
}

}  // namespace musc
