// The CLIP-style ViT: output shapes of the tiny config, determinism of RandomVitWeights, weight
// validation, and the whole forward pass against an independent float64 implementation written
// here step by step (patchify by explicit loops, per-head attention, pre-LN blocks, QuickGELU,
// bicubic position-embedding resize, ln_post·proj).
#include "core/backbones/vision_transformer.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/erf.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

BackboneFeatures RunForward(VisionTransformer& vit, const at::Tensor& images) {
  c10::InferenceMode guard;
  return vit.Forward(images);
}

VisionTransformer MakeTiny(uint64_t seed, VitConfig config = TinyVitConfig()) {
  return VisionTransformer("tiny", config, RandomVitWeights(config, seed),
                           ClipPreprocessSpec(config.input_size));
}

at::Tensor Images(int64_t n, int64_t size, uint64_t seed) {
  return naive::Randn({n, 3, size, size}, seed);
}

// ---------------------------------------------------------------------------------------------
// Independent float64 forward pass. The family traits and names are written out here from the
// original repositories (OpenAI CLIP, facebookresearch/dino, facebookresearch/dinov2), not taken
// from the core.

struct Family {
  VitFamily family;
  double eps;
  bool quick_gelu, patch_bias, pre_norm, layer_scale, features_through_norm, projected_embedding;
  double pos_offset;  // DINO's interpolate_pos_encoding: scale_factor (G + 0.1)/M.
  const char *cls, *pos, *patch_w, *patch_b, *pre_w, *pre_b, *block;
  const char *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ls1;
  const char *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ls2;
  const char *final_w, *final_b, *embed_proj;
};

const Family kClip = {VitFamily::kOpenAiClip,
                      1e-5,
                      true,
                      false,
                      true,
                      false,
                      false,
                      true,
                      0.0,
                      "class_embedding",
                      "positional_embedding",
                      "conv1.weight",
                      nullptr,
                      "ln_pre.weight",
                      "ln_pre.bias",
                      "transformer.resblocks.",
                      "ln_1.weight",
                      "ln_1.bias",
                      "attn.in_proj_weight",
                      "attn.in_proj_bias",
                      "attn.out_proj.weight",
                      "attn.out_proj.bias",
                      nullptr,
                      "ln_2.weight",
                      "ln_2.bias",
                      "mlp.c_fc.weight",
                      "mlp.c_fc.bias",
                      "mlp.c_proj.weight",
                      "mlp.c_proj.bias",
                      nullptr,
                      "ln_post.weight",
                      "ln_post.bias",
                      "proj"};
const Family kDino = {VitFamily::kDino,
                      1e-6,
                      false,
                      true,
                      false,
                      false,
                      true,
                      false,
                      0.1,
                      "cls_token",
                      "pos_embed",
                      "patch_embed.proj.weight",
                      "patch_embed.proj.bias",
                      nullptr,
                      nullptr,
                      "blocks.",
                      "norm1.weight",
                      "norm1.bias",
                      "attn.qkv.weight",
                      "attn.qkv.bias",
                      "attn.proj.weight",
                      "attn.proj.bias",
                      nullptr,
                      "norm2.weight",
                      "norm2.bias",
                      "mlp.fc1.weight",
                      "mlp.fc1.bias",
                      "mlp.fc2.weight",
                      "mlp.fc2.bias",
                      nullptr,
                      "norm.weight",
                      "norm.bias",
                      nullptr};
const Family kDinoV2 = {VitFamily::kDinoV2,
                        1e-6,
                        false,
                        true,
                        false,
                        true,
                        true,
                        false,
                        0.1,
                        "cls_token",
                        "pos_embed",
                        "patch_embed.proj.weight",
                        "patch_embed.proj.bias",
                        nullptr,
                        nullptr,
                        "blocks.",
                        "norm1.weight",
                        "norm1.bias",
                        "attn.qkv.weight",
                        "attn.qkv.bias",
                        "attn.proj.weight",
                        "attn.proj.bias",
                        "ls1.gamma",
                        "norm2.weight",
                        "norm2.bias",
                        "mlp.fc1.weight",
                        "mlp.fc1.bias",
                        "mlp.fc2.weight",
                        "mlp.fc2.bias",
                        "ls2.gamma",
                        "norm.weight",
                        "norm.bias",
                        nullptr};

