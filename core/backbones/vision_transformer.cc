#include "core/backbones/vision_transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/_softmax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/upsample_bicubic2d.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace musc {
namespace {

// What a parameter is, independent of its family's name for it. Drives the shapes, the random
// initialisation and where the constructor files each tensor.
enum class Role {
  kPatchWeight,
  kPatchBias,
  kClassToken,
  kPosEmbed,
  kPreNormWeight,
  kPreNormBias,
  kNorm1Weight,
  kNorm1Bias,
  kQkvWeight,
  kQkvBias,
  kProjWeight,
  kProjBias,
  kLayerScale1,
  kNorm2Weight,
  kNorm2Bias,
  kFc1Weight,
  kFc1Bias,
  kFc2Weight,
  kFc2Bias,
  kLayerScale2,
  kFinalNormWeight,
  kFinalNormBias,
  kEmbedProj,
};

struct Leaf {
  Role role;
  const char* name;
};

struct FamilyNames {
  std::vector<Leaf> stem;
  const char* block_prefix;  // Followed by the 0-based block index and '.'.
  std::vector<Leaf> block;
  std::vector<Leaf> head;
};

// The canonical names, in the original modules' state_dict order.
const FamilyNames& NamesOf(VitFamily family) {
  static const FamilyNames kClip = {
      {{Role::kPatchWeight, "conv1.weight"},
       {Role::kClassToken, "class_embedding"},
       {Role::kPosEmbed, "positional_embedding"},
       {Role::kPreNormWeight, "ln_pre.weight"},
       {Role::kPreNormBias, "ln_pre.bias"}},
      "transformer.resblocks.",
      {{Role::kNorm1Weight, "ln_1.weight"},
       {Role::kNorm1Bias, "ln_1.bias"},
       {Role::kQkvWeight, "attn.in_proj_weight"},
       {Role::kQkvBias, "attn.in_proj_bias"},
       {Role::kProjWeight, "attn.out_proj.weight"},
       {Role::kProjBias, "attn.out_proj.bias"},
       {Role::kNorm2Weight, "ln_2.weight"},
       {Role::kNorm2Bias, "ln_2.bias"},
       {Role::kFc1Weight, "mlp.c_fc.weight"},
       {Role::kFc1Bias, "mlp.c_fc.bias"},
       {Role::kFc2Weight, "mlp.c_proj.weight"},
       {Role::kFc2Bias, "mlp.c_proj.bias"}},
      {{Role::kFinalNormWeight, "ln_post.weight"},
       {Role::kFinalNormBias, "ln_post.bias"},
       {Role::kEmbedProj, "proj"}},
  };
  static const FamilyNames kDino = {
      {{Role::kClassToken, "cls_token"},
       {Role::kPosEmbed, "pos_embed"},
       {Role::kPatchWeight, "patch_embed.proj.weight"},
       {Role::kPatchBias, "patch_embed.proj.bias"}},
      "blocks.",
      {{Role::kNorm1Weight, "norm1.weight"},
       {Role::kNorm1Bias, "norm1.bias"},
       {Role::kQkvWeight, "attn.qkv.weight"},
       {Role::kQkvBias, "attn.qkv.bias"},
       {Role::kProjWeight, "attn.proj.weight"},
       {Role::kProjBias, "attn.proj.bias"},
       {Role::kNorm2Weight, "norm2.weight"},
       {Role::kNorm2Bias, "norm2.bias"},
       {Role::kFc1Weight, "mlp.fc1.weight"},
       {Role::kFc1Bias, "mlp.fc1.bias"},
       {Role::kFc2Weight, "mlp.fc2.weight"},
       {Role::kFc2Bias, "mlp.fc2.bias"}},
      {{Role::kFinalNormWeight, "norm.weight"}, {Role::kFinalNormBias, "norm.bias"}},
  };
  static const FamilyNames kDinoV2 = {
      kDino.stem,
      "blocks.",
      {{Role::kNorm1Weight, "norm1.weight"},
       {Role::kNorm1Bias, "norm1.bias"},
       {Role::kQkvWeight, "attn.qkv.weight"},
       {Role::kQkvBias, "attn.qkv.bias"},
       {Role::kProjWeight, "attn.proj.weight"},
       {Role::kProjBias, "attn.proj.bias"},
       {Role::kLayerScale1, "ls1.gamma"},
       {Role::kNorm2Weight, "norm2.weight"},
       {Role::kNorm2Bias, "norm2.bias"},
       {Role::kFc1Weight, "mlp.fc1.weight"},
       {Role::kFc1Bias, "mlp.fc1.bias"},
       {Role::kFc2Weight, "mlp.fc2.weight"},
       {Role::kFc2Bias, "mlp.fc2.bias"},
       {Role::kLayerScale2, "ls2.gamma"}},
      kDino.head,
  };
  switch (family) {
    case VitFamily::kOpenAiClip:
      return kClip;
    case VitFamily::kDino:
      return kDino;
    case VitFamily::kDinoV2:
      return kDinoV2;
  }
  TORCH_CHECK(false, "unknown ViT family");
}

std::vector<int64_t> ShapeOf(Role role, const VitConfig& cfg) {
  const int64_t w = cfg.width;
  const int64_t tokens = cfg.pretrained_grid * cfg.pretrained_grid + 1;
  // DINO and DINOv2 keep their batch dimension on the class token and position table.
  const bool batched = cfg.family != VitFamily::kOpenAiClip;
  switch (role) {
    case Role::kPatchWeight:
      return {w, 3, cfg.patch_size, cfg.patch_size};
    case Role::kClassToken:
      return batched ? std::vector<int64_t>{1, 1, w} : std::vector<int64_t>{w};
    case Role::kPosEmbed:
      return batched ? std::vector<int64_t>{1, tokens, w} : std::vector<int64_t>{tokens, w};
    case Role::kQkvWeight:
      return {3 * w, w};
    case Role::kQkvBias:
      return {3 * w};
    case Role::kProjWeight:
      return {w, w};
    case Role::kFc1Weight:
      return {cfg.mlp_width, w};
    case Role::kFc1Bias:
      return {cfg.mlp_width};
    case Role::kFc2Weight:
      return {w, cfg.mlp_width};
    case Role::kEmbedProj:
      return {w, cfg.embed_dim};
    default:  // Norms, LayerScale and the W-wide biases.
      return {w};
  }
}

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  Role role;
  int64_t block;  // -1 outside the blocks.
};

