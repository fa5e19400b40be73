// A Vision Transformer feature extractor written with plain ATen ops over a name → tensor map,
// so that every checkpoint format only has to fill the map (core/checkpoint_*.h).
//
// Implemented family: OpenAI CLIP image towers (pre-LN blocks, QuickGELU, class embedding, ln_pre,
// ln_post, proj), parameter names as in OpenAI's / open_clip's `visual.*` without the prefix.
// Feature layers are the outputs of the selected blocks (1-based), including the class token and
// before ln_post (MUSC-SPEC §0); the image embedding is ln_post(class token of the last
// block)·proj, L2-normalised (§2).
#ifndef MUSC_CORE_VISION_TRANSFORMER_H_
#define MUSC_CORE_VISION_TRANSFORMER_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/backbone.h"
#include "core/tensor_map.h"

namespace musc {

struct VitConfig {
  int64_t patch_size = 16;
  int64_t width = 768;
  int64_t depth = 12;
  int64_t heads = 12;
  int64_t mlp_width = 3072;
  int64_t pretrained_grid = 14;  // Grid the position embeddings were trained at.
  int64_t embed_dim = 512;       // Output width of `proj`.
  int64_t input_size = 224;      // S the backbone runs at; multiple of patch_size.
  std::vector<int64_t> feature_blocks{3, 6, 9, 12};  // 1-based block numbers.
};

// The parameter names and shapes a checkpoint must provide for `config`.
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedVitParameters(
    const VitConfig& config);

// Deterministic random weights with the expected names and shapes (tests, demos without
// downloads). Same seed → bit-identical weights on every machine.
TensorMap RandomVitWeights(const VitConfig& config, uint64_t seed);

// A tiny CLIP-shaped ViT for tests: 64×64 input, patch 8 (grid 8×8), width 64, 4 blocks.
VitConfig TinyVitConfig();

class VisionTransformer : public Backbone {
 public:
  // Validates that `weights` holds every expected parameter with the expected shape (throws
  // c10::Error naming the first mismatch). Position embeddings are resized to the input grid once
  // here (bicubic, align_corners=false; class-token embedding kept).
  VisionTransformer(std::string name, VitConfig config, TensorMap weights, PreprocessSpec spec);

  const std::string& name() const override { return name_; }
  const PreprocessSpec& preprocess_spec() const override { return spec_; }
  const VitConfig& config() const { return config_; }
  BackboneFeatures Forward(const at::Tensor& images) override;

 private:
  at::Tensor Block(const at::Tensor& x, int64_t index) const;
  const at::Tensor& W(const std::string& key) const;

  std::string name_;
  VitConfig config_;
  TensorMap weights_;
  PreprocessSpec spec_;
  at::Tensor positional_embedding_;  // (G²+1)×width at the running grid.
};

// CLIP's preprocessing constants (MUSC-SPEC §1).
PreprocessSpec ClipPreprocessSpec(int64_t input_size);

}  // namespace musc

#endif  // MUSC_CORE_VISION_TRANSFORMER_H_