const Family& FamilyOf(VitFamily family) {
  return family == VitFamily::kOpenAiClip ? kClip : family == VitFamily::kDino ? kDino : kDinoV2;
}

at::Tensor D(const TensorMap& w, const std::string& key) { return w.at(key).to(at::kDouble); }

std::string BlockKey(const Family& f, int64_t b, const char* leaf) {
  return f.block + std::to_string(b) + "." + leaf;
}

// LayerNorm over the last dimension with weight and bias, from its definition.
at::Tensor NaiveLayerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          double eps) {
  const at::Tensor mean = x.mean({-1}, /*keepdim=*/true);
  const at::Tensor centred = x - mean;
  const at::Tensor var = (centred * centred).mean({-1}, /*keepdim=*/true);
  return centred / at::sqrt(var + eps) * weight + bias;
}

at::Tensor NaiveSoftmaxLastDim(const at::Tensor& x) {
  const at::Tensor e = at::exp(x - at::amax(x, {-1}, /*keepdim=*/true));
  return e / e.sum({-1}, /*keepdim=*/true);
}

// One pre-LN residual block on x: N×T×W (float64).
at::Tensor NaiveBlock(const TensorMap& w, const VitConfig& cfg, const Family& f, int64_t b,
                      const at::Tensor& x) {
  const int64_t width = cfg.width, heads = cfg.heads, d = width / heads;
  const at::Tensor y =
      NaiveLayerNorm(x, D(w, BlockKey(f, b, f.n1w)), D(w, BlockKey(f, b, f.n1b)), f.eps);
  const at::Tensor in_w = D(w, BlockKey(f, b, f.qkv_w));  // 3W×W: q, k, v stacked.
  const at::Tensor in_b = D(w, BlockKey(f, b, f.qkv_b));
  const at::Tensor q = at::matmul(y, in_w.narrow(0, 0, width).t()) + in_b.narrow(0, 0, width);
  const at::Tensor k =
      at::matmul(y, in_w.narrow(0, width, width).t()) + in_b.narrow(0, width, width);
  const at::Tensor v =
      at::matmul(y, in_w.narrow(0, 2 * width, width).t()) + in_b.narrow(0, 2 * width, width);
  std::vector<at::Tensor> head_outputs;
  for (int64_t h = 0; h < heads; ++h) {
    const at::Tensor qh = q.narrow(-1, h * d, d), kh = k.narrow(-1, h * d, d);
    const at::Tensor vh = v.narrow(-1, h * d, d);
    const at::Tensor logits =
        at::matmul(qh, kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
    head_outputs.push_back(at::matmul(NaiveSoftmaxLastDim(logits), vh));
  }
  const at::Tensor context = at::cat(head_outputs, -1);
  at::Tensor attn_out =
      at::matmul(context, D(w, BlockKey(f, b, f.proj_w)).t()) + D(w, BlockKey(f, b, f.proj_b));
  if (f.layer_scale) attn_out = attn_out * D(w, BlockKey(f, b, f.ls1));
  const at::Tensor x1 = x + attn_out;
  at::Tensor m =
      NaiveLayerNorm(x1, D(w, BlockKey(f, b, f.n2w)), D(w, BlockKey(f, b, f.n2b)), f.eps);
  m = at::matmul(m, D(w, BlockKey(f, b, f.fc1_w)).t()) + D(w, BlockKey(f, b, f.fc1_b));
  if (f.quick_gelu) {
    m = m * at::sigmoid(1.702 * m);
  } else {
    m = 0.5 * m * (1.0 + at::erf(m / std::sqrt(2.0)));
  }
  m = at::matmul(m, D(w, BlockKey(f, b, f.fc2_w)).t()) + D(w, BlockKey(f, b, f.fc2_b));
  if (f.layer_scale) m = m * D(w, BlockKey(f, b, f.ls2));
  return x1 + m;
}

struct NaiveFeatures {
  std::vector<at::Tensor> layer_maps;  // N×W×G×G, float64.
  at::Tensor image_embedding;          // N×embed_dim, float64.
};

NaiveFeatures NaiveForward(const TensorMap& w, const VitConfig& cfg, const at::Tensor& images) {
  const Family& f = FamilyOf(cfg.family);
  const at::Tensor img = images.to(at::kDouble).contiguous();
  const int64_t n = img.size(0), p = cfg.patch_size, g = cfg.input_size / p, width = cfg.width;
  // Patchify with explicit loops: row (y, x) holds the patch's (channel, dy, dx) values, the
  // flattening order of the patch convolution's last three dimensions.
  at::Tensor patches = at::zeros({n, g * g, 3 * p * p}, at::kDouble);
  {
    const auto src = img.accessor<double, 4>();
    auto dst = patches.accessor<double, 3>();
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t gy = 0; gy < g; ++gy) {
        for (int64_t gx = 0; gx < g; ++gx) {
          int64_t k = 0;
          for (int64_t ch = 0; ch < 3; ++ch) {
            for (int64_t dy = 0; dy < p; ++dy) {
              for (int64_t dx = 0; dx < p; ++dx) {
                dst[i][gy * g + gx][k++] = src[i][ch][gy * p + dy][gx * p + dx];
              }
            }
          }
        }
      }
    }
  }
  at::Tensor tokens = at::matmul(patches, D(w, f.patch_w).reshape({width, -1}).t());
  if (f.patch_bias) tokens = tokens + D(w, f.patch_b);
  const at::Tensor cls = D(w, f.cls).reshape({1, 1, width}).expand({n, 1, width});
  at::Tensor pos = D(w, f.pos).reshape({-1, width});
  const int64_t g0 = cfg.pretrained_grid;
  if (g != g0) {
    const at::Tensor grid =
        pos.narrow(0, 1, g0 * g0).reshape({1, g0, g0, width}).permute({0, 3, 1, 2});
    const double ratio = f.pos_offset > 0 ? static_cast<double>(g0) / (g + f.pos_offset) : 0.0;
    const at::Tensor resized = naive::ResizeBicubic(grid, g, g, ratio, ratio)[0];
    pos = at::cat({pos.narrow(0, 0, 1), resized.permute({1, 2, 0}).reshape({g * g, width})}, 0);
  }
  at::Tensor x = at::cat({cls, tokens}, 1) + pos;
  if (f.pre_norm) x = NaiveLayerNorm(x, D(w, f.pre_w), D(w, f.pre_b), f.eps);
  const at::Tensor final_w = D(w, f.final_w), final_b = D(w, f.final_b);
  NaiveFeatures out;
  for (int64_t b = 0; b < cfg.depth; ++b) {
    x = NaiveBlock(w, cfg, f, b, x);
    for (int64_t selected : cfg.feature_blocks) {
      if (selected != b + 1) continue;
      const at::Tensor t = f.features_through_norm ? NaiveLayerNorm(x, final_w, final_b, f.eps) : x;
      out.layer_maps.push_back(
          t.narrow(1, 1, g * g).reshape({n, g, g, width}).permute({0, 3, 1, 2}).contiguous());
    }
  }
  const at::Tensor normed_cls = NaiveLayerNorm(x.select(1, 0), final_w, final_b, f.eps);
  out.image_embedding = f.projected_embedding
                            ? naive::NormaliseRows(at::matmul(normed_cls, D(w, f.embed_proj)))
                            : normed_cls;
  return out;
}

