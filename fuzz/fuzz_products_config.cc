// libFuzzer target: the products file parser (server/product_config.h), from YAML text. Beyond
// "no crash, no leak, no UB", it checks that what the parser accepts passes the checks the parser
// itself promises, so a validation gap (a NaN that slips past a comparison, say) is a finding too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "server/product_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<std::vector<musc::ProductConfig>> products =
      musc::ParseProducts(text, "fuzz.yaml", "/weights");
  if (!products.ok()) {
    if (products.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (products->empty()) std::abort();
  for (const musc::ProductConfig& p : *products) {
    // NaN compares false with everything: "idle_seconds < 0" alone would let it through.
    if (p.name.empty() || p.min_images < 2 || p.max_images < p.min_images ||
        !(p.auto_seal.idle_seconds >= 0) || p.scoring.block_budget_bytes < 0) {
      std::abort();
    }
    if (p.line && (p.line->bank_size < 2 || p.line->warmup_images < 2 ||
                   p.line->warmup_images > p.line->bank_size)) {
      std::abort();
    }
    musc::v1::Product proto;
    musc::ProductToProto(p, &proto);
  }
  return 0;
}
