// Shared by the in-process tests of the server's parts (tests/server/{batch,line}/): products
// parsed from YAML, decoded test images, Prometheus samples and polling with a deadline. The
// products use the seeded random tiny ViT, which scores real batches in well under a second
// without any weight file.
#ifndef MUSC_TESTS_SERVER_IN_PROCESS_FIXTURE_H_
#define MUSC_TESTS_SERVER_IN_PROCESS_FIXTURE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "server/batch/session.h"
#include "server/product_config.h"

namespace musc::testing {

// A products file's `backbone:` value for the tiny random ViT at 64×64 pixels.
inline constexpr char kTinyBackbone[] = "{model: vit-tiny-random, seed: 0, input_size: 64}";

// The products of `yaml` (the products file format); fails the test and returns none when it
// does not parse.
std::vector<ProductConfig> ProductsFromYaml(const std::string& yaml);

// A texture image (tests/server/test_images.h) as PNG, and decoded as the server decodes what a
// client sends, so a test feeds the engine exactly the pixels the service would.
std::string TexturePngFor(uint64_t seed);
cv::Mat DecodedTexture(uint64_t seed);

// Waits until `session` is final (DONE, FAILED or CANCELLED) or `timeout` has passed; returns
// whether it is final. Woken by the session's own change notifications (every final transition
// sends one), so it returns the moment the session finishes, with no polling.
bool WaitFinal(Session& session, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Polls `condition` until it holds or `timeout` has passed; returns whether it held. For state
// that sends no notification (a scheduler's idle workers, a metrics scrape); a session's end is
// WaitFinal's. Generous by default: the deadline only bounds a broken test, a healthy one returns
// as soon as it can.
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds timeout = std::chrono::seconds(60));

// The value of one sample (`name{label="value",...}` exactly as exposed) in Prometheus text.
std::optional<double> SampleValue(const std::string& exposition, const std::string& sample);

}  // namespace musc::testing

#endif  // MUSC_TESTS_SERVER_IN_PROCESS_FIXTURE_H_