// |got − expected| ≤ tol · max(1, |expected|) element-wise, reported as the worst ratio.
double WorstScaledError(const at::Tensor& got, const at::Tensor& expected) {
  const at::Tensor e = expected.to(at::kDouble);
  const at::Tensor scale = e.abs().clamp_min(1.0);
  return ((got.to(at::kDouble) - e).abs() / scale).max().item<double>();
}

// ---------------------------------------------------------------------------------------------

TEST(VisionTransformerTest, TinyConfigShapes) {
  const VitConfig cfg = TinyVitConfig();
  EXPECT_EQ(cfg.input_size, 64);
  EXPECT_EQ(cfg.patch_size, 8);
  EXPECT_EQ(cfg.width, 64);
  EXPECT_EQ(cfg.depth, 4);
  VisionTransformer vit = MakeTiny(1);
  EXPECT_EQ(vit.name(), "tiny");
  EXPECT_EQ(vit.preprocess_spec().input_size, 64);
  for (int64_t n : {1, 3}) {
    const BackboneFeatures f = RunForward(vit, Images(n, 64, 2));
    ASSERT_EQ(f.layer_maps.size(), 4u);
    for (const at::Tensor& m : f.layer_maps) {
      EXPECT_EQ(m.sizes(), (at::IntArrayRef{n, 64, 8, 8}));
      EXPECT_EQ(m.scalar_type(), at::kFloat);
      EXPECT_TRUE(m.isfinite().all().item<bool>());
    }
    ASSERT_TRUE(f.image_embedding.defined());
    EXPECT_EQ(f.image_embedding.sizes(), (at::IntArrayRef{n, cfg.embed_dim}));
    EXPECT_EQ(f.image_embedding.scalar_type(), at::kFloat);
    const at::Tensor norms = at::linalg_vector_norm(f.image_embedding, 2, {-1}, false);
    EXPECT_LT(naive::MaxAbsDiff(norms, at::ones({n})), 1e-5);
  }
}

