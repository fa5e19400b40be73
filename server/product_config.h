// Products: what the server can score, loaded from a YAML file at start.
#ifndef MUSC_SERVER_PRODUCT_CONFIG_H_
#define MUSC_SERVER_PRODUCT_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine_types.h"
#include "musc/v1/musc_service.pb.h"
#include "server/results/decision_policy.h"

namespace musc {

struct SealPolicyConfig {
  uint32_t at_count = 0;      // 0 = off.
  double idle_seconds = 0.0;  // 0 = off.
};

// Line mode (docs/LINE_MODE.md): score each image at once against a bank of recent images.
struct LineModeConfig {
  uint32_t bank_size = 64;
  uint32_t warmup_images = 8;   // Gathered and scored as one batch before the line runs.
  bool admit_anomalous = true;  // False: parts the decision policy flags stay out of the bank.
};

struct ProductConfig {
  std::string name;
  std::string description;
  BackboneOptions backbone;
  ScoringOptions scoring;
  uint32_t min_images = 5;
  uint32_t max_images = 1000;
  SealPolicyConfig auto_seal;
  v1::MapEncoding map_encoding = v1::PNG16;
  std::optional<float> mask_threshold;
  std::optional<LineModeConfig> line;
  DecisionConfig decision;
};

// Parses the products file format (documented in docs/PRODUCTS.md). Relative weight paths are
// resolved against `base_dir`. Unknown keys are errors, so a typo cannot silently fall back to a
// default. Errors name the source, the product and the key.
absl::StatusOr<std::vector<ProductConfig>> ParseProducts(const std::string& yaml_text,
                                                         const std::string& source_name,
                                                         const std::string& base_dir);
absl::StatusOr<std::vector<ProductConfig>> LoadProductsFile(const std::string& path);

void ProductToProto(const ProductConfig& product, v1::Product* out);

}  // namespace musc

#endif  // MUSC_SERVER_PRODUCT_CONFIG_H_
