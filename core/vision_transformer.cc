#include "core/vision_transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/upsample_bicubic2d.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace musc {
namespace {

std::string BlockKey(int64_t index, const char* leaf) {
  return "transformer.resblocks." + std::to_string(index) + "." + leaf;
}

at::Tensor LayerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, 1e-5);
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedVitParameters(
    const VitConfig& cfg) {
  const int64_t w = cfg.width;
  const int64_t tokens = cfg.pretrained_grid * cfg.pretrained_grid + 1;
  std::vector<std::pair<std::string, std::vector<int64_t>>> p = {
      {"conv1.weight", {w, 3, cfg.patch_size, cfg.patch_size}},
      {"class_embedding", {w}},
      {"positional_embedding", {tokens, w}},
      {"ln_pre.weight", {w}},
      {"ln_pre.bias", {w}},
  };
  for (int64_t b = 0; b < cfg.depth; ++b) {
    p.push_back({BlockKey(b, "ln_1.weight"), {w}});
    p.push_back({BlockKey(b, "ln_1.bias"), {w}});
    p.push_back({BlockKey(b, "attn.in_proj_weight"), {3 * w, w}});
    p.push_back({BlockKey(b, "attn.in_proj_bias"), {3 * w}});
    p.push_back({BlockKey(b, "attn.out_proj.weight"), {w, w}});
    p.push_back({BlockKey(b, "attn.out_proj.bias"), {w}});
    p.push_back({BlockKey(b, "ln_2.weight"), {w}});
    p.push_back({BlockKey(b, "ln_2.bias"), {w}});
    p.push_back({BlockKey(b, "mlp.c_fc.weight"), {cfg.mlp_width, w}});
    p.push_back({BlockKey(b, "mlp.c_fc.bias"), {cfg.mlp_width}});
    p.push_back({BlockKey(b, "mlp.c_proj.weight"), {w, cfg.mlp_width}});
    p.push_back({BlockKey(b, "mlp.c_proj.bias"), {w}});
  }
  p.push_back({"ln_post.weight", {w}});
  p.push_back({"ln_post.bias", {w}});
  p.push_back({"proj", {w, cfg.embed_dim}});
  return p;
}

TensorMap RandomVitWeights(const VitConfig& cfg, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  TensorMap weights;
  for (const auto& [name, shape] : ExpectedVitParameters(cfg)) {
    const bool is_norm = name.find("ln_") != std::string::npos;
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool is_in_proj_bias = name.find("in_proj_bias") != std::string::npos;
    if (is_norm) {
      // LayerNorm gains near 1 and small biases, so the random network stays well conditioned.
      weights[name] = is_bias ? 0.02 * at::randn(shape, gen) : 1.0 + 0.1 * at::randn(shape, gen);
    } else if (is_bias || is_in_proj_bias) {
      weights[name] = 0.02 * at::randn(shape, gen);
    } else {
      // CLIP's initialisation scale: std = fan_in^-0.5.
      const int64_t fan_in = shape.size() == 4 ? shape[1] * shape[2] * shape[3] : shape.back();
      const double scale = name == "proj" ? std::pow(static_cast<double>(shape[0]), -0.5)
                                          : std::pow(static_cast<double>(fan_in), -0.5);
      weights[name] = scale * at::randn(shape, gen);
    }
  }
  return weights;
}

VitConfig TinyVitConfig() {
  VitConfig cfg;
  cfg.patch_size = 8;
  cfg.width = 64;
  cfg.depth = 4;
  cfg.heads = 4;
  cfg.mlp_width = 256;
  cfg.pretrained_grid = 8;
  cfg.embed_dim = 32;
  cfg.input_size = 64;
  cfg.feature_blocks = {1, 2, 3, 4};
  return cfg;
}

PreprocessSpec ClipPreprocessSpec(int64_t input_size) {
  PreprocessSpec spec;
  spec.input_size = input_size;
  spec.filter = ResizeFilter::kBicubicAntialias;
  spec.mean = {0.48145466f, 0.4578275f, 0.40821073f};
  spec.std = {0.26862954f, 0.26130258f, 0.27577711f};
  return spec;
}