TEST(VisionTransformerTest, RandomWeightsHaveTheExpectedNamesAndShapes) {
  const VitConfig cfg = TinyVitConfig();
  const auto expected = ExpectedVitParameters(cfg);
  const TensorMap weights = RandomVitWeights(cfg, 3);
  EXPECT_EQ(weights.size(), expected.size());
  std::set<std::string> names;
  for (const auto& [name, shape] : expected) {
    EXPECT_TRUE(names.insert(name).second) << "duplicate parameter " << name;
    const auto it = weights.find(name);
    ASSERT_NE(it, weights.end()) << name;
    EXPECT_EQ(it->second.sizes(), at::IntArrayRef(shape)) << name;
    EXPECT_TRUE(it->second.isfinite().all().item<bool>()) << name;
  }
  // The CLIP layout: 5 stem tensors, 12 per block, ln_post and proj.
  EXPECT_EQ(expected.size(), static_cast<size_t>(5 + 12 * cfg.depth + 3));
}

TEST(VisionTransformerTest, SameSeedSameOutputsDifferentSeedDifferentOutputs) {
  const VitConfig cfg = TinyVitConfig();
  const TensorMap a = RandomVitWeights(cfg, 42), b = RandomVitWeights(cfg, 42);
  const TensorMap c = RandomVitWeights(cfg, 43);
  for (const auto& [name, tensor] : a) {
    EXPECT_TRUE(tensor.equal(b.at(name))) << name;
  }
  EXPECT_FALSE(a.at("conv1.weight").equal(c.at("conv1.weight")));
  VisionTransformer va = MakeTiny(42), vb = MakeTiny(42), vc = MakeTiny(43);
  const at::Tensor images = Images(2, 64, 7);
  const BackboneFeatures fa = RunForward(va, images), fb = RunForward(vb, images);
  const BackboneFeatures fc = RunForward(vc, images);
  for (size_t l = 0; l < fa.layer_maps.size(); ++l) {
    EXPECT_TRUE(fa.layer_maps[l].equal(fb.layer_maps[l])) << "layer " << l;
    EXPECT_GT(naive::MaxAbsDiff(fa.layer_maps[l], fc.layer_maps[l]), 1e-2) << "layer " << l;
  }
  EXPECT_TRUE(fa.image_embedding.equal(fb.image_embedding));
  EXPECT_GT(naive::MaxAbsDiff(fa.image_embedding, fc.image_embedding), 1e-2);
  // Running twice on one instance is deterministic too.
  EXPECT_TRUE(RunForward(va, images).image_embedding.equal(fa.image_embedding));
}

TEST(VisionTransformerTest, DifferentImagesGiveDifferentFeatures) {
  VisionTransformer vit = MakeTiny(5);
  const BackboneFeatures f = RunForward(vit, Images(2, 64, 9));
  EXPECT_GT(naive::MaxAbsDiff(f.layer_maps[3][0], f.layer_maps[3][1]), 1e-2);
  EXPECT_GT(naive::MaxAbsDiff(f.image_embedding[0], f.image_embedding[1]), 1e-3);
}

TEST(VisionTransformerTest, ImagesInABatchAreIndependent) {
  VisionTransformer vit = MakeTiny(6);
  const at::Tensor images = Images(3, 64, 10);
  const BackboneFeatures all = RunForward(vit, images);
  for (int64_t i = 0; i < 3; ++i) {
    const BackboneFeatures one = RunForward(vit, images.narrow(0, i, 1));
    for (size_t l = 0; l < all.layer_maps.size(); ++l) {
      EXPECT_LT(naive::MaxAbsDiff(one.layer_maps[l][0], all.layer_maps[l][i]), 1e-4);
    }
    EXPECT_LT(naive::MaxAbsDiff(one.image_embedding[0], all.image_embedding[i]), 1e-5);
  }
}