std::vector<ParamSpec> ParamSpecs(const VitConfig& cfg) {
  const FamilyNames& names = NamesOf(cfg.family);
  std::vector<ParamSpec> specs;
  for (const Leaf& leaf : names.stem) {
    specs.push_back({leaf.name, ShapeOf(leaf.role, cfg), leaf.role, -1});
  }
  for (int64_t b = 0; b < cfg.depth; ++b) {
    const std::string prefix = names.block_prefix + std::to_string(b) + ".";
    for (const Leaf& leaf : names.block) {
      specs.push_back({prefix + leaf.name, ShapeOf(leaf.role, cfg), leaf.role, b});
    }
  }
  for (const Leaf& leaf : names.head) {
    specs.push_back({leaf.name, ShapeOf(leaf.role, cfg), leaf.role, -1});
  }
  return specs;
}

}  // namespace

const char* VitFamilyName(VitFamily family) {
  switch (family) {
    case VitFamily::kOpenAiClip:
      return "clip";
    case VitFamily::kDino:
      return "dino";
    case VitFamily::kDinoV2:
      return "dinov2";
  }
  return "?";
}

std::optional<VitFamily> ParseVitFamily(std::string_view name) {
  for (VitFamily f : {VitFamily::kOpenAiClip, VitFamily::kDino, VitFamily::kDinoV2}) {
    if (name == VitFamilyName(f)) return f;
  }
  return std::nullopt;
}

VitFamilyTraits TraitsOf(VitFamily family) {
  switch (family) {
    case VitFamily::kOpenAiClip:
      // nn.LayerNorm defaults; OpenAI trained with QuickGELU; open_clip resizes by output size.
      return {1e-5, true, false, true, false, false, true, 0.0};
    case VitFamily::kDino:
      // vit_base(..., norm_layer=partial(nn.LayerNorm, eps=1e-6)), nn.GELU, qkv_bias=True.
      return {1e-6, false, true, false, false, true, false, 0.1};
    case VitFamily::kDinoV2:
      // hub backbones: init_values=1.0 (LayerScale), interpolate_offset=0.1, no antialias.
      return {1e-6, false, true, false, true, true, false, 0.1};
  }
  TORCH_CHECK(false, "unknown ViT family");
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedVitParameters(
    const VitConfig& cfg) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (ParamSpec& s : ParamSpecs(cfg)) out.emplace_back(std::move(s.name), std::move(s.shape));
  return out;
}

