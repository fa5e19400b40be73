#include "core/backbones/model_registry.h"

#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/backbones/darknet_tiny.h"

namespace musc {
namespace {

constexpr char kOpenAiBase[] = "https://openaipublic.azureedge.net/clip/models/";

VitConfig Arch(VitFamily family, int64_t patch, int64_t width, int64_t depth, int64_t heads,
               int64_t mlp_width, int64_t grid, int64_t embed_dim) {
  VitConfig c;
  c.family = family;
  c.patch_size = patch;
  c.width = width;
  c.depth = depth;
  c.heads = heads;
  c.mlp_width = mlp_width;
  c.pretrained_grid = grid;
  c.embed_dim = embed_dim;
  return c;
}

ModelSpec Vit(std::string name, VitConfig arch, int64_t input_size, std::vector<int64_t> layers) {
  ModelSpec s;
  s.name = std::move(name);
  s.kind = BackboneKind::kVit;
  s.vit = std::move(arch);
  s.vit.input_size = input_size;
  s.vit.feature_blocks = layers;
  s.default_input_size = input_size;
  s.default_layers = std::move(layers);
  s.preprocess =
      s.vit.family == VitFamily::kOpenAiClip ? PreprocessKind::kClip : PreprocessKind::kImageNet;
  return s;
}

// OpenAI's URLs carry the file's SHA-256 as their last directory (openai/CLIP clip/clip.py
// _download checks url.split("/")[-2]).
ModelSpec OpenAiClip(std::string name, VitConfig arch, int64_t input_size,
                     std::vector<int64_t> layers, std::string sha256, std::string file) {
  ModelSpec s = Vit(std::move(name), std::move(arch), input_size, std::move(layers));
  s.weights_file = file;
  s.download_file = file;
  s.url = absl::StrCat(kOpenAiBase, sha256, "/", file);
  s.sha256 = std::move(sha256);
  return s;
}

// Meta publishes no checksums for these files (hubconf.py loads them unverified).
ModelSpec MetaDino(std::string name, VitConfig arch, int64_t input_size,
                   std::vector<int64_t> layers, std::string base_url, std::string stem) {
  ModelSpec s = Vit(std::move(name), std::move(arch), input_size, std::move(layers));
  s.weights_file = stem + ".safetensors";
  s.download_file = stem + ".pth";
  s.url = base_url + s.download_file;
  return s;
}

std::vector<ModelSpec> BuildRegistry() {
  const std::vector<int64_t> k12 = {3, 6, 9, 12};
  const std::vector<int64_t> k24 = {6, 12, 18, 24};
  const VitFamily clip = VitFamily::kOpenAiClip;
  std::vector<ModelSpec> r;
  r.push_back(OpenAiClip("clip-vit-b-32", Arch(clip, 32, 768, 12, 12, 3072, 7, 512), 224, k12,
                         "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
                         "ViT-B-32.pt"));
  r.push_back(OpenAiClip("clip-vit-b-16", Arch(clip, 16, 768, 12, 12, 3072, 14, 512), 224, k12,
                         "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
                         "ViT-B-16.pt"));
  r.push_back(OpenAiClip("clip-vit-l-14", Arch(clip, 14, 1024, 24, 16, 4096, 16, 768), 518, k24,
                         "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
                         "ViT-L-14.pt"));
  r.push_back(OpenAiClip("clip-vit-l-14-336", Arch(clip, 14, 1024, 24, 16, 4096, 24, 768), 518, k24,
                         "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
                         "ViT-L-14-336px.pt"));
  const std::string dino = "https://dl.fbaipublicfiles.com/dino/";
  r.push_back(MetaDino("dino-vit-b-8", Arch(VitFamily::kDino, 8, 768, 12, 12, 3072, 28, 768), 224,
                       k12, dino + "dino_vitbase8_pretrain/", "dino_vitbase8_pretrain"));
  r.push_back(MetaDino("dino-vit-b-16", Arch(VitFamily::kDino, 16, 768, 12, 12, 3072, 14, 768), 224,
                       k12, dino + "dino_vitbase16_pretrain/", "dino_vitbase16_pretrain"));
  const std::string dinov2 = "https://dl.fbaipublicfiles.com/dinov2/";
  r.push_back(MetaDino("dinov2-vit-b-14", Arch(VitFamily::kDinoV2, 14, 768, 12, 12, 3072, 37, 768),
                       518, k12, dinov2 + "dinov2_vitb14/", "dinov2_vitb14_pretrain"));
  r.push_back(MetaDino("dinov2-vit-l-14",
                       Arch(VitFamily::kDinoV2, 14, 1024, 24, 16, 4096, 37, 1024), 518, k24,
                       dinov2 + "dinov2_vitl14/", "dinov2_vitl14_pretrain"));

  ModelSpec tiny = Vit("vit-tiny-random", TinyVitConfig(), 64, {1, 2, 3, 4});
  tiny.random_weights = true;
  r.push_back(tiny);

  ModelSpec darknet;
  darknet.name = "darknet-tiny";
  darknet.kind = BackboneKind::kDarknetTiny;
  darknet.default_input_size = kDarknetTinyDefaultInputSize;
  darknet.default_layers = {10, 14};
  darknet.preprocess = PreprocessKind::kDarknet;
  darknet.weights_file = "darknet-tiny-tfjs";
  darknet.download_file = "model.json";
  darknet.url =
      "https://raw.githubusercontent.com/ml5js/ml5-data-and-models/"
      "0612a3e7c51cbffdc5db701dff49d16d1ac26fa8/models/darknetclassifier/darknettiny/";
  r.push_back(darknet);
  return r;
}

}  // namespace

const std::vector<ModelSpec>& ModelRegistry() {
  static const std::vector<ModelSpec>* const registry = new std::vector<ModelSpec>(BuildRegistry());
  return *registry;
}

const ModelSpec* FindModel(std::string_view name) {
  for (const ModelSpec& s : ModelRegistry()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const char* DefaultModelName() { return "clip-vit-l-14-336"; }

const char* BackboneKindName(BackboneKind kind) {
  return kind == BackboneKind::kVit ? "vit" : "darknet";
}

const char* PreprocessKindName(PreprocessKind kind) {
  switch (kind) {
    case PreprocessKind::kClip:
      return "clip";
    case PreprocessKind::kImageNet:
      return "imagenet";
    case PreprocessKind::kDarknet:
      return "darknet";
  }
  return "?";
}

PreprocessSpec PreprocessOf(const ModelSpec& spec, int64_t input_size) {
  switch (spec.preprocess) {
    case PreprocessKind::kClip:
      return ClipPreprocessSpec(input_size);
    case PreprocessKind::kImageNet:
      return ImageNetPreprocessSpec(input_size);
    case PreprocessKind::kDarknet:
      return DarknetTinyPreprocessSpec(input_size);
  }
  return PreprocessSpec{};
}

absl::StatusOr<VitConfig> ResolveVitConfig(const ModelSpec& spec, const BackboneOptions& options) {
  if (spec.kind != BackboneKind::kVit) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, " is not a ViT"));
  }
  VitConfig config = spec.vit;
  if (options.input_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name, ": input size ", options.input_size, " is negative"));
  }
  if (options.input_size > 0) config.input_size = options.input_size;
  if (!options.layers.empty()) config.feature_blocks = options.layers;
  if (config.input_size % config.patch_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": input size ", config.input_size,
                                                   " is not a multiple of the patch size ",
                                                   config.patch_size));
  }
  for (int64_t b : config.feature_blocks) {
    if (b < 1 || b > config.depth) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.name, ": layer ", b, " is outside 1..", config.depth));
    }
  }
  return config;
}

