#include "core/line_scorer.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/engine_internal.h"
#include "core/musc/anomaly_map.h"
#include "core/musc/lnamd.h"
#include "core/musc/mutual_scoring.h"
#include "core/stopwatch.h"
#include "core/torch_status.h"

namespace musc {

// One image's aggregated features, one L×C tensor per (layer, degree), in the order
// layer-major, degree-minor.
class LineScorer::Features {
 public:
  std::vector<at::Tensor> z;
  int64_t grid_h = 0, grid_w = 0;
  StageTimings timings;  // Preprocess, backbone and LNAMD of this image.
};

struct LineScorer::Impl {
  std::shared_ptr<EngineState> engine;
  LineOptions options;
  // The bank and its scoring stay on the host whatever the engine's device (one image against
  // the bank is a small product), so MSM multiplies in fp32 there.
  MutualScoringOptions msm;
  // Per (layer, degree): M×L×C, filled as a ring; slot next_slot is the next to be overwritten.
  std::vector<at::Tensor> bank;
  int64_t count = 0;
  int64_t next_slot = 0;
  int64_t grid_h = 0, grid_w = 0;

  // Bank slots from the oldest image to the newest.
  at::Tensor AdmissionOrder() const {
    const at::Tensor slots = at::arange(count, at::kLong);
    if (count < options.bank_size) return slots;
    return (slots + next_slot).remainder(options.bank_size);
  }

  double Weight() const { return 1.0 / static_cast<double>(bank.size()); }

  // Patch scores (grid_h×grid_w) → map, raw score, and the result fields.
  void FinishScore(const at::Tensor& patch_scores, LineImageScore* out) const {
    Stopwatch watch;
    const at::Tensor grid = patch_scores.to(at::kFloat).view({1, grid_h, grid_w});
    const int64_t s = engine->backbone->preprocess_spec().input_size;
    const at::Tensor map = UpsamplePatchScores(grid, s, s).contiguous();
    out->raw_score = MaxOfMaps(map).item<float>();
    out->map_size = s;
    if (options.scoring.keep_maps) {
      out->map.assign(map.data_ptr<float>(), map.data_ptr<float>() + map.numel());
    }
    const at::Tensor flat = grid.contiguous();
    out->grid_h = grid_h;
    out->grid_w = grid_w;
    out->patch_scores.assign(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel());
    out->timings.maps_s += watch.Lap();
  }
};

void LineScorer::FeaturesDeleter::operator()(Features* features) const { delete features; }

LineScorer::LineScorer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LineScorer::~LineScorer() = default;

absl::StatusOr<std::unique_ptr<LineScorer>> LineScorer::Create(MuscEngine* engine,
                                                               const LineOptions& options) {
  if (engine == nullptr) return absl::InvalidArgumentError("line scorer needs an engine");
  if (options.bank_size < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("line bank size ", options.bank_size, " is too small: at least 2"));
  }
  if (options.bank_chunk < 1) {
    return absl::InvalidArgumentError("line bank chunk must be at least 1");
  }
  MUSC_RETURN_IF_ERROR(ValidateScoringOptions(options.scoring));
  auto impl = std::make_unique<Impl>();
  impl->engine = SharedEngineState(*engine);
  impl->options = options;
  impl->msm = MsmOptionsFor(options.scoring, at::kCPU);
  return std::unique_ptr<LineScorer>(new LineScorer(std::move(impl)));
}

absl::StatusOr<LineScorer::FeaturesPtr> LineScorer::Extract(const ImageView& image) {
  MUSC_RETURN_IF_ERROR(ValidateImage(image, 0));
  FeaturesPtr features(new Features());
  try {
    c10::InferenceMode guard;
    // On an accelerator only the backbone runs there: the line's bank and its per-image scoring
    // stay on the host (one image against the bank is a small product).
    BackboneFeatures out = RunBackbone(*impl_->engine, {image}, features->timings);
    Stopwatch watch;
    for (at::Tensor& layer : out.layer_maps) layer = layer.cpu();
    features->timings.backbone_s += watch.Lap();
    features->grid_h = out.layer_maps[0].size(2);
    features->grid_w = out.layer_maps[0].size(3);
    for (const at::Tensor& layer : out.layer_maps) {
      const at::Tensor normed = LayerNormPerImage(layer.contiguous());
      for (int64_t r : impl_->options.scoring.degrees) {
        // Own copies: the bank keeps them long after the backbone's temporaries are gone.
        features->z.push_back(
            AggregateNeighbourhood(normed, r, features->grid_h, features->grid_w)[0].clone());
      }
    }
    features->timings.lnamd_s = watch.Lap();
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "line feature extraction");
  }
  if (impl_->count > 0 && (features->grid_h != impl_->grid_h || features->grid_w != impl_->grid_w ||
                           features->z.size() != impl_->bank.size())) {
    return absl::InternalError("the backbone's feature shape changed between images");
  }
  return features;
}

