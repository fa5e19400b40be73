// Vision Transformer feature extractors written with plain ATen ops over a name → tensor map, so
// that every checkpoint format only has to fill the map (core/backbones/checkpoint_io.h reads the
// files, core/backbones/vit_weight_names.h translates their naming into the canonical one below).
//
// Three families share one implementation of the stem, the pre-LN block (attention, MLP, optional
// LayerScale) and the final norm; they differ only in the traits listed here.
//
// - OpenAI CLIP: canonical names = OpenAI's/open_clip's `visual.*` without the prefix; QuickGELU;
//   LayerNorm eps 1e-5; no patch bias; ln_pre after the embeddings; ln_post and proj at the end.
// - DINO (v1): canonical names = facebookresearch/dino's state_dict; exact (erf) GELU; eps 1e-6;
//   patch bias; final `norm`.
// - DINOv2 (no registers): canonical names = facebookresearch/dinov2's state_dict; as DINO plus
//   LayerScale (ls1, ls2) on both residual branches.
//
// Outputs (MUSC-SPEC §0, §2), matching the MuSc reference code (xrli-U/MuSc models/musc.py):
//  - CLIP: the selected blocks' outputs before ln_post; image embedding ln_post(class token of the
//    last block)·proj, L2-normalised.
//  - DINO: each selected block's output passed through the final norm (the reference's
//    get_intermediate_layers); image embedding = the model's output, norm(x)[:, 0].
//  - DINOv2: get_intermediate_layers(norm=True), i.e. also through the final norm; image embedding
//    = x_norm_clstoken.
//  For DINO and DINOv2 the image embedding is NOT L2-normalised: the reference feeds the raw
//  normed class tokens to RsCIN (only its CLIP branch divides by the norm).
//
// Position embeddings trained at another grid are resized once at construction: bicubic
// (a = -0.75), align_corners = false, class-token embedding kept. CLIP follows open_clip's
// resize_pos_embed (output size only). DINO and DINOv2 follow their own interpolate_pos_encoding,
// which passes scale_factor = (G + 0.1) / M to F.interpolate; PyTorch then maps output pixel x to
// source (x + 0.5)·M/(G + 0.1) − 0.5 rather than (x + 0.5)·M/G − 0.5; we do the same
// (VitFamilyTraits::pos_embed_scale_offset) to reproduce the reference's features.
#ifndef MUSC_CORE_BACKBONES_VISION_TRANSFORMER_H_
#define MUSC_CORE_BACKBONES_VISION_TRANSFORMER_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/backbones/backbone.h"
#include "core/backbones/tensor_map.h"