absl::StatusOr<std::string> ResolveWeightsFile(const ModelSpec& spec,
                                               const std::string& weights_path) {
  namespace fs = std::filesystem;
  const std::string fetch = absl::StrCat("scripts/fetch-weights.sh ", spec.name);
  if (weights_path.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(spec.name, " needs its weights: set the weights path to ", spec.weights_file,
                     " or to a directory holding it (", fetch, " downloads ", spec.url, ")"));
  }
  std::error_code ec;
  if (!fs::is_directory(weights_path, ec)) {
    if (fs::exists(weights_path, ec)) return weights_path;
    return absl::NotFoundError(
        absl::StrCat(spec.name, ": no weights at ", weights_path, " (", fetch, " downloads them)"));
  }
  const fs::path dir(weights_path);
  if (fs::exists(dir / spec.weights_file, ec)) return (dir / spec.weights_file).string();
  if (spec.download_file != spec.weights_file && fs::exists(dir / spec.download_file, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        spec.name, ": ", (dir / spec.download_file).string(),
        " is a PyTorch pickle LibTorch 1.13 cannot read; convert it to ", spec.weights_file, " (",
        fetch, " ", weights_path, " does it when python3 has torch and safetensors)"));
  }
  return absl::NotFoundError(absl::StrCat(spec.name, ": ", weights_path, " holds no ",
                                          spec.weights_file, " (", fetch, " ", weights_path,
                                          " fetches it)"));
}

}  // namespace musc
