#include "core/musc_engine.h"

#include <ATen/Context.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/backbones/backbone_registry.h"
#include "core/backbones/model_registry.h"
#include "core/engine_internal.h"
#include "core/musc/anomaly_map.h"
#include "core/musc/lnamd.h"
#include "core/musc/mutual_scoring.h"
#include "core/musc/rscin.h"
#include "core/stopwatch.h"
#include "core/thread_config.h"
#include "core/torch_status.h"

namespace musc {

const char* DefaultBackboneModel() { return DefaultModelName(); }

std::vector<std::string> KnownBackboneModels() { return RegisteredModels(); }

const char* LibTorchVersion() { return TORCH_VERSION; }

namespace {

// Images per LNAMD step in Score(): bounds its temporaries independently of N.
constexpr int64_t kLnamdChunkImages = 8;

// The scoring options an engine on `device` can run.
absl::Status ValidateForDevice(const ScoringOptions& o, const at::Device& device) {
  MUSC_RETURN_IF_ERROR(ValidateScoringOptions(o));
  if (device.is_cpu() && o.gemm_dtype != NumericType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gemm_dtype '", NumericTypeName(o.gemm_dtype),
        "' needs an accelerator: on CPU MSM multiplies in fp32 (use token_dtype to halve the "
        "token storage instead)"));
  }
  return absl::OkStatus();
}

// EngineOptions::device as a LibTorch device this build can use.
absl::StatusOr<at::Device> ParseDevice(const std::string& name) {
  std::optional<at::Device> device;
  try {
    device.emplace(name);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(
        e, absl::StrCat("device '", name, "' is invalid (expected cpu, cuda or cuda:K)"),
        absl::StatusCode::kInvalidArgument);
  }
  if (!device->is_cpu() && !device->is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("device '", name, "' is not supported: expected cpu, cuda or cuda:K"));
  }
  if (device->is_cuda() && !at::hasCUDA()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device '", name,
        "' requested, but this build's LibTorch has no CUDA or sees no GPU (build with "
        "-DMUSC_CUDA=ON against a CUDA LibTorch; see bench/gpu_check.sh)"));
  }
  return *device;
}

}  // namespace

struct ScoringBatch::Impl {
  std::shared_ptr<EngineState> engine;
  ScoringOptions scoring;
  int64_t count = 0;
  std::vector<std::vector<at::Tensor>> layer_chunks;  // [layer][chunk]: n×C×H×W
  std::vector<at::Tensor> embedding_chunks;           // [chunk]: n×D (may be undefined)
  StageTimings timings;
};

ScoringBatch::ScoringBatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ScoringBatch::~ScoringBatch() = default;
int64_t ScoringBatch::size() const { return impl_->count; }

int64_t ScoringBatch::feature_bytes() const {
  int64_t bytes = 0;
  for (const auto& chunks : impl_->layer_chunks) {
    for (const at::Tensor& t : chunks) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  }
  return bytes;
}

absl::Status ScoringBatch::Add(absl::Span<const ImageView> images) {
  for (size_t k = 0; k < images.size(); ++k) MUSC_RETURN_IF_ERROR(ValidateImage(images[k], k));
  EngineState& engine = *impl_->engine;
  const size_t chunk_images = static_cast<size_t>(engine.options.backbone_batch_size);
  // Results are collected first and committed only when every chunk succeeded, so a failure
  // leaves the batch exactly as it was.
  std::vector<std::vector<at::Tensor>> new_layers;
  std::vector<at::Tensor> new_embeddings;
  StageTimings spent;
  const at::ScalarType token_type = ScalarTypeOf(impl_->scoring.token_dtype);
  const at::Device device = engine.device;
  try {
    c10::InferenceMode guard;
    for (size_t begin = 0; begin < images.size(); begin += chunk_images) {
      const size_t end = std::min(images.size(), begin + chunk_images);
      BackboneFeatures features = RunBackbone(engine, images.subspan(begin, end - begin), spent);
      Stopwatch watch;
      if (new_layers.empty()) new_layers.resize(features.layer_maps.size());
      TORCH_CHECK(features.layer_maps.size() == new_layers.size(), engine.backbone->name(),
                  " returned an inconsistent number of feature layers");
      for (size_t l = 0; l < features.layer_maps.size(); ++l) {
        // Own, compact, channels-last copies in the storage dtype: drops class tokens and
        // backbone temporaries. These copies are what grows with N until Score(). They live in
        // host memory whatever the device, so that open sessions never exhaust an accelerator's
        // memory; Score() moves one layer at a time back.
        const at::Tensor compact =
            features.layer_maps[l].to(token_type).contiguous(at::MemoryFormat::ChannelsLast);
        new_layers[l].push_back(device.is_cpu() ? compact.clone(at::MemoryFormat::ChannelsLast)
                                                : compact.to(at::kCPU));
      }
      new_embeddings.push_back(features.image_embedding.defined()
                                   ? features.image_embedding.to(at::kFloat).cpu().contiguous()
                                   : at::Tensor());
      // The copies to the host waited for the device: on an accelerator, most of the backbone's
      // time is here.
      spent.backbone_s += watch.Lap();
    }
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "feature extraction");
  }
  if (images.empty()) return absl::OkStatus();
  if (!impl_->layer_chunks.empty() && impl_->layer_chunks.size() != new_layers.size()) {
    return absl::InternalError("backbone changed its number of feature layers");
  }
  if (impl_->layer_chunks.empty()) impl_->layer_chunks.resize(new_layers.size());
  for (size_t l = 0; l < new_layers.size(); ++l) {
    for (at::Tensor& t : new_layers[l]) impl_->layer_chunks[l].push_back(std::move(t));
  }
  for (at::Tensor& t : new_embeddings) impl_->embedding_chunks.push_back(std::move(t));
  impl_->count += static_cast<int64_t>(images.size());
  impl_->timings.preprocess_s += spent.preprocess_s;
  impl_->timings.backbone_s += spent.backbone_s;
  return absl::OkStatus();
}

