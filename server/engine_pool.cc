#include "server/engine_pool.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace musc {
namespace {

std::string BackboneKey(const BackboneOptions& b) {
  return absl::StrCat(b.model, "|", b.weights_path, "|", b.seed, "|", b.input_size, "|",
                      absl::StrJoin(b.layers, ","));
}

// Two tiny grey images through the whole pipeline: loads lazy kernels and thread pools.
absl::Status WarmUp(MuscEngine& engine) {
  std::vector<uint8_t> pixels(32 * 32);
  for (size_t k = 0; k < pixels.size(); ++k) pixels[k] = static_cast<uint8_t>(k * 7);
  std::vector<ImageView> views(2, ImageView{pixels.data(), 32, 32, 1, PixelType::kUint8});
  ScoringOptions scoring;
  scoring.degrees = {1};
  scoring.rscin_windows = {};
  scoring.keep_maps = false;
  absl::StatusOr<std::unique_ptr<ScoringBatch>> batch = engine.NewBatch(scoring);
  if (!batch.ok()) return batch.status();
  if (absl::Status s = (*batch)->Add(views); !s.ok()) return s;
  return (*batch)->Score().status();
}

}  // namespace

absl::StatusOr<std::unique_ptr<EnginePool>> EnginePool::Load(
    const std::vector<ProductConfig>& products, const EnginePoolOptions& options) {
  auto pool = std::unique_ptr<EnginePool>(new EnginePool());
  for (const ProductConfig& product : products) {
    const std::string key = BackboneKey(product.backbone);
    auto it = pool->by_backbone_.find(key);
    if (it == pool->by_backbone_.end()) {
      const auto start = std::chrono::steady_clock::now();
      EngineOptions engine_options;
      engine_options.backbone = product.backbone;
      engine_options.scoring = product.scoring;
      engine_options.intra_op_threads = options.intra_op_threads;
      engine_options.backbone_batch_size = options.backbone_batch_size;
      engine_options.device = options.device;
      absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(engine_options);
      if (!engine.ok()) {
        return absl::Status(engine.status().code(), absl::StrCat("product '", product.name,
                                                                 "': ", engine.status().message()));
      }
      if (absl::Status s = WarmUp(**engine); !s.ok()) {
        return absl::Status(
            s.code(), absl::StrCat("product '", product.name, "': warm-up failed: ", s.message()));
      }
      it = pool->by_backbone_.emplace(key, std::shared_ptr<MuscEngine>(std::move(*engine))).first;
      pool->load_seconds_[product.backbone.model] +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    // Products sharing an engine must also be runnable on its device (e.g. a half-precision
    // GEMM type on a CPU engine): refused at load, not at the first seal.
    if (absl::StatusOr<std::unique_ptr<ScoringBatch>> probe = it->second->NewBatch(product.scoring);
        !probe.ok()) {
      return absl::Status(probe.status().code(),
                          absl::StrCat("product '", product.name, "': ", probe.status().message()));
    }
    pool->by_product_[product.name] = it->second;
  }
  return pool;
}

MuscEngine* EnginePool::ForProduct(const std::string& product) const {
  auto it = by_product_.find(product);
  return it == by_product_.end() ? nullptr : it->second.get();
}

}  // namespace musc