TEST(VisionTransformerTest, ForwardMatchesIndependentFloat64Implementation) {
  const VitConfig cfg = TinyVitConfig();
  const TensorMap weights = RandomVitWeights(cfg, 11);
  VisionTransformer vit("tiny", cfg, weights, ClipPreprocessSpec(cfg.input_size));
  const at::Tensor images = Images(2, 64, 12);
  const BackboneFeatures got = RunForward(vit, images);
  const NaiveFeatures expected = NaiveForward(weights, cfg, images);
  ASSERT_EQ(got.layer_maps.size(), expected.layer_maps.size());
  for (size_t l = 0; l < got.layer_maps.size(); ++l) {
    EXPECT_LT(WorstScaledError(got.layer_maps[l], expected.layer_maps[l]), 1e-4) << "layer " << l;
  }
  EXPECT_LT(naive::MaxAbsDiff(got.image_embedding, expected.image_embedding), 1e-5);
}

TEST(VisionTransformerTest, FirstBlockMatchesIndependentBlock) {
  // A one-block model isolates a single transformer block (plus the stem and ln_post).
  VitConfig cfg = TinyVitConfig();
  cfg.depth = 1;
  cfg.feature_blocks = {1};
  const TensorMap weights = RandomVitWeights(cfg, 13);
  VisionTransformer vit("one-block", cfg, weights, ClipPreprocessSpec(cfg.input_size));
  const at::Tensor images = Images(1, 64, 14);
  const BackboneFeatures got = RunForward(vit, images);
  const NaiveFeatures expected = NaiveForward(weights, cfg, images);
  ASSERT_EQ(got.layer_maps.size(), 1u);
  EXPECT_LT(WorstScaledError(got.layer_maps[0], expected.layer_maps[0]), 1e-5);
  EXPECT_LT(naive::MaxAbsDiff(got.image_embedding, expected.image_embedding), 1e-5);
}

TEST(VisionTransformerTest, PositionEmbeddingsAreResizedToOtherInputSizes) {
  // 48×48 input with patch 8: a 6×6 grid from embeddings trained at 8×8 (bicubic resize).
  VitConfig cfg = TinyVitConfig();
  cfg.input_size = 48;
  const TensorMap weights = RandomVitWeights(cfg, 15);
  VisionTransformer vit("tiny48", cfg, weights, ClipPreprocessSpec(cfg.input_size));
  const at::Tensor images = Images(2, 48, 16);
  const BackboneFeatures got = RunForward(vit, images);
  const NaiveFeatures expected = NaiveForward(weights, cfg, images);
  ASSERT_EQ(got.layer_maps.size(), 4u);
  for (size_t l = 0; l < got.layer_maps.size(); ++l) {
    EXPECT_EQ(got.layer_maps[l].sizes(), (at::IntArrayRef{2, 64, 6, 6}));
    EXPECT_LT(WorstScaledError(got.layer_maps[l], expected.layer_maps[l]), 1e-4) << "layer " << l;
  }
  EXPECT_LT(naive::MaxAbsDiff(got.image_embedding, expected.image_embedding), 1e-5);
}

// Every family, at the pretrained grid and at a resized one, against the float64 forward.
struct FamilyCase {
  VitFamily family;
  int64_t input_size;
};

class VitFamilyTest : public ::testing::TestWithParam<FamilyCase> {};

