// Reader for TensorFlow.js "layers" model exports: model.json (Keras topology + weights manifest)
// and its raw little-endian float32 shard files. LibTorch-free on purpose: it parses untrusted
// files, so it is also built and tested under ASan/UBSan (MUSC_SANITIZE).
//
// Only what the backbones need is parsed: the layer list with the config fields of the layer
// classes we run, and every weight tensor. Validation is strict and every error names the file,
// the layer or tensor, and what was expected versus found.
#ifndef MUSC_CORE_FORMATS_TFJS_MANIFEST_H_
#define MUSC_CORE_FORMATS_TFJS_MANIFEST_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace musc {

// Hard bounds on what a manifest may declare, so a malformed or hostile file is rejected before
// any allocation: no shape has more than kTfjsMaxRank dimensions, no tensor more than
// kTfjsMaxTensorElements elements, the whole model no more than kTfjsMaxTotalElements.
inline constexpr int kTfjsMaxRank = 8;
inline constexpr int64_t kTfjsMaxTensorElements = int64_t{1} << 28;  // 1 GiB of float32.
inline constexpr int64_t kTfjsMaxTotalElements = int64_t{1} << 29;   // 2 GiB of float32.
inline constexpr int64_t kTfjsMaxModelJsonBytes = int64_t{64} << 20;
// Real model.json files nest about ten deep. Error messages render JSON values recursively, so a
// hostile file nested tens of thousands deep would overflow the stack; it is refused before
// parsing.
inline constexpr int kTfjsMaxJsonDepth = 64;

enum class KerasPadding { kValid, kSame };

// One Keras layer of modelTopology. Fields a layer class does not have keep their defaults.
struct KerasLayer {
  std::string name;
  std::string class_name;  // "InputLayer", "Conv2D", "BatchNormalization", "LeakyReLU", ...
  // Functional models: names of the layers feeding this one (first inbound node). Sequential
  // models: the previous layer's name (or empty for the first).
  std::vector<std::string> inbound;
  std::string data_format = "channels_last";

  // Conv2D.
  int64_t filters = 0;
  std::array<int64_t, 2> kernel_size{0, 0};
  std::array<int64_t, 2> dilation_rate{1, 1};
  bool use_bias = true;
  std::string activation = "linear";
  // Conv2D and MaxPooling2D.
  std::array<int64_t, 2> strides{1, 1};
  KerasPadding padding = KerasPadding::kValid;
  // MaxPooling2D.
  std::array<int64_t, 2> pool_size{0, 0};
  // LeakyReLU (Keras' default slope is 0.3).
  double alpha = 0.3;
  // BatchNormalization.
  int64_t axis = -1;
  double epsilon = 1e-3;
  bool center = true;  // Has beta.
  bool scale = true;   // Has gamma.
};

struct TfjsTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // Row-major in `shape` (Keras layout, e.g. Conv2D kernels H×W×I×O).
};

struct TfjsWeightGroup {
  std::vector<std::string> paths;         // Shard files, relative to the model directory.
  std::vector<std::string> weight_names;  // In shard order.
};

struct TfjsModel {
  std::string directory;
  std::vector<KerasLayer> layers;  // In topology order.
  std::vector<TfjsWeightGroup> groups;
  std::map<std::string, TfjsTensor> weights;  // "conv2d_1/kernel" → tensor.

  // nullptr when absent.
  const TfjsTensor* FindWeight(std::string_view name) const;
  int64_t total_parameters() const;
};

// Loads `directory`/model.json and every shard it names. NotFoundError when the directory,
// model.json or a shard is missing; InvalidArgumentError for malformed JSON, unsupported dtypes
// or quantisation, bad shapes, missing layer weights; DataLossError when a group's shard bytes do
// not match the sizes its tensors declare.
absl::StatusOr<TfjsModel> LoadTfjsModel(const std::string& directory);

// The same from model.json text already in memory; shards are read from `directory`.
// `json_label` is the name used for the JSON in error messages.
absl::StatusOr<TfjsModel> ParseTfjsModel(std::string_view model_json, const std::string& directory,
                                         const std::string& json_label);

}  // namespace musc

#endif  // MUSC_CORE_FORMATS_TFJS_MANIFEST_H_
