#include "server/images/measured_decode.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/server_metrics.h"

namespace musc {

absl::StatusOr<DecodedImage> DecodeMeasured(std::string_view bytes, const DecodeLimits& limits,
                                            const std::string& client_image_id,
                                            const std::string& product, ServerMetrics* metrics,
                                            double* decode_seconds) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<DecodedImage> decoded = DecodeImage(bytes, limits);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (decode_seconds != nullptr) *decode_seconds = seconds;
  if (metrics != nullptr) metrics->ImageDecoded(product, seconds);
  if (!decoded.ok()) {
    if (metrics != nullptr) metrics->ImageRejected(product, decoded.status().code());
    return absl::Status(decoded.status().code(), absl::StrCat("image '", client_image_id,
                                                              "': ", decoded.status().message()));
  }
  return decoded;
}

}  // namespace musc
