// Translation between the tensor names real ViT checkpoints use and the canonical names
// VisionTransformer reads (core/backbones/vision_transformer.h).
//
// Namings (verified against the modules that write them):
//  - kOpenAiClip: OpenAI's TorchScript archives and open_clip state_dicts, `visual.` + the
//    canonical CLIP names (openai/CLIP clip/model.py VisionTransformer).
//  - kHfClip: Hugging Face transformers CLIPModel / CLIPVisionModelWithProjection:
//    `vision_model.embeddings.{patch_embedding.weight, class_embedding,
//    position_embedding.weight}`, `vision_model.pre_layrnorm.*` (sic),
//    `vision_model.encoder.layers.N.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2,
//    mlp.fc1, mlp.fc2}.*`, `vision_model.post_layernorm.*` and `visual_projection.weight`
//    (E×W, the transpose of OpenAI's `proj`); q/k/v are OpenAI's in_proj split in three.
//  - kDino: facebookresearch/dino state_dicts (= the canonical DINO names).
//  - kDinoV2: facebookresearch/dinov2 state_dicts (= the canonical DINOv2 names, plus the
//    unused `mask_token`).
//  - kHfDinoV2: transformers Dinov2Model: `embeddings.{cls_token, mask_token,
//    position_embeddings, patch_embeddings.projection.*}`, `encoder.layer.N.{norm1,
//    attention.attention.{query,key,value}, attention.output.dense, layer_scale1.lambda1, norm2,
//    mlp.fc1, mlp.fc2, layer_scale2.lambda1}.*`, `layernorm.*`.
// Any common prefix in front of these (e.g. `module.`, `dinov2.`) is detected and stripped.
// Tensors the vision tower does not use (text tower, logit_scale, heads, position_ids,
// mask_token) are ignored and listed; missing or mis-shaped ones are errors naming the tensor.
#ifndef MUSC_CORE_BACKBONES_VIT_WEIGHT_NAMES_H_
#define MUSC_CORE_BACKBONES_VIT_WEIGHT_NAMES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backbones/tensor_map.h"
#include "core/backbones/vision_transformer.h"

namespace musc {

enum class VitWeightNaming { kOpenAiClip, kHfClip, kDino, kDinoV2, kHfDinoV2 };

// "openai-clip", "hf-clip", "dino", "dinov2", "hf-dinov2".
const char* VitWeightNamingName(VitWeightNaming naming);
// The namings a family's checkpoints come in.
std::vector<VitWeightNaming> NamingsOf(VitFamily family);

// The vision-tower tensors a checkpoint in `naming` holds for `config`, names and shapes, in
// canonical order: exactly the real files' lists for the full-size configs
// (tests/fixtures/*.tensors.txt), including tensors the model ignores (DINOv2's mask_token).
std::vector<std::pair<std::string, std::vector<int64_t>>> CheckpointVitTensors(
    const VitConfig& config, VitWeightNaming naming);

struct DetectedVitNaming {
  VitWeightNaming naming;
  std::string prefix;  // Stripped before the names above; usually empty.
};

// Finds which naming (and prefix) `checkpoint` uses for a `family` vision tower, from the name of
// its patch-embedding weight. InvalidArgument when none or several candidates are found.
absl::StatusOr<DetectedVitNaming> DetectVitWeightNaming(const TensorMap& checkpoint,
                                                        VitFamily family);

struct CanonicalVitWeights {
  TensorMap weights;                // Canonical names, exactly ExpectedVitParameters(config).
  std::vector<std::string> unused;  // Checkpoint names not needed by the vision tower, sorted.
};

// Checkpoint tensors (names as in the file) → canonical weights. Pure copies, concatenations
// (split q/k/v) and transposes, so the values are bit-identical. InvalidArgument names every
// missing tensor (up to a few) or the first mis-shaped one, with the expected shape.
absl::StatusOr<CanonicalVitWeights> ToCanonicalVitWeights(const TensorMap& checkpoint,
                                                          const VitConfig& config,
                                                          VitWeightNaming naming,
                                                          std::string_view prefix = {});

// Canonical weights → the tensors a `naming` checkpoint would hold (CheckpointVitTensors' names;
// DINOv2's mask_token is written as zeros). For tests and conversion tools.
absl::StatusOr<TensorMap> FromCanonicalVitWeights(const TensorMap& canonical,
                                                  const VitConfig& config, VitWeightNaming naming);

// DetectVitWeightNaming + ToCanonicalVitWeights.
absl::StatusOr<CanonicalVitWeights> CanonicalizeVitCheckpoint(const TensorMap& checkpoint,
                                                              const VitConfig& config);

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_VIT_WEIGHT_NAMES_H_