TEST_P(VitFamilyTest, ForwardMatchesIndependentFloat64Implementation) {
  VitConfig cfg = TinyVitConfig(GetParam().family);
  cfg.input_size = GetParam().input_size;
  const int64_t g = cfg.input_size / cfg.patch_size;
  const TensorMap weights = RandomVitWeights(cfg, 31);
  VisionTransformer vit("tiny", cfg, weights, VitPreprocessSpec(cfg));
  const at::Tensor images = Images(2, cfg.input_size, 32);
  const BackboneFeatures got = RunForward(vit, images);
  const NaiveFeatures expected = NaiveForward(weights, cfg, images);
  ASSERT_EQ(got.layer_maps.size(), 4u);
  for (size_t l = 0; l < got.layer_maps.size(); ++l) {
    EXPECT_EQ(got.layer_maps[l].sizes(), (at::IntArrayRef{2, cfg.width, g, g}));
    EXPECT_LT(WorstScaledError(got.layer_maps[l], expected.layer_maps[l]), 1e-4) << "layer " << l;
  }
  ASSERT_TRUE(got.image_embedding.defined());
  EXPECT_EQ(got.image_embedding.sizes(), (at::IntArrayRef{2, cfg.embed_dim}));
  EXPECT_LT(WorstScaledError(got.image_embedding, expected.image_embedding), 1e-5);
}

TEST_P(VitFamilyTest, ParameterNamesAndShapesAreTheOriginalRepositories) {
  VitConfig cfg = TinyVitConfig(GetParam().family);
  const Family& f = FamilyOf(cfg.family);
  const int64_t w = cfg.width, tokens = cfg.pretrained_grid * cfg.pretrained_grid + 1;
  const bool clip = cfg.family == VitFamily::kOpenAiClip;
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {f.cls, clip ? std::vector<int64_t>{w} : std::vector<int64_t>{1, 1, w}},
      {f.pos, clip ? std::vector<int64_t>{tokens, w} : std::vector<int64_t>{1, tokens, w}},
      {f.patch_w, {w, 3, cfg.patch_size, cfg.patch_size}},
      {f.final_w, {w}},
      {f.final_b, {w}},
  };
  if (f.patch_bias) expected.push_back({f.patch_b, {w}});
  if (f.pre_norm) {
    expected.push_back({f.pre_w, {w}});
    expected.push_back({f.pre_b, {w}});
  }
  if (f.embed_proj != nullptr) expected.push_back({f.embed_proj, {w, cfg.embed_dim}});
  for (int64_t b = 0; b < cfg.depth; ++b) {
    for (const char* leaf : {f.n1w, f.n1b, f.n2w, f.n2b, f.proj_b, f.fc2_b}) {
      expected.push_back({BlockKey(f, b, leaf), {w}});
    }
    expected.push_back({BlockKey(f, b, f.qkv_w), {3 * w, w}});
    expected.push_back({BlockKey(f, b, f.qkv_b), {3 * w}});
    expected.push_back({BlockKey(f, b, f.proj_w), {w, w}});
    expected.push_back({BlockKey(f, b, f.fc1_w), {cfg.mlp_width, w}});
    expected.push_back({BlockKey(f, b, f.fc1_b), {cfg.mlp_width}});
    expected.push_back({BlockKey(f, b, f.fc2_w), {w, cfg.mlp_width}});
    if (f.layer_scale) {
      expected.push_back({BlockKey(f, b, f.ls1), {w}});
      expected.push_back({BlockKey(f, b, f.ls2), {w}});
    }
  }
  auto got = ExpectedVitParameters(cfg);
  std::sort(got.begin(), got.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(got, expected);
}

TEST_P(VitFamilyTest, MissingLayerScaleOrNormIsNamed) {
  const VitConfig cfg = TinyVitConfig(GetParam().family);
  const Family& f = FamilyOf(cfg.family);
  std::vector<std::string> keys = {f.final_w, BlockKey(f, 3, f.qkv_b)};
  if (f.layer_scale) keys.push_back(BlockKey(f, 1, f.ls2));
  if (f.patch_bias) keys.push_back(f.patch_b);
  for (const std::string& key : keys) {
    TensorMap weights = RandomVitWeights(cfg, 1);
    ASSERT_EQ(weights.erase(key), 1u) << key;
    try {
      VisionTransformer vit("tiny", cfg, weights, VitPreprocessSpec(cfg));
      ADD_FAILURE() << "no error for missing " << key;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what_without_backtrace()).find(key), std::string::npos)
          << e.what_without_backtrace();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, VitFamilyTest,
    ::testing::Values(FamilyCase{VitFamily::kOpenAiClip, 64},
                      FamilyCase{VitFamily::kOpenAiClip, 48}, FamilyCase{VitFamily::kDino, 64},
                      FamilyCase{VitFamily::kDino, 48}, FamilyCase{VitFamily::kDino, 96},
                      FamilyCase{VitFamily::kDinoV2, 64}, FamilyCase{VitFamily::kDinoV2, 48}));

