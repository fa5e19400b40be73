// The feature-extractor interface the MuSc engine runs on: images in, per-layer patch-feature
// grids and an optional image-level embedding out. ViTs and CNNs both fit it.
#ifndef MUSC_CORE_BACKBONES_BACKBONE_H_
#define MUSC_CORE_BACKBONES_BACKBONE_H_

#include <ATen/core/Tensor.h>

#include <array>
#include <string>
#include <vector>

namespace musc {

// How a backbone wants its input resized.
enum class ResizeFilter {
  kBicubicAntialias,  // CLIP: PIL-like bicubic with antialiasing.
  kBilinear,          // DINO / DINOv2 / CNNs: PIL-like bilinear, antialiased when shrinking.
};

// Everything needed to turn decoded pixels into the backbone's input tensor. Written once
// (core/backbones/preprocess.h) and shared by every caller so no two paths can disagree.
struct PreprocessSpec {
  int64_t input_size = 224;  // S: images are resized to S×S.
  ResizeFilter filter = ResizeFilter::kBilinear;
  std::array<float, 3> mean{0.f, 0.f, 0.f};  // Per RGB channel, applied after scaling to [0,1].
  std::array<float, 3> std{1.f, 1.f, 1.f};
};

// The output of one forward pass over a batch of N images.
struct BackboneFeatures {
  // One entry per selected layer: N×C×H×W float32 patch features (class token removed).
  // Layers may have different C and different grids; LNAMD resizes grids to the first layer's.
  std::vector<at::Tensor> layer_maps;
  // N×D float32 image-level embedding for RsCIN, as the reference computes it (MUSC-SPEC §2):
  // L2-normalised for CLIP; the model's normed class token for DINO/DINOv2 (not L2-normalised —
  // the reference feeds it to RsCIN as is). Undefined if the backbone has none.
  at::Tensor image_embedding;
};

class Backbone {
 public:
  virtual ~Backbone() = default;

  virtual const std::string& name() const = 0;
  virtual const PreprocessSpec& preprocess_spec() const = 0;

  // images: N×3×S×S float32, already preprocessed with preprocess_spec(). Must be called under
  // c10::InferenceMode. Throws c10::Error on malformed input; the engine catches it at its edge.
  virtual BackboneFeatures Forward(const at::Tensor& images) = 0;

  // Moves the weights to `device` (the engine's EngineOptions::device); Forward then takes its
  // input on that device and returns its features there. Throws c10::Error when the device is
  // not available to this LibTorch.
  virtual void MoveTo(const at::Device& device) = 0;
};

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_BACKBONE_H_