TensorMap RandomVitWeights(const VitConfig& cfg, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  TensorMap weights;
  for (const ParamSpec& s : ParamSpecs(cfg)) {
    at::Tensor t;
    switch (s.role) {
      case Role::kPreNormWeight:
      case Role::kNorm1Weight:
      case Role::kNorm2Weight:
      case Role::kFinalNormWeight:
        // LayerNorm gains near 1 and small biases, so the random network stays well conditioned.
        t = 1.0 + 0.1 * at::randn(s.shape, gen);
        break;
      case Role::kLayerScale1:
      case Role::kLayerScale2:
        // Well away from 1 so that a model ignoring LayerScale fails the tests.
        t = 0.5 + 0.1 * at::randn(s.shape, gen);
        break;
      case Role::kPreNormBias:
      case Role::kNorm1Bias:
      case Role::kNorm2Bias:
      case Role::kFinalNormBias:
      case Role::kPatchBias:
      case Role::kQkvBias:
      case Role::kProjBias:
      case Role::kFc1Bias:
      case Role::kFc2Bias:
        t = 0.02 * at::randn(s.shape, gen);
        break;
      default: {
        // CLIP's initialisation scale: std = fan_in^-0.5 (proj: its input width).
        const std::vector<int64_t>& sh = s.shape;
        const int64_t fan_in = s.role == Role::kEmbedProj ? sh[0]
                               : sh.size() == 4           ? sh[1] * sh[2] * sh[3]
                                                          : sh.back();
        t = std::pow(static_cast<double>(fan_in), -0.5) * at::randn(sh, gen);
      }
    }
    weights[s.name] = t;
  }
  return weights;
}

VitConfig TinyVitConfig() { return TinyVitConfig(VitFamily::kOpenAiClip); }

VitConfig TinyVitConfig(VitFamily family) {
  VitConfig cfg;
  cfg.family = family;
  cfg.patch_size = 8;
  cfg.width = 64;
  cfg.depth = 4;
  cfg.heads = 4;
  cfg.mlp_width = 256;
  cfg.pretrained_grid = 8;
  cfg.embed_dim = family == VitFamily::kOpenAiClip ? 32 : cfg.width;
  cfg.input_size = 64;
  cfg.feature_blocks = {1, 2, 3, 4};
  return cfg;
}

at::Tensor ResizePositionEmbedding(const at::Tensor& pos, int64_t pretrained_grid, int64_t grid,
                                   double scale_offset) {
  const int64_t m = pretrained_grid;
  TORCH_CHECK(pos.dim() == 2 && pos.size(0) == m * m + 1, "position table of shape ", pos.sizes(),
              " does not hold a class token and a ", m, "×", m, " grid");
  TORCH_CHECK(grid > 0, "grid must be positive, got ", grid);
  if (grid == m) return pos;
  const int64_t w = pos.size(1);
  const at::Tensor patch_pos = pos.narrow(0, 1, m * m).reshape({1, m, m, w}).permute({0, 3, 1, 2});
  at::Tensor resized;
  if (scale_offset > 0) {
    // F.interpolate(scale_factor=s) hands s to the kernel, which maps with 1/s instead of M/G.
    const double scale = (static_cast<double>(grid) + scale_offset) / static_cast<double>(m);
    TORCH_CHECK(static_cast<int64_t>(std::floor(m * scale)) == grid, "scale ", scale,
                " does not give a ", grid, "-wide grid");
    resized =
        at::upsample_bicubic2d(patch_pos, {grid, grid}, /*align_corners=*/false, scale, scale);
  } else {
    resized = at::upsample_bicubic2d(patch_pos, {grid, grid}, /*align_corners=*/false);
  }
  resized = resized.permute({0, 2, 3, 1}).reshape({grid * grid, w});
  return at::cat({pos.narrow(0, 0, 1), resized}, 0).contiguous();
}