TEST(VitFamilyNameTest, RoundTrips) {
  for (VitFamily f : {VitFamily::kOpenAiClip, VitFamily::kDino, VitFamily::kDinoV2}) {
    const std::optional<VitFamily> parsed = ParseVitFamily(VitFamilyName(f));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_STREQ(VitFamilyName(VitFamily::kOpenAiClip), "clip");
  EXPECT_STREQ(VitFamilyName(VitFamily::kDino), "dino");
  EXPECT_STREQ(VitFamilyName(VitFamily::kDinoV2), "dinov2");
  EXPECT_FALSE(ParseVitFamily("dino3").has_value());
  EXPECT_FALSE(ParseVitFamily("").has_value());
}

struct PosCase {
  int64_t m, g;
  double offset;
};

class ResizePositionEmbeddingTest : public ::testing::TestWithParam<PosCase> {};

TEST_P(ResizePositionEmbeddingTest, MatchesNaiveBicubic) {
  const PosCase pc = GetParam();
  const int64_t w = 6;
  const at::Tensor pos = naive::Randn({pc.m * pc.m + 1, w}, pc.m * 100 + pc.g);
  const at::Tensor got = ResizePositionEmbedding(pos, pc.m, pc.g, pc.offset);
  ASSERT_EQ(got.sizes(), (at::IntArrayRef{pc.g * pc.g + 1, w}));
  EXPECT_TRUE(got[0].equal(pos[0])) << "class-token row must be kept as is";
  const at::Tensor grid =
      pos.narrow(0, 1, pc.m * pc.m).reshape({1, pc.m, pc.m, w}).permute({0, 3, 1, 2});
  const double ratio = pc.offset > 0 ? static_cast<double>(pc.m) / (pc.g + pc.offset) : 0.0;
  const at::Tensor expected =
      naive::ResizeBicubic(grid, pc.g, pc.g, ratio, ratio)[0].permute({1, 2, 0}).reshape({-1, w});
  EXPECT_LT(naive::MaxAbsDiff(got.narrow(0, 1, pc.g * pc.g), expected), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Grids, ResizePositionEmbeddingTest,
                         ::testing::Values(PosCase{24, 37, 0.0},  // CLIP L/14-336 at 518.
                                           PosCase{14, 37, 0.1},  // DINO(v2) /14 at 518.
                                           PosCase{8, 6, 0.0}, PosCase{8, 6, 0.1},
                                           PosCase{8, 12, 0.1}, PosCase{37, 16, 0.0}));

TEST(ResizePositionEmbeddingTest, SameGridReturnsTheTableItself) {
  const at::Tensor pos = naive::Randn({65, 4}, 1);
  EXPECT_TRUE(ResizePositionEmbedding(pos, 8, 8, 0.0).equal(pos));
  EXPECT_TRUE(ResizePositionEmbedding(pos, 8, 8, 0.1).equal(pos));
  EXPECT_THROW(ResizePositionEmbedding(pos, 7, 8, 0.0), c10::Error);
}

TEST(VisionTransformerTest, PreprocessSpecsPerFamily) {
  EXPECT_EQ(VitPreprocessSpec(TinyVitConfig(VitFamily::kOpenAiClip)).filter,
            ResizeFilter::kBicubicAntialias);
  const PreprocessSpec dino = VitPreprocessSpec(TinyVitConfig(VitFamily::kDinoV2));
  EXPECT_EQ(dino.filter, ResizeFilter::kBilinear);
  EXPECT_EQ(dino.input_size, 64);
  EXPECT_FLOAT_EQ(dino.mean[0], 0.485f);
  EXPECT_FLOAT_EQ(dino.mean[1], 0.456f);
  EXPECT_FLOAT_EQ(dino.mean[2], 0.406f);
  EXPECT_FLOAT_EQ(dino.std[0], 0.229f);
  EXPECT_FLOAT_EQ(dino.std[1], 0.224f);
  EXPECT_FLOAT_EQ(dino.std[2], 0.225f);
}

TEST(VisionTransformerTest, SelectedBlocksAreReturnedInOrder) {
  VitConfig cfg = TinyVitConfig();
  const TensorMap weights = RandomVitWeights(cfg, 17);
  VisionTransformer full("full", cfg, weights, ClipPreprocessSpec(64));
  cfg.feature_blocks = {2, 4};
  VisionTransformer some("some", cfg, weights, ClipPreprocessSpec(64));
  const at::Tensor images = Images(2, 64, 18);
  const BackboneFeatures a = RunForward(full, images), b = RunForward(some, images);
  ASSERT_EQ(b.layer_maps.size(), 2u);
  EXPECT_TRUE(b.layer_maps[0].equal(a.layer_maps[1]));
  EXPECT_TRUE(b.layer_maps[1].equal(a.layer_maps[3]));
  EXPECT_TRUE(b.image_embedding.equal(a.image_embedding));
}

TEST(VisionTransformerTest, MissingWeightThrowsNamingIt) {
  const VitConfig cfg = TinyVitConfig();
  for (const std::string key :
       {"transformer.resblocks.2.mlp.c_fc.weight", "ln_post.bias", "class_embedding", "proj"}) {
    TensorMap weights = RandomVitWeights(cfg, 1);
    weights.erase(key);
    try {
      VisionTransformer vit("tiny", cfg, weights, ClipPreprocessSpec(64));
      ADD_FAILURE() << "no error for missing " << key;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what_without_backtrace()).find(key), std::string::npos)
          << e.what_without_backtrace();
    }
  }
}