absl::StatusOr<LineImageScore> LineScorer::Score(const Features& features) {
  Impl& m = *impl_;
  if (m.count == 0) {
    return absl::FailedPreconditionError(
        "the line's bank is empty: an image can only be scored against earlier images");
  }
  LineImageScore result;
  result.timings = features.timings;
  result.compared_images = m.count;
  const IntervalRanks ranks = ComputeIntervalRanks(m.count + 1, m.options.scoring.interval_low,
                                                   m.options.scoring.interval_high);
  result.small_bank = ranks.widened;
  try {
    c10::InferenceMode guard;
    Stopwatch watch;
    at::Tensor accum = at::zeros({m.grid_h * m.grid_w}, at::kDouble);
    for (size_t k = 0; k < m.bank.size(); ++k) {
      AccumulateQueryScores(features.z[k], m.bank[k].narrow(0, 0, m.count), m.msm,
                            m.options.bank_chunk, m.Weight(), accum);
    }
    result.timings.msm_s += watch.Lap();
    m.FinishScore(accum, &result);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "line scoring");
  }
  return result;
}

absl::StatusOr<std::vector<LineImageScore>> LineScorer::ScoreBankAsBatch() {
  Impl& m = *impl_;
  if (m.count < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat("scoring the bank as a batch needs at least 2 images; it holds ", m.count));
  }
  std::vector<LineImageScore> results(static_cast<size_t>(m.count));
  try {
    c10::InferenceMode guard;
    Stopwatch watch;
    const at::Tensor order = m.AdmissionOrder();
    const MutualScoringOptions& msm = m.msm;
    at::Tensor accum = at::zeros({m.count, m.grid_h * m.grid_w}, at::kDouble);
    for (const at::Tensor& bank : m.bank) {
      const at::Tensor z = bank.narrow(0, 0, m.count).index_select(0, order).contiguous();
      AccumulateMutualScores(z, msm, m.Weight(), accum);
    }
    const double msm_seconds = watch.Lap();
    const bool widened = ComputeIntervalRanks(m.count, msm.interval_low, msm.interval_high).widened;
    for (int64_t i = 0; i < m.count; ++i) {
      LineImageScore& r = results[static_cast<size_t>(i)];
      r.compared_images = m.count - 1;
      r.small_bank = widened;
      r.timings.msm_s = msm_seconds / static_cast<double>(m.count);
      m.FinishScore(accum[i], &r);
    }
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "line warm-up scoring");
  }
  return results;
}

absl::Status LineScorer::Admit(FeaturesPtr features) {
  Impl& m = *impl_;
  try {
    // The bank is written in place, so it is made of inference tensors, like the features.
    c10::InferenceMode guard;
    if (m.bank.empty()) {
      m.grid_h = features->grid_h;
      m.grid_w = features->grid_w;
      for (const at::Tensor& z : features->z) {
        m.bank.push_back(at::empty({m.options.bank_size, z.size(0), z.size(1)}, at::kFloat));
      }
    }
    for (size_t k = 0; k < m.bank.size(); ++k) m.bank[k][m.next_slot].copy_(features->z[k]);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "line bank admission");
  }
  m.next_slot = (m.next_slot + 1) % m.options.bank_size;
  m.count = std::min(m.count + 1, m.options.bank_size);
  return absl::OkStatus();
}

int64_t LineScorer::bank_images() const { return impl_->count; }
int64_t LineScorer::bank_capacity() const { return impl_->options.bank_size; }

int64_t LineScorer::bank_bytes() const {
  int64_t bytes = 0;
  for (const at::Tensor& t : impl_->bank) bytes += t.numel() * static_cast<int64_t>(sizeof(float));
  return bytes;
}

}  // namespace musc