PreprocessSpec ClipPreprocessSpec(int64_t input_size) {
  PreprocessSpec spec;
  spec.input_size = input_size;
  spec.filter = ResizeFilter::kBicubicAntialias;
  spec.mean = {0.48145466f, 0.4578275f, 0.40821073f};
  spec.std = {0.26862954f, 0.26130258f, 0.27577711f};
  return spec;
}

PreprocessSpec ImageNetPreprocessSpec(int64_t input_size) {
  PreprocessSpec spec;
  spec.input_size = input_size;
  spec.filter = ResizeFilter::kBilinear;
  spec.mean = {0.485f, 0.456f, 0.406f};
  spec.std = {0.229f, 0.224f, 0.225f};
  return spec;
}

PreprocessSpec VitPreprocessSpec(const VitConfig& config) {
  return config.family == VitFamily::kOpenAiClip ? ClipPreprocessSpec(config.input_size)
                                                 : ImageNetPreprocessSpec(config.input_size);
}

VisionTransformer::VisionTransformer(std::string name, VitConfig config, TensorMap weights,
                                     PreprocessSpec spec)
    : name_(std::move(name)),
      config_(std::move(config)),
      traits_(TraitsOf(config_.family)),
      spec_(spec),
      weights_(std::move(weights)) {
  TORCH_CHECK(config_.heads > 0 && config_.width % config_.heads == 0, name_, ": width ",
              config_.width, " is not divisible by ", config_.heads, " heads");
  TORCH_CHECK(config_.patch_size > 0 && config_.input_size > 0 &&
                  config_.input_size % config_.patch_size == 0,
              name_, ": input size ", config_.input_size, " is not a multiple of the patch size ",
              config_.patch_size);
  TORCH_CHECK(config_.family == VitFamily::kOpenAiClip || config_.embed_dim == config_.width, name_,
              ": a ", VitFamilyName(config_.family),
              " model's image embedding is its class token: embed_dim must equal width ",
              config_.width, ", got ", config_.embed_dim);
  TORCH_CHECK(!config_.feature_blocks.empty(), name_, ": no feature blocks selected");
  for (int64_t b : config_.feature_blocks) {
    TORCH_CHECK(b >= 1 && b <= config_.depth, name_, ": feature block ", b, " is outside 1..",
                config_.depth);
  }
  blocks_.resize(static_cast<size_t>(config_.depth));
  const int64_t w = config_.width;
  for (const ParamSpec& s : ParamSpecs(config_)) {
    const auto it = weights_.find(s.name);
    TORCH_CHECK(it != weights_.end(), name_, ": missing parameter '", s.name, "'");
    TORCH_CHECK(it->second.sizes() == at::IntArrayRef(s.shape), name_, ": parameter '", s.name,
                "' has shape ", it->second.sizes(), ", expected ", at::IntArrayRef(s.shape));
    it->second = it->second.to(at::kFloat).contiguous();
    const at::Tensor& t = it->second;
    BlockWeights* blk = s.block >= 0 ? &blocks_[static_cast<size_t>(s.block)] : nullptr;
    switch (s.role) {
      case Role::kPatchWeight:
        patch_w_ = t;
        break;
      case Role::kPatchBias:
        patch_b_ = t;
        break;
      case Role::kClassToken:
        class_token_ = t.reshape({w});
        break;
      case Role::kPosEmbed:
        positional_embedding_ = t.reshape({-1, w});
        break;
      case Role::kPreNormWeight:
        pre_norm_w_ = t;
        break;
      case Role::kPreNormBias:
        pre_norm_b_ = t;
        break;
      case Role::kNorm1Weight:
        blk->norm1_w = t;
        break;
      case Role::kNorm1Bias:
        blk->norm1_b = t;
        break;
      case Role::kQkvWeight:
        blk->qkv_w = t;
        break;
      case Role::kQkvBias:
        blk->qkv_b = t;
        break;
      case Role::kProjWeight:
        blk->proj_w = t;
        break;
      case Role::kProjBias:
        blk->proj_b = t;
        break;
      case Role::kLayerScale1:
        blk->ls1 = t;
        break;
      case Role::kNorm2Weight:
        blk->norm2_w = t;
        break;
      case Role::kNorm2Bias:
        blk->norm2_b = t;
        break;
      case Role::kFc1Weight:
        blk->fc1_w = t;
        break;
      case Role::kFc1Bias:
        blk->fc1_b = t;
        break;
      case Role::kFc2Weight:
        blk->fc2_w = t;
        break;
      case Role::kFc2Bias:
        blk->fc2_b = t;
        break;
      case Role::kLayerScale2:
        blk->ls2 = t;
        break;
      case Role::kFinalNormWeight:
        final_norm_w_ = t;
        break;
      case Role::kFinalNormBias:
        final_norm_b_ = t;
        break;
      case Role::kEmbedProj:
        proj_ = t;
        break;
    }
  }
  positional_embedding_ = ResizePositionEmbedding(positional_embedding_, config_.pretrained_grid,
                                                  config_.input_size / config_.patch_size,
                                                  traits_.pos_embed_scale_offset);
}

