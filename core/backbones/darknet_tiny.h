// darknet-tiny (ImageNet-1k, ml5's TensorFlow.js export): the one pretrained network reachable on
// machines without internet. A weak backbone, but real features on real images.
//
// The network is read from the Keras topology in model.json (core/formats/tfjs_manifest.h) and run
// with plain ATen ops: 16 Conv2D ('same', no bias except the classifier), 15 BatchNormalization
// folded into their convolutions at load, 15 LeakyReLU(0.1), 4 MaxPooling2D(2, stride 2, 'same'),
// and a global average pool over the 1000-channel classifier convolution. Total stride 16.
//
// Feature layers are the LeakyReLU outputs, numbered 1..15 (BackboneOptions::layers); the default
// {10, 14} is strides 8 and 16 (28×28 and 14×14 grids at 224).
#ifndef MUSC_CORE_BACKBONES_DARKNET_TINY_H_
#define MUSC_CORE_BACKBONES_DARKNET_TINY_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backbones/backbone.h"
#include "core/engine_types.h"

namespace musc {

inline constexpr int64_t kDarknetTinyDefaultInputSize = 224;
inline constexpr int64_t kDarknetTinyMaxInputSize = 2048;

// Load-time knobs that only tests and tools need.
struct DarknetTinyLoadOptions {
  // Fold every BatchNormalization into the convolution before it (inference only). False keeps
  // BN as a separate at::batch_norm call: the unfolded reference the tests check the folding
  // against.
  bool fold_batch_norm = true;
};

// The backbone plus the entry points tests and tools use to check the whole network.
class DarknetTinyNetwork : public Backbone {
 public:
  // Number of LeakyReLU layers: BackboneOptions::layers must lie in 1..this (15).
  virtual int64_t num_feature_layers() const = 0;
  // Product of all strides: input sizes must be a multiple of it (16).
  virtual int64_t total_stride() const = 0;
  // Every LeakyReLU output for N×3×H×W images (any H, W ≥ 1), element i = layer i + 1.
  virtual std::vector<at::Tensor> AllFeatureLayers(const at::Tensor& images) = 0;
  // N×1000 ImageNet logits: the Keras model's own output (global average pool of the classifier
  // convolution). ml5's classify() is softmax over these. Same input contract as Forward.
  virtual at::Tensor ClassLogits(const at::Tensor& images) = 0;
};

// options.weights_path: the directory holding model.json and its shard files. options.layers:
// 1-based LeakyReLU numbers (default {10, 14}). options.input_size: 0 = 224, otherwise a multiple
// of the network's stride (16) in [32, kDarknetTinyMaxInputSize]. NotFoundError when the weights
// are missing, InvalidArgumentError for bad options or an unsupported topology.
absl::StatusOr<std::unique_ptr<DarknetTinyNetwork>> CreateDarknetTinyNetwork(
    const BackboneOptions& options, const DarknetTinyLoadOptions& load_options = {});

// The same, as the engine's Backbone.
absl::StatusOr<std::unique_ptr<Backbone>> CreateDarknetTinyBackbone(const BackboneOptions& options);

// What ml5's Darknet classifier does to pixels: RGB scaled to [0,1] and nothing else (no mean,
// no std), resized bilinearly to the input size.
PreprocessSpec DarknetTinyPreprocessSpec(int64_t input_size);

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_DARKNET_TINY_H_
