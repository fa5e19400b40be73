// One loaded MuscEngine per distinct backbone; products with the same backbone share it.
#ifndef MUSC_SERVER_ENGINE_POOL_H_
#define MUSC_SERVER_ENGINE_POOL_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/musc_engine.h"
#include "server/product_config.h"

namespace musc {

struct EnginePoolOptions {
  int intra_op_threads = 0;
  int64_t backbone_batch_size = 8;
  std::string device = "cpu";  // EngineOptions::device for every engine: cpu, cuda, cuda:K.
};

class EnginePool {
 public:
  // Loads every backbone the products need and warms each up with a small batch, so the first
  // client batch does not pay for lazy initialisation. Errors name the product.
  static absl::StatusOr<std::unique_ptr<EnginePool>> Load(
      const std::vector<ProductConfig>& products, const EnginePoolOptions& options);

  // The engine for a product loaded by Load (never null for those).
  MuscEngine* ForProduct(const std::string& product) const;
  // Seconds each backbone model took to load and warm up, by model name (a model loaded twice
  // with different weights or layers reports the sum).
  const std::map<std::string, double>& load_seconds() const { return load_seconds_; }

 private:
  std::map<std::string, std::shared_ptr<MuscEngine>> by_backbone_;
  std::map<std::string, std::shared_ptr<MuscEngine>> by_product_;
  std::map<std::string, double> load_seconds_;
};

}  // namespace musc

#endif  // MUSC_SERVER_ENGINE_POOL_H_