at::Tensor VisionTransformer::LayerNorm(const at::Tensor& x, const at::Tensor& weight,
                                        const at::Tensor& bias) const {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, traits_.layer_norm_eps);
}

at::Tensor VisionTransformer::Attention(const at::Tensor& x, const BlockWeights& wt) const {
  const int64_t n = x.size(0), t = x.size(1), w = config_.width, h = config_.heads;
  const int64_t d = w / h;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  // q, k and v are stacked along the output dimension in every family's fused projection.
  const at::Tensor qkv = at::linear(x, wt.qkv_w, wt.qkv_b);  // N×T×3W
  if (!x.is_cpu()) {
    // Accelerators: every (image, head) product in one batched call.
    const at::Tensor heads = qkv.view({n, t, 3, h, d}).permute({2, 0, 3, 1, 4});  // 3×N×h×T×d
    const at::Tensor attention =
        at::softmax(at::matmul(heads[0] * scale, heads[1].transpose(-2, -1)), -1);
    const at::Tensor context = at::matmul(attention, heads[2]).transpose(1, 2).reshape({n, t, w});
    return at::linear(context, wt.proj_w, wt.proj_b);
  }
  // CPU: one (image, head) at a time, spread over the intra-op threads. at::matmul on the permuted
  // 4-D views runs these T×d×T products at a few GFLOP/s (it copies and loops); plain GEMMs on the
  // strided slices of the fused projection (row stride 3W, which BLAS takes as its leading
  // dimension) run near the machine's GEMM rate, write the context in place, and keep only one
  // T×T score matrix per thread alive instead of N·heads of them.
  at::Tensor context = at::empty({n, t, w}, qkv.options());
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t image = item / h, head = item % h;
      const at::Tensor rows = qkv[image];
      at::Tensor scores =
          at::mm(rows.narrow(1, head * d, d) * scale, rows.narrow(1, w + head * d, d).t());  // T×T
      at::Tensor out = context[image].narrow(1, head * d, d);
      at::mm_out(out, at::_softmax(scores, -1, false), rows.narrow(1, 2 * w + head * d, d));
    }
  });
  return at::linear(context, wt.proj_w, wt.proj_b);
}

at::Tensor VisionTransformer::Mlp(const at::Tensor& x, const BlockWeights& wt) const {
  at::Tensor y = at::linear(x, wt.fc1_w, wt.fc1_b);
  // QuickGELU is what OpenAI's CLIP was trained with; DINO and DINOv2 use nn.GELU (exact erf).
  // Both in place on the fresh fc1 output: x·σ(1.702x) = silu(1.702x)/1.702, one fused kernel
  // instead of three allocating passes over the widest activation of the block.
  if (traits_.quick_gelu) {
    at::silu_(y.mul_(1.702)).div_(1.702);
  } else {
    at::gelu_(y);
  }
  return at::linear(y, wt.fc2_w, wt.fc2_b);
}

at::Tensor VisionTransformer::Block(const at::Tensor& x, const BlockWeights& wt) const {
  // Residual sums accumulate into the branch outputs (fresh tensors), never into x: x may be a
  // feature layer already handed out.
  at::Tensor a = Attention(LayerNorm(x, wt.norm1_w, wt.norm1_b), wt);
  if (wt.ls1.defined()) a.mul_(wt.ls1);
  a.add_(x);
  at::Tensor m = Mlp(LayerNorm(a, wt.norm2_w, wt.norm2_b), wt);
  if (wt.ls2.defined()) m.mul_(wt.ls2);
  return m.add_(a);
}