namespace musc {

enum class VitFamily {
  kOpenAiClip,  // OpenAI CLIP image towers (also open_clip's "openai" weights).
  kDino,        // DINO v1 (facebookresearch/dino).
  kDinoV2,      // DINOv2 without registers (facebookresearch/dinov2).
};

// "clip", "dino", "dinov2" (the spelling used in core/models.tsv).
const char* VitFamilyName(VitFamily family);
std::optional<VitFamily> ParseVitFamily(std::string_view name);

struct VitConfig {
  VitFamily family = VitFamily::kOpenAiClip;
  int64_t patch_size = 16;
  int64_t width = 768;
  int64_t depth = 12;
  int64_t heads = 12;
  int64_t mlp_width = 3072;
  int64_t pretrained_grid = 14;  // Grid the position embeddings were trained at.
  int64_t embed_dim = 512;       // Image-embedding width: `proj`'s output (CLIP), else = width.
  int64_t input_size = 224;      // S the backbone runs at; multiple of patch_size.
  std::vector<int64_t> feature_blocks{3, 6, 9, 12};  // 1-based block numbers.
};

// Per-family constants (see the list above).
struct VitFamilyTraits {
  double layer_norm_eps;
  bool quick_gelu;                // QuickGELU x·σ(1.702x), else exact (erf) GELU.
  bool patch_bias;                // The patch-embedding convolution has a bias.
  bool pre_norm;                  // ln_pre after the embeddings.
  bool layer_scale;               // ls1/ls2 on both residual branches.
  bool features_through_norm;     // Feature layers pass through the final norm.
  bool projected_embedding;       // Image embedding = L2(norm(cls)·proj), else norm(cls).
  double pos_embed_scale_offset;  // 0: resize by output size; > 0: scale (G + offset) / M.
};
VitFamilyTraits TraitsOf(VitFamily family);

// The canonical parameter names and shapes the model needs for `config`, in the order of the
// original module's state_dict. Tensors a checkpoint holds but the model never uses (DINOv2's
// mask_token, text towers, heads) are not listed; core/backbones/vit_weight_names.h knows those.
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedVitParameters(
    const VitConfig& config);

// Deterministic random weights with the expected names and shapes (tests, demos without
// downloads). Same seed → bit-identical weights on every machine.
TensorMap RandomVitWeights(const VitConfig& config, uint64_t seed);

// A tiny CLIP-shaped ViT for tests: 64×64 input, patch 8 (grid 8×8), width 64, 4 blocks.
VitConfig TinyVitConfig();
// The same sizes for any family (DINO/DINOv2: embed_dim = width).
VitConfig TinyVitConfig(VitFamily family);

// The position-embedding table for the running grid: `pos` is (1 + M²)×W (class token first),
// trained at an M×M grid; returns (1 + grid²)×W. Bicubic (a = -0.75, borders clamped),
// align_corners = false, class-token row kept. scale_offset > 0 maps output x to source
// (x + 0.5)·M/(grid + scale_offset) − 0.5 (DINO's interpolate_pos_encoding); 0 uses M/grid.
// Returns `pos` itself when grid == M (as every reference does).
at::Tensor ResizePositionEmbedding(const at::Tensor& pos, int64_t pretrained_grid, int64_t grid,
                                   double scale_offset);

class VisionTransformer : public Backbone {
 public:
  // `weights` in the family's canonical naming. Validates that it holds every expected parameter
  // with the expected shape (throws c10::Error naming the first mismatch; extra tensors are
  // ignored). Position embeddings are resized to the input grid once here.
  VisionTransformer(std::string name, VitConfig config, TensorMap weights, PreprocessSpec spec);

  const std::string& name() const override { return name_; }
  const PreprocessSpec& preprocess_spec() const override { return spec_; }
  const VitConfig& config() const { return config_; }
  BackboneFeatures Forward(const at::Tensor& images) override;
  void MoveTo(const at::Device& device) override;

  // One part of block `index` (0-based) applied to activations x (N×T×W), exactly as Forward runs
  // it; lets a benchmark attribute the forward's time without re-implementing the block.
  enum class BlockPart { kAttention, kMlp, kWholeBlock };
  at::Tensor RunBlockPart(BlockPart part, int64_t index, const at::Tensor& x) const;

 private:
  // One block's tensors, resolved from the canonical names once.
  struct BlockWeights {
    at::Tensor norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b;
    at::Tensor norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
    at::Tensor ls1, ls2;  // Undefined unless the family has LayerScale.
  };

  at::Tensor LayerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) const;
  at::Tensor Attention(const at::Tensor& x, const BlockWeights& w) const;
  at::Tensor Mlp(const at::Tensor& x, const BlockWeights& w) const;
  at::Tensor Block(const at::Tensor& x, const BlockWeights& w) const;

  std::string name_;
  VitConfig config_;
  VitFamilyTraits traits_;
  PreprocessSpec spec_;
  TensorMap weights_;
  at::Tensor patch_w_, patch_b_;        // patch_b_ undefined for CLIP.
  at::Tensor class_token_;              // W
  at::Tensor positional_embedding_;     // (G²+1)×W at the running grid.
  at::Tensor pre_norm_w_, pre_norm_b_;  // CLIP only.
  std::vector<BlockWeights> blocks_;
  at::Tensor final_norm_w_, final_norm_b_;
  at::Tensor proj_;  // W×E, CLIP only.
};

// CLIP's preprocessing constants (MUSC-SPEC §1): antialiased bicubic, OpenAI mean/std.
PreprocessSpec ClipPreprocessSpec(int64_t input_size);
// DINO/DINOv2 (MUSC-SPEC §1): bilinear, ImageNet mean/std.
PreprocessSpec ImageNetPreprocessSpec(int64_t input_size);
// The family's preprocessing at config.input_size.
PreprocessSpec VitPreprocessSpec(const VitConfig& config);

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_VISION_TRANSFORMER_H_
