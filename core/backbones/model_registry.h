// The models musc-serve knows: name → architecture, default input size and feature layers,
// preprocessing, and where the official weights come from.
//
// The same table is kept in core/models.tsv for scripts/fetch-weights.sh;
// tests/core/backbones/model_registry_test.cc fails when the two disagree.
//
// Default input sizes: 518 for the patch-14 models (the paper's S, 37×37 grid; DINOv2's own
// pretraining size), the native 224 for the patch-8/16/32 models, whose grids 518 does not divide.
// Default feature blocks: the paper's 6/12/18/24 on 24-block models, 3/6/9/12 on 12-block ones.
#ifndef MUSC_CORE_BACKBONES_MODEL_REGISTRY_H_
#define MUSC_CORE_BACKBONES_MODEL_REGISTRY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backbones/backbone.h"
#include "core/backbones/vision_transformer.h"
#include "core/engine_types.h"

namespace musc {

enum class BackboneKind { kVit, kDarknetTiny };

enum class PreprocessKind {
  kClip,      // Antialiased bicubic, OpenAI CLIP mean/std.
  kImageNet,  // Bilinear, ImageNet mean/std (DINO, DINOv2).
  kDarknet,   // Bilinear, [0,1] only (ml5's darknet classifier).
};

struct ModelSpec {
  std::string name;
  BackboneKind kind = BackboneKind::kVit;
  VitConfig vit;  // kVit: the architecture; input_size/feature_blocks hold the defaults.
  int64_t default_input_size = 224;
  std::vector<int64_t> default_layers;  // 1-based.
  PreprocessKind preprocess = PreprocessKind::kClip;
  bool random_weights = false;  // Seeded random weights, no file (tests and demos).
  // What the loader reads when BackboneOptions::weights_path is a directory ("" if none). For
  // DINO/DINOv2 it is the safetensors conversion of the official .pth, which LibTorch 1.13
  // cannot unpickle; scripts/fetch-weights.sh converts when python3 has torch and safetensors.
  std::string weights_file;
  std::string download_file;  // The official file's name.
  std::string url;            // Official download URL (a folder URL for darknet-tiny).
  // SHA-256 of the official file. OpenAI publishes it in the URL path (openai/CLIP clip/clip.py
  // checks it there). Empty where no official checksum is published (DINO, DINOv2, darknet-tiny):
  // never a value computed by us.
  std::string sha256;
};

// Every model, in the order of core/models.tsv.
const std::vector<ModelSpec>& ModelRegistry();
// nullptr when unknown.
const ModelSpec* FindModel(std::string_view name);
// The paper's default backbone: "clip-vit-l-14-336".
const char* DefaultModelName();

const char* BackboneKindName(BackboneKind kind);      // "vit", "darknet"
const char* PreprocessKindName(PreprocessKind kind);  // "clip", "imagenet", "darknet"

PreprocessSpec PreprocessOf(const ModelSpec& spec, int64_t input_size);

// The ViT config `options` ask for: the model's architecture with options.input_size and
// options.layers applied (0 / empty = defaults). InvalidArgument names the model and the problem.
absl::StatusOr<VitConfig> ResolveVitConfig(const ModelSpec& spec, const BackboneOptions& options);

// The checkpoint file to read for `weights_path` (a file, or a directory holding weights_file or
// download_file). NotFound / FailedPrecondition say what to fetch and how.
absl::StatusOr<std::string> ResolveWeightsFile(const ModelSpec& spec,
                                               const std::string& weights_path);

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_MODEL_REGISTRY_H_