void VisionTransformer::MoveTo(const at::Device& device) {
  const auto move = [&device](at::Tensor& t) {
    if (t.defined()) t = t.to(device);
  };
  for (at::Tensor* t : {&patch_w_, &patch_b_, &class_token_, &positional_embedding_, &pre_norm_w_,
                        &pre_norm_b_, &final_norm_w_, &final_norm_b_, &proj_}) {
    move(*t);
  }
  for (BlockWeights& b : blocks_) {
    for (at::Tensor* t :
         {&b.norm1_w, &b.norm1_b, &b.qkv_w, &b.qkv_b, &b.proj_w, &b.proj_b, &b.norm2_w, &b.norm2_b,
          &b.fc1_w, &b.fc1_b, &b.fc2_w, &b.fc2_b, &b.ls1, &b.ls2}) {
      move(*t);
    }
  }
  // The loaded checkpoint is not used after construction; keeping host copies of every weight
  // would double the model's memory once it lives on an accelerator.
  weights_.clear();
}

at::Tensor VisionTransformer::RunBlockPart(BlockPart part, int64_t index,
                                           const at::Tensor& x) const {
  TORCH_CHECK(index >= 0 && index < config_.depth, name_, ": no block ", index);
  const BlockWeights& wt = blocks_[static_cast<size_t>(index)];
  switch (part) {
    case BlockPart::kAttention:
      return Attention(LayerNorm(x, wt.norm1_w, wt.norm1_b), wt);
    case BlockPart::kMlp:
      return Mlp(LayerNorm(x, wt.norm2_w, wt.norm2_b), wt);
    case BlockPart::kWholeBlock:
      return Block(x, wt);
  }
  TORCH_CHECK(false, "unknown block part");
}

BackboneFeatures VisionTransformer::Forward(const at::Tensor& images) {
  const int64_t s = config_.input_size;
  TORCH_CHECK(
      images.dim() == 4 && images.size(1) == 3 && images.size(2) == s && images.size(3) == s, name_,
      ": expected N×3×", s, "×", s, " input, got ", images.sizes());
  const int64_t n = images.size(0);
  const int64_t grid = s / config_.patch_size;
  const int64_t w = config_.width;

  at::Tensor x = at::conv2d(images.to(at::kFloat), patch_w_, patch_b_,
                            {config_.patch_size, config_.patch_size});
  x = x.flatten(2).transpose(1, 2);  // N×L×W
  x = at::cat({class_token_.view({1, 1, w}).expand({n, 1, w}), x}, 1) + positional_embedding_;
  if (traits_.pre_norm) x = LayerNorm(x, pre_norm_w_, pre_norm_b_);

  BackboneFeatures features;
  at::Tensor last_normed;  // norm(x) of the last block, when a feature layer already needed it.
  for (int64_t b = 0; b < config_.depth; ++b) {
    x = Block(x, blocks_[static_cast<size_t>(b)]);
    for (int64_t selected : config_.feature_blocks) {
      if (selected != b + 1) continue;
      at::Tensor tokens = x;
      if (traits_.features_through_norm) {
        tokens = LayerNorm(x, final_norm_w_, final_norm_b_);
        if (b + 1 == config_.depth) last_normed = tokens;
      }
      // Drop the class token; N×G×G×W viewed as N×W×G×G (channels-last storage, no copy).
      features.layer_maps.push_back(
          tokens.narrow(1, 1, grid * grid).reshape({n, grid, grid, w}).permute({0, 3, 1, 2}));
    }
  }
  const at::Tensor cls = x.select(1, 0);
  if (traits_.projected_embedding) {
    const at::Tensor e = at::matmul(LayerNorm(cls, final_norm_w_, final_norm_b_), proj_);
    features.image_embedding =
        e / at::linalg_vector_norm(e, 2, {-1}, /*keepdim=*/true).clamp_min(1e-12);
  } else {
    // The reference's model(x): the final norm's class token, used by RsCIN as it is.
    features.image_embedding = last_normed.defined() ? last_normed.select(1, 0).contiguous()
                                                     : LayerNorm(cls, final_norm_w_, final_norm_b_);
  }
  return features;
}

}  // namespace musc