VisionTransformer::VisionTransformer(std::string name, VitConfig config, TensorMap weights,
                                     PreprocessSpec spec)
    : name_(std::move(name)),
      config_(std::move(config)),
      weights_(std::move(weights)),
      spec_(spec) {
  TORCH_CHECK(config_.width % config_.heads == 0, name_, ": width ", config_.width,
              " is not divisible by ", config_.heads, " heads");
  TORCH_CHECK(config_.input_size > 0 && config_.input_size % config_.patch_size == 0, name_,
              ": input size ", config_.input_size, " is not a multiple of the patch size ",
              config_.patch_size);
  TORCH_CHECK(!config_.feature_blocks.empty(), name_, ": no feature blocks selected");
  for (int64_t b : config_.feature_blocks) {
    TORCH_CHECK(b >= 1 && b <= config_.depth, name_, ": feature block ", b, " is outside 1..",
                config_.depth);
  }
  for (const auto& [key, shape] : ExpectedVitParameters(config_)) {
    const auto it = weights_.find(key);
    TORCH_CHECK(it != weights_.end(), name_, ": missing parameter '", key, "'");
    TORCH_CHECK(it->second.sizes() == at::IntArrayRef(shape), name_, ": parameter '", key,
                "' has shape ", it->second.sizes(), ", expected ", at::IntArrayRef(shape));
    it->second = it->second.to(at::kFloat).contiguous();
  }
  // Resize the position embeddings to the running grid once (bicubic, align_corners=false);
  // the class-token embedding is kept as is.
  const at::Tensor& pos = W("positional_embedding");
  const int64_t grid = config_.input_size / config_.patch_size;
  if (grid == config_.pretrained_grid) {
    positional_embedding_ = pos;
  } else {
    const int64_t g0 = config_.pretrained_grid;
    at::Tensor patch_pos = pos.narrow(0, 1, g0 * g0).reshape({1, g0, g0, config_.width});
    patch_pos = at::upsample_bicubic2d(patch_pos.permute({0, 3, 1, 2}), {grid, grid},
                                       /*align_corners=*/false);
    patch_pos = patch_pos.permute({0, 2, 3, 1}).reshape({grid * grid, config_.width});
    positional_embedding_ = at::cat({pos.narrow(0, 0, 1), patch_pos}, 0).contiguous();
  }
}

const at::Tensor& VisionTransformer::W(const std::string& key) const { return weights_.at(key); }

at::Tensor VisionTransformer::Block(const at::Tensor& x, int64_t b) const {
  const int64_t n = x.size(0);
  const int64_t t = x.size(1);
  const int64_t w = config_.width;
  const int64_t h = config_.heads;
  const int64_t d = w / h;

  at::Tensor y = LayerNorm(x, W(BlockKey(b, "ln_1.weight")), W(BlockKey(b, "ln_1.bias")));
  at::Tensor qkv =
      at::linear(y, W(BlockKey(b, "attn.in_proj_weight")), W(BlockKey(b, "attn.in_proj_bias")));
  qkv = qkv.view({n, t, 3, h, d}).permute({2, 0, 3, 1, 4});  // 3×N×heads×T×d
  const at::Tensor q = qkv[0] * (1.0 / std::sqrt(static_cast<double>(d)));
  const at::Tensor attention = at::softmax(at::matmul(q, qkv[1].transpose(-2, -1)), -1);
  at::Tensor context = at::matmul(attention, qkv[2]).transpose(1, 2).reshape({n, t, w});
  at::Tensor out = x + at::linear(context, W(BlockKey(b, "attn.out_proj.weight")),
                                  W(BlockKey(b, "attn.out_proj.bias")));

  y = LayerNorm(out, W(BlockKey(b, "ln_2.weight")), W(BlockKey(b, "ln_2.bias")));
  y = at::linear(y, W(BlockKey(b, "mlp.c_fc.weight")), W(BlockKey(b, "mlp.c_fc.bias")));
  y = y * at::sigmoid(1.702 * y);  // QuickGELU, as OpenAI's CLIP was trained with.
  y = at::linear(y, W(BlockKey(b, "mlp.c_proj.weight")), W(BlockKey(b, "mlp.c_proj.bias")));
  return out + y;
}

BackboneFeatures VisionTransformer::Forward(const at::Tensor& images) {
  const int64_t s = config_.input_size;
  TORCH_CHECK(
      images.dim() == 4 && images.size(1) == 3 && images.size(2) == s && images.size(3) == s, name_,
      ": expected N×3×", s, "×", s, " input, got ", images.sizes());
  const int64_t n = images.size(0);
  const int64_t grid = s / config_.patch_size;
  const int64_t w = config_.width;

  at::Tensor x = at::conv2d(images.to(at::kFloat), W("conv1.weight"), {},
                            {config_.patch_size, config_.patch_size});
  x = x.flatten(2).transpose(1, 2);  // N×L×W
  const at::Tensor cls = W("class_embedding").view({1, 1, w}).expand({n, 1, w});
  x = at::cat({cls, x}, 1) + positional_embedding_;
  x = LayerNorm(x, W("ln_pre.weight"), W("ln_pre.bias"));

  BackboneFeatures features;
  for (int64_t b = 0; b < config_.depth; ++b) {
    x = Block(x, b);
    for (int64_t selected : config_.feature_blocks) {
      if (selected == b + 1) {
        // Drop the class token; N×G×G×W viewed as N×W×G×G (channels-last storage, no copy).
        features.layer_maps.push_back(
            x.narrow(1, 1, grid * grid).reshape({n, grid, grid, w}).permute({0, 3, 1, 2}));
      }
    }
  }
  at::Tensor embedding =
      at::matmul(LayerNorm(x.select(1, 0), W("ln_post.weight"), W("ln_post.bias")), W("proj"));
  features.image_embedding =
      embedding / at::linalg_vector_norm(embedding, 2, {-1}, /*keepdim=*/true).clamp_min(1e-12);
  return features;
}

}  // namespace musc
