// Decoding one client image the way the server accounts for it, for uploads (AddImages, Inspect)
// and line mode (ScoreImage) alike: bounded by DecodeImage, timed into
// musc_image_decode_seconds, a refusal counted in musc_images_rejected_total and named by the
// image's client id.
#ifndef MUSC_SERVER_IMAGES_MEASURED_DECODE_H_
#define MUSC_SERVER_IMAGES_MEASURED_DECODE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/images/image_decoder.h"

namespace musc {

class ServerMetrics;

// DecodeImage(bytes, limits), with the time it took in `*decode_seconds` (when not null) and
// recorded for `product` in `metrics` (when not null). A refusal keeps DecodeImage's code; its
// message becomes "image '<client_image_id>': <why>".
absl::StatusOr<DecodedImage> DecodeMeasured(std::string_view bytes, const DecodeLimits& limits,
                                            const std::string& client_image_id,
                                            const std::string& product, ServerMetrics* metrics,
                                            double* decode_seconds = nullptr);

}  // namespace musc

#endif  // MUSC_SERVER_IMAGES_MEASURED_DECODE_H_