absl::StatusOr<BatchScores> ScoringBatch::Score() {
  const ScoringOptions& options = impl_->scoring;
  const int64_t n = impl_->count;
  if (n < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat("MuSc scores images against each other and needs at least 2 images in a "
                     "batch; this batch has ",
                     n));
  }
  BatchScores result;
  result.num_images = n;
  result.timings = impl_->timings;
  try {
    c10::InferenceMode guard;
    Stopwatch watch;
    // Merge each layer's chunks once; keeping the merged tensor makes Score repeatable.
    for (auto& chunks : impl_->layer_chunks) {
      if (chunks.size() > 1) chunks = {at::cat(chunks, 0)};
    }
    const at::Tensor& first = impl_->layer_chunks[0][0];
    const int64_t grid_h = first.size(2);
    const int64_t grid_w = first.size(3);
    const int64_t patches = grid_h * grid_w;
    result.grid_h = grid_h;
    result.grid_w = grid_w;

    const at::Device device = impl_->engine->device;
    MutualScoringOptions msm = MsmOptionsFor(options, device);
    // M ≥ N−1 would compare with every other image anyway: the exact, paired path is faster.
    msm.approximate_neighbours =
        options.approximate_neighbours < n - 1 ? options.approximate_neighbours : 0;
    const int64_t compared = msm.approximate_neighbours > 0 ? msm.approximate_neighbours + 1 : n;
    result.small_batch =
        ComputeIntervalRanks(compared, msm.interval_low, msm.interval_high).widened;

    // Mean over layers and degrees: every (layer, degree) gets the same weight.
    const double weight =
        1.0 / static_cast<double>(impl_->layer_chunks.size() * options.degrees.size());
    at::Tensor accum =
        at::zeros({n, patches}, at::TensorOptions().dtype(at::kDouble).device(device));
    result.timings.lnamd_s += watch.Lap();
    for (const auto& chunks : impl_->layer_chunks) {
      // N×C×H×W in the storage type, on the device for this layer only (a no-op on CPU).
      const at::Tensor tokens = chunks[0].to(device);
      for (int64_t r : options.degrees) {
        // Z of this (layer, degree), built a few images at a time in fp32 (whatever the storage
        // type): LayerNorm and aggregation are per image, so the only batch-sized tensor next to
        // the stored tokens is Z itself — no widened copy of the layer, no normed copy.
        at::Tensor z = at::empty({n, patches, tokens.size(1)}, tokens.options().dtype(at::kFloat));
        for (int64_t i0 = 0; i0 < n; i0 += kLnamdChunkImages) {
          const int64_t m = std::min(kLnamdChunkImages, n - i0);
          const at::Tensor normed = LayerNormPerImage(tokens.narrow(0, i0, m).to(at::kFloat));
          z.narrow(0, i0, m).copy_(AggregateNeighbourhood(normed, r, grid_h, grid_w));
        }
        WaitForDevice(z);
        result.timings.lnamd_s += watch.Lap();
        AccumulateMutualScores(z, msm, weight, accum);
        WaitForDevice(accum);
        result.timings.msm_s += watch.Lap();
      }
    }

    const at::Tensor patch_scores = accum.to(at::kFloat).view({n, grid_h, grid_w});
    const int64_t s = impl_->engine->backbone->preprocess_spec().input_size;
    result.map_size = s;
    at::Tensor raw;
    if (options.keep_maps) {
      const at::Tensor maps = UpsamplePatchScores(patch_scores, s, s).cpu().contiguous();
      raw = MaxOfMaps(maps);
      result.maps.assign(maps.data_ptr<float>(), maps.data_ptr<float>() + maps.numel());
    } else {
      // Only the maxima are needed: upsample a few images at a time.
      std::vector<at::Tensor> maxima;
      for (int64_t i = 0; i < n; i += 16) {
        const int64_t m = std::min<int64_t>(16, n - i);
        maxima.push_back(MaxOfMaps(UpsamplePatchScores(patch_scores.narrow(0, i, m), s, s)));
      }
      raw = at::cat(maxima, 0);
    }
    raw = raw.cpu().contiguous();
    result.timings.maps_s += watch.Lap();

    at::Tensor embeddings;
    const bool have_embeddings =
        std::all_of(impl_->embedding_chunks.begin(), impl_->embedding_chunks.end(),
                    [](const at::Tensor& t) { return t.defined(); });
    if (have_embeddings) embeddings = at::cat(impl_->embedding_chunks, 0).cpu();
    const at::Tensor final_scores =
        RescoreWithImageNeighbourhood(raw, embeddings, options.rscin_windows)
            .to(at::kFloat)
            .contiguous();
    result.timings.rscin_s += watch.Lap();

    const at::Tensor host_patch_scores = patch_scores.cpu().contiguous();
    const float* p = host_patch_scores.data_ptr<float>();
    result.patch_scores.assign(p, p + host_patch_scores.numel());
    result.raw_scores.assign(raw.data_ptr<float>(), raw.data_ptr<float>() + n);
    result.final_scores.assign(final_scores.data_ptr<float>(), final_scores.data_ptr<float>() + n);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "scoring");
  }
  return result;
}