TEST(VisionTransformerTest, MisShapedWeightThrowsNamingIt) {
  const VitConfig cfg = TinyVitConfig();
  const std::vector<std::pair<std::string, std::vector<int64_t>>> bad = {
      {"conv1.weight", {64, 3, 16, 16}},  {"transformer.resblocks.1.attn.in_proj_weight", {64, 64}},
      {"positional_embedding", {50, 64}}, {"proj", {32, 64}},
      {"ln_pre.bias", {64, 1}},
  };
  for (const auto& [key, shape] : bad) {
    TensorMap weights = RandomVitWeights(cfg, 1);
    weights[key] = at::zeros(shape, at::kFloat);
    try {
      VisionTransformer vit("tiny", cfg, weights, ClipPreprocessSpec(64));
      ADD_FAILURE() << "no error for mis-shaped " << key;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what_without_backtrace()).find(key), std::string::npos)
          << e.what_without_backtrace();
    }
  }
}

TEST(VisionTransformerTest, RejectsBadConfigsAndInputs) {
  VitConfig cfg = TinyVitConfig();
  cfg.feature_blocks = {5};
  EXPECT_THROW(MakeTiny(1, cfg), c10::Error);
  cfg = TinyVitConfig();
  cfg.feature_blocks = {0};
  EXPECT_THROW(MakeTiny(1, cfg), c10::Error);
  cfg = TinyVitConfig();
  cfg.heads = 5;  // 64 is not divisible by 5.
  EXPECT_THROW(MakeTiny(1, cfg), c10::Error);
  cfg = TinyVitConfig();
  cfg.input_size = 60;  // Not a multiple of the patch size.
  EXPECT_THROW(MakeTiny(1, cfg), c10::Error);

  VisionTransformer vit = MakeTiny(1);
  EXPECT_THROW(RunForward(vit, Images(1, 32, 1)), c10::Error);
  EXPECT_THROW(RunForward(vit, naive::Randn({1, 1, 64, 64}, 1)), c10::Error);
  EXPECT_THROW(RunForward(vit, naive::Randn({3, 64, 64}, 1)), c10::Error);
}

TEST(VisionTransformerTest, ClipPreprocessConstants) {
  const PreprocessSpec spec = ClipPreprocessSpec(336);
  EXPECT_EQ(spec.input_size, 336);
  EXPECT_EQ(spec.filter, ResizeFilter::kBicubicAntialias);
  EXPECT_FLOAT_EQ(spec.mean[0], 0.48145466f);
  EXPECT_FLOAT_EQ(spec.mean[1], 0.4578275f);
  EXPECT_FLOAT_EQ(spec.mean[2], 0.40821073f);
  EXPECT_FLOAT_EQ(spec.std[0], 0.26862954f);
  EXPECT_FLOAT_EQ(spec.std[1], 0.26130258f);
  EXPECT_FLOAT_EQ(spec.std[2], 0.27577711f);
}

}  // namespace
}  // namespace musc
