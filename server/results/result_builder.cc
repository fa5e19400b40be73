#include "server/results/result_builder.h"

#include <chrono>
#include <optional>

#include "server/results/map_encoder.h"

namespace musc {

absl::Status BuildImageResult(const ProductConfig& product, const ScoredImage& image,
                              const v1::MapOptions& options, ServerMetrics* metrics,
                              v1::ImageResult* out) {
  out->set_client_image_id(*image.client_id);
  out->set_index(image.index);
  out->set_raw_score(image.raw_score);
  out->set_final_score(image.final_score);
  for (const auto& [key, value] : *image.metadata) (*out->mutable_metadata())[key] = value;
  const bool has_policy = product.decision.image.kind != ThresholdKind::kNone ||
                          product.decision.mask.kind != ThresholdKind::kNone;
  if (has_policy) DecisionToProto(*image.decision, out->mutable_decision());
  if (image.map.empty()) return absl::OkStatus();

  const v1::MapEncoding encoding = options.encoding() == v1::MAP_ENCODING_UNSPECIFIED
                                       ? product.map_encoding
                                       : options.encoding();
  // The request's mask threshold, else the product's fixed one, else the policy's.
  std::optional<float> threshold = product.mask_threshold;
  if (!threshold) threshold = image.decision->mask_threshold;
  if (options.has_mask_threshold()) threshold = options.mask_threshold();
  const bool native = options.model_resolution();
  const auto start = std::chrono::steady_clock::now();
  absl::Status encoded =
      EncodeMap(image.map, native ? image.map.cols : image.width,
                native ? image.map.rows : image.height, encoding, threshold, out);
  if (metrics != nullptr) {
    metrics->MapEncoded(
        product.name,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return encoded;
}

}  // namespace musc