MuscEngine::MuscEngine(std::unique_ptr<EngineState> state) : state_(std::move(state)) {}
MuscEngine::~MuscEngine() = default;

std::shared_ptr<EngineState> SharedEngineState(const MuscEngine& engine) { return engine.state_; }

absl::StatusOr<std::unique_ptr<MuscEngine>> MuscEngine::Create(const EngineOptions& options) {
  MUSC_ASSIGN_OR_RETURN(const at::Device device, ParseDevice(options.device));
  MUSC_RETURN_IF_ERROR(ValidateForDevice(options.scoring, device));
  if (options.backbone_batch_size < 1) {
    return absl::InvalidArgumentError("backbone batch size must be at least 1");
  }
  ConfigureIntraOpThreads(options.intra_op_threads);
  auto state = std::make_unique<EngineState>();
  state->options = options;
  MUSC_ASSIGN_OR_RETURN(state->backbone, CreateBackbone(options.backbone));
  state->device = device;
  if (!device.is_cpu()) {
    MUSC_RETURN_IF_ERROR(CatchTorchErrors("moving the backbone to the device", [&] {
      state->backbone->MoveTo(device);
      return absl::OkStatus();
    }));
  }
  return std::unique_ptr<MuscEngine>(new MuscEngine(std::move(state)));
}

std::unique_ptr<ScoringBatch> MuscEngine::NewBatch() {
  auto batch = std::make_unique<ScoringBatch::Impl>();
  batch->engine = state_;
  batch->scoring = state_->options.scoring;
  return std::unique_ptr<ScoringBatch>(new ScoringBatch(std::move(batch)));
}

absl::StatusOr<std::unique_ptr<ScoringBatch>> MuscEngine::NewBatch(const ScoringOptions& scoring) {
  MUSC_RETURN_IF_ERROR(ValidateForDevice(scoring, state_->device));
  std::unique_ptr<ScoringBatch> batch = NewBatch();
  batch->impl_->scoring = scoring;
  return batch;
}

absl::StatusOr<BatchScores> MuscEngine::Score(absl::Span<const ImageView> images) {
  std::unique_ptr<ScoringBatch> batch = NewBatch();
  MUSC_RETURN_IF_ERROR(batch->Add(images));
  return batch->Score();
}

const std::string& MuscEngine::backbone_name() const { return state_->backbone->name(); }
int64_t MuscEngine::input_size() const { return state_->backbone->preprocess_spec().input_size; }
const EngineOptions& MuscEngine::options() const { return state_->options; }

}  // namespace musc
