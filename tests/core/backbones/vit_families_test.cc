// The three ViT families (OpenAI CLIP, DINO, DINOv2) and their checkpoint namings:
//  - every naming round-trips bit for bit, in memory and through a real safetensors file;
//  - DINO/DINOv2 forward passes against an independent float64 computation written here (exact
//    GELU, LayerScale, features through the final norm, unnormalised class-token embedding);
//  - the position-embedding resize against an explicit bicubic computation;
//  - clear errors for missing, mis-shaped and foreign tensors.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/erf.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/backbones/checkpoint_io.h"
#include "core/backbones/vision_transformer.h"
#include "core/backbones/vit_weight_names.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::MessageHas;
using ::musc::testing::ScratchDir;

namespace fs = std::filesystem;

const VitFamily kFamilies[] = {VitFamily::kOpenAiClip, VitFamily::kDino, VitFamily::kDinoV2};

at::Tensor Randn(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen);
}

BackboneFeatures Forward(VisionTransformer& vit, const at::Tensor& images) {
  c10::InferenceMode guard;
  return vit.Forward(images);
}

VisionTransformer Make(const VitConfig& cfg, const TensorMap& weights) {
  return VisionTransformer(std::string("tiny-") + VitFamilyName(cfg.family), cfg, weights,
                           VitPreprocessSpec(cfg));
}

void ExpectBitIdentical(const BackboneFeatures& a, const BackboneFeatures& b,
                        const std::string& what) {
  ASSERT_EQ(a.layer_maps.size(), b.layer_maps.size()) << what;
  for (size_t l = 0; l < a.layer_maps.size(); ++l) {
    EXPECT_TRUE(at::equal(a.layer_maps[l], b.layer_maps[l])) << what << ", layer " << l;
  }
  EXPECT_TRUE(at::equal(a.image_embedding, b.image_embedding)) << what;
}

std::set<std::string> NamesOf(const TensorMap& m) {
  std::set<std::string> names;
  for (const auto& entry : m) names.insert(entry.first);
  return names;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Round trips through every naming.

TEST(VitFamiliesTest, EveryNamingRoundTripsBitForBitInMemoryAndThroughSafetensors) {
  ScratchDir dir;
  for (VitFamily family : kFamilies) {
    VitConfig cfg = TinyVitConfig(family);
    cfg.input_size = 48;  // Exercises the position-embedding resize too (grid 6 from 8).
    const TensorMap weights = RandomVitWeights(cfg, 100 + static_cast<uint64_t>(family));
    VisionTransformer reference = Make(cfg, weights);
    const at::Tensor images = Randn({2, 3, 48, 48}, 7);
    const BackboneFeatures expected = Forward(reference, images);

    for (VitWeightNaming naming : NamingsOf(family)) {
      const std::string what =
          absl::StrCat(VitFamilyName(family), " via ", VitWeightNamingName(naming));
      absl::StatusOr<TensorMap> external = FromCanonicalVitWeights(weights, cfg, naming);
      ASSERT_TRUE(external.ok()) << what << ": " << external.status();
      // The names are exactly the real checkpoints' list for this config.
      std::set<std::string> listed;
      for (const auto& [name, shape] : CheckpointVitTensors(cfg, naming)) {
        EXPECT_TRUE(listed.insert(name).second) << what << ": duplicate " << name;
        ASSERT_TRUE(external->count(name)) << what << ": " << name;
        EXPECT_EQ(external->at(name).sizes(), at::IntArrayRef(shape)) << what << ": " << name;
      }
      EXPECT_EQ(listed, NamesOf(*external)) << what;

      // In memory, naming given.
      absl::StatusOr<CanonicalVitWeights> back = ToCanonicalVitWeights(*external, cfg, naming);
      ASSERT_TRUE(back.ok()) << what << ": " << back.status();
      ASSERT_EQ(NamesOf(back->weights), NamesOf(weights)) << what;
      for (const auto& [name, value] : weights) {
        EXPECT_TRUE(at::equal(back->weights.at(name), value)) << what << ": " << name;
      }
      VisionTransformer in_memory = Make(cfg, back->weights);
      ExpectBitIdentical(Forward(in_memory, images), expected, what + " (in memory)");

      // Through a file, with a text tower / head around it and the naming detected.
      TensorMap file_tensors = *external;
      file_tensors["text_projection"] = Randn({4, 3}, 1);
      file_tensors["logit_scale"] = at::ones({});
      file_tensors["head.weight"] = Randn({5, cfg.width}, 2);
      const std::string path = dir.Path(absl::StrCat(VitWeightNamingName(naming), ".safetensors"));
      ASSERT_TRUE(WriteSafetensors(path, file_tensors).ok()) << what;
      absl::StatusOr<TensorMap> read = ReadCheckpoint(path);
      ASSERT_TRUE(read.ok()) << what << ": " << read.status();
      absl::StatusOr<DetectedVitNaming> detected = DetectVitWeightNaming(*read, family);
      ASSERT_TRUE(detected.ok()) << what << ": " << detected.status();
      EXPECT_EQ(detected->naming, naming) << what;
      EXPECT_EQ(detected->prefix, "") << what;
      absl::StatusOr<CanonicalVitWeights> from_file = CanonicalizeVitCheckpoint(*read, cfg);
      ASSERT_TRUE(from_file.ok()) << what << ": " << from_file.status();
      std::vector<std::string> expected_unused = {"head.weight", "logit_scale", "text_projection"};
      if (naming == VitWeightNaming::kDinoV2) expected_unused.push_back("mask_token");
      if (naming == VitWeightNaming::kHfDinoV2) expected_unused.push_back("embeddings.mask_token");
      std::sort(expected_unused.begin(), expected_unused.end());
      EXPECT_EQ(from_file->unused, expected_unused) << what;
      VisionTransformer loaded = Make(cfg, from_file->weights);
      ExpectBitIdentical(Forward(loaded, images), expected, what + " (safetensors)");
    }
  }
}

TEST(VitFamiliesTest, PrefixedStateDictsAreDetectedAndStripped) {
  const VitConfig cfg = TinyVitConfig(VitFamily::kDinoV2);
  const TensorMap weights = RandomVitWeights(cfg, 5);
  for (VitWeightNaming naming : NamingsOf(cfg.family)) {
    const TensorMap external = *FromCanonicalVitWeights(weights, cfg, naming);
    TensorMap prefixed;
    for (const auto& [name, value] : external) {
      prefixed["module.dinov2." + name] = value;
    }
    absl::StatusOr<DetectedVitNaming> detected = DetectVitWeightNaming(prefixed, cfg.family);
    ASSERT_TRUE(detected.ok()) << detected.status();
    EXPECT_EQ(detected->naming, naming);
    EXPECT_EQ(detected->prefix, "module.dinov2.");
    absl::StatusOr<CanonicalVitWeights> back = CanonicalizeVitCheckpoint(prefixed, cfg);
    ASSERT_TRUE(back.ok()) << back.status();
    for (const auto& [name, value] : weights) EXPECT_TRUE(at::equal(back->weights.at(name), value));
  }
}

TEST(VitFamiliesTest, HuggingFaceClipStoresTheProjectionTransposedAndQkvSplit) {
  const VitConfig cfg = TinyVitConfig(VitFamily::kOpenAiClip);
  const TensorMap w = RandomVitWeights(cfg, 9);
  const TensorMap hf = *FromCanonicalVitWeights(w, cfg, VitWeightNaming::kHfClip);
  EXPECT_TRUE(at::equal(hf.at("visual_projection.weight"), w.at("proj").t()));
  const at::Tensor in_proj = w.at("transformer.resblocks.2.attn.in_proj_weight");
  const std::string layer = "vision_model.encoder.layers.2.self_attn.";
  EXPECT_TRUE(at::equal(hf.at(layer + "q_proj.weight"), in_proj.narrow(0, 0, 64)));
  EXPECT_TRUE(at::equal(hf.at(layer + "k_proj.weight"), in_proj.narrow(0, 64, 64)));
  EXPECT_TRUE(at::equal(hf.at(layer + "v_proj.weight"), in_proj.narrow(0, 128, 64)));
  EXPECT_TRUE(at::equal(hf.at("vision_model.pre_layrnorm.bias"), w.at("ln_pre.bias")));
  EXPECT_TRUE(at::equal(hf.at("vision_model.embeddings.position_embedding.weight"),
                        w.at("positional_embedding")));

  const VitConfig d2 = TinyVitConfig(VitFamily::kDinoV2);
  const TensorMap v = RandomVitWeights(d2, 9);
  const TensorMap hfd = *FromCanonicalVitWeights(v, d2, VitWeightNaming::kHfDinoV2);
  EXPECT_TRUE(
      at::equal(hfd.at("encoder.layer.1.layer_scale1.lambda1"), v.at("blocks.1.ls1.gamma")));
  EXPECT_TRUE(at::equal(hfd.at("encoder.layer.1.attention.attention.value.bias"),
                        v.at("blocks.1.attn.qkv.bias").narrow(0, 128, 64)));
  EXPECT_TRUE(at::equal(hfd.at("layernorm.weight"), v.at("norm.weight")));
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(VitFamiliesTest, MissingAndMisShapedTensorsAreNamed) {
  const VitConfig cfg = TinyVitConfig(VitFamily::kOpenAiClip);
  TensorMap hf = *FromCanonicalVitWeights(RandomVitWeights(cfg, 1), cfg, VitWeightNaming::kHfClip);
  hf.erase("vision_model.encoder.layers.3.self_attn.k_proj.bias");
  hf.erase("vision_model.post_layernorm.weight");
  absl::StatusOr<CanonicalVitWeights> r = CanonicalizeVitCheckpoint(hf, cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(r.status().message());
  EXPECT_TRUE(Contains(message, "lacks 2 tensor(s)")) << message;
  EXPECT_TRUE(Contains(message, "vision_model.encoder.layers.3.self_attn.k_proj.bias")) << message;
  EXPECT_TRUE(Contains(message, "vision_model.post_layernorm.weight")) << message;

  TensorMap openai =
      *FromCanonicalVitWeights(RandomVitWeights(cfg, 1), cfg, VitWeightNaming::kOpenAiClip);
  openai["visual.positional_embedding"] = at::zeros({50, 64});
  r = CanonicalizeVitCheckpoint(openai, cfg);
  ASSERT_FALSE(r.ok());
  const std::string shape_message(r.status().message());
  EXPECT_TRUE(Contains(shape_message,
                       "'visual.positional_embedding' has shape [50, 64], "
                       "expected [65, 64]"))
      << shape_message;
}

TEST(VitFamiliesTest, DinoV1CheckpointLoadedAsDinoV2SaysSo) {
  const VitConfig v1 = TinyVitConfig(VitFamily::kDino);
  const TensorMap file = RandomVitWeights(v1, 3);  // DINO's naming is the canonical one.
  const VitConfig v2 = TinyVitConfig(VitFamily::kDinoV2);
  absl::StatusOr<CanonicalVitWeights> r = CanonicalizeVitCheckpoint(file, v2);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(std::string(r.status().message()), "is this a DINO (v1) checkpoint?"))
      << r.status();
  // The other way round every tensor is there: DINOv2's extras are merely unused.
  absl::StatusOr<CanonicalVitWeights> ok = CanonicalizeVitCheckpoint(
      *FromCanonicalVitWeights(RandomVitWeights(v2, 3), v2, VitWeightNaming::kDinoV2), v1);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(std::count(ok->unused.begin(), ok->unused.end(), "blocks.0.ls1.gamma"));
}

TEST(VitFamiliesTest, ForeignOrAmbiguousCheckpointsAreRefused) {
  const VitConfig clip = TinyVitConfig(VitFamily::kOpenAiClip);
  const TensorMap dino = RandomVitWeights(TinyVitConfig(VitFamily::kDino), 4);
  absl::StatusOr<DetectedVitNaming> d = DetectVitWeightNaming(dino, VitFamily::kOpenAiClip);
  ASSERT_FALSE(d.ok());
  const std::string message(d.status().message());
  EXPECT_TRUE(Contains(message, "no clip vision tower")) << message;
  EXPECT_TRUE(Contains(message, "visual.conv1.weight")) << message;
  EXPECT_TRUE(Contains(message, "vision_model.embeddings.patch_embedding.weight")) << message;

  TensorMap two =
      *FromCanonicalVitWeights(RandomVitWeights(clip, 4), clip, VitWeightNaming::kOpenAiClip);
  two["ema.visual.conv1.weight"] = two.at("visual.conv1.weight");
  d = DetectVitWeightNaming(two, VitFamily::kOpenAiClip);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(std::string(d.status().message()), "ambiguous")) << d.status();

  EXPECT_FALSE(ToCanonicalVitWeights(dino, clip, VitWeightNaming::kDino).ok());
}

// ---------------------------------------------------------------------------------------------
// Position-embedding resize against an explicit bicubic computation.

double Cubic(double t) {  // Keys' cubic convolution kernel with a = -0.75 (PyTorch's).
  const double a = -0.75, x = std::abs(t);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// pos: (1 + m²)×W; output pixel i reads source coordinate (i + 0.5)·ratio − 0.5, neighbours
// clamped into [0, m−1], align_corners = false. Float64.
at::Tensor ExplicitResize(const at::Tensor& pos, int64_t m, int64_t g, double ratio) {
  const at::Tensor src = pos.to(at::kDouble);
  const int64_t w = src.size(1);
  at::Tensor out = at::zeros({1 + g * g, w}, at::kDouble);
  out[0] = src[0];
  const auto s = src.accessor<double, 2>();
  auto o = out.accessor<double, 2>();
  for (int64_t y = 0; y < g; ++y) {
    const double sy = (y + 0.5) * ratio - 0.5;
    const int64_t y0 = static_cast<int64_t>(std::floor(sy));
    for (int64_t x = 0; x < g; ++x) {
      const double sx = (x + 0.5) * ratio - 0.5;
      const int64_t x0 = static_cast<int64_t>(std::floor(sx));
      for (int64_t c = 0; c < w; ++c) {
        double v = 0;
        for (int64_t dy = -1; dy <= 2; ++dy) {
          const int64_t yy = std::clamp<int64_t>(y0 + dy, 0, m - 1);
          for (int64_t dx = -1; dx <= 2; ++dx) {
            const int64_t xx = std::clamp<int64_t>(x0 + dx, 0, m - 1);
            v += Cubic(sy - static_cast<double>(y0 + dy)) *
                 Cubic(sx - static_cast<double>(x0 + dx)) * s[1 + yy * m + xx][c];
          }
        }
        o[1 + y * g + x][c] = v;
      }
    }
  }
  return out;
}

TEST(VitFamiliesTest, PositionEmbeddingResizeMatchesExplicitBicubic) {
  const std::vector<std::pair<int64_t, int64_t>> cases = {{24, 37}, {37, 16}, {8, 6},
                                                          {14, 28}, {7, 16},  {37, 74}};
  for (const auto& [m, g] : cases) {
    const at::Tensor pos = Randn({1 + m * m, 5}, static_cast<uint64_t>(m * 100 + g));
    for (double offset : {0.0, 0.1}) {
      const at::Tensor got = ResizePositionEmbedding(pos, m, g, offset);
      const double ratio = offset > 0 ? m / (g + offset) : static_cast<double>(m) / g;
      const at::Tensor want = ExplicitResize(pos, m, g, ratio);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_TRUE(at::equal(got[0], pos[0])) << "class token must be kept";
      const double err = (got.to(at::kDouble) - want).abs().max().item<double>();
      EXPECT_LT(err, 1e-5) << m << "→" << g << " offset " << offset;
      if (offset > 0) {
        // The offset moves the sample points: a different, and the reference's, result.
        const at::Tensor plain = ExplicitResize(pos, m, g, static_cast<double>(m) / g);
        EXPECT_GT((got.to(at::kDouble) - plain).abs().max().item<double>(), 1e-3) << m << "→" << g;
      }
    }
  }
  const at::Tensor same = Randn({1 + 49, 3}, 1);
  EXPECT_TRUE(ResizePositionEmbedding(same, 7, 7, 0.1).is_same(same));
  EXPECT_THROW(ResizePositionEmbedding(same, 6, 7, 0), c10::Error);
}

TEST(VitFamiliesTest, FamilyTraits) {
  // CLIP resizes by output size (open_clip); DINO and DINOv2 by scale factor (G + 0.1)/M, as their
  // interpolate_pos_encoding does. The DINO forward test below checks the latter end to end.
  EXPECT_EQ(TraitsOf(VitFamily::kOpenAiClip).pos_embed_scale_offset, 0.0);
  EXPECT_EQ(TraitsOf(VitFamily::kDino).pos_embed_scale_offset, 0.1);
  EXPECT_EQ(TraitsOf(VitFamily::kDinoV2).pos_embed_scale_offset, 0.1);
  EXPECT_EQ(TraitsOf(VitFamily::kOpenAiClip).layer_norm_eps, 1e-5);
  EXPECT_EQ(TraitsOf(VitFamily::kDino).layer_norm_eps, 1e-6);
  EXPECT_TRUE(TraitsOf(VitFamily::kOpenAiClip).quick_gelu);
  EXPECT_FALSE(TraitsOf(VitFamily::kDinoV2).quick_gelu);
  EXPECT_TRUE(TraitsOf(VitFamily::kDinoV2).layer_scale);
  EXPECT_FALSE(TraitsOf(VitFamily::kDino).layer_scale);
}

// ---------------------------------------------------------------------------------------------
// Independent float64 forward pass for DINO and DINOv2.

at::Tensor D(const TensorMap& w, const std::string& key) { return w.at(key).to(at::kDouble); }

at::Tensor NaiveLayerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          double eps) {
  const at::Tensor centred = x - x.mean({-1}, /*keepdim=*/true);
  const at::Tensor var = (centred * centred).mean({-1}, /*keepdim=*/true);
  return centred / at::sqrt(var + eps) * weight + bias;
}

at::Tensor NaiveSoftmax(const at::Tensor& x) {
  const at::Tensor e = at::exp(x - at::amax(x, {-1}, /*keepdim=*/true));
  return e / e.sum({-1}, /*keepdim=*/true);
}

struct Naive {
  std::vector<at::Tensor> layer_maps;  // N×W×G×G
  at::Tensor embedding;                // N×W
};

Naive NaiveDinoForward(const TensorMap& w, const VitConfig& cfg, const at::Tensor& images) {
  const bool v2 = cfg.family == VitFamily::kDinoV2;
  const double eps = 1e-6;
  const int64_t n = images.size(0), p = cfg.patch_size, g = cfg.input_size / p;
  const int64_t width = cfg.width, heads = cfg.heads, d = width / heads, m = cfg.pretrained_grid;
  // Patches as rows of (channel, dy, dx), the flattening order of the conv weight.
  const at::Tensor patches = images.to(at::kDouble)
                                 .reshape({n, 3, g, p, g, p})
                                 .permute({0, 2, 4, 1, 3, 5})
                                 .reshape({n, g * g, 3 * p * p});
  const at::Tensor tokens =
      at::matmul(patches, D(w, "patch_embed.proj.weight").view({width, -1}).t()) +
      D(w, "patch_embed.proj.bias");
  const at::Tensor cls = D(w, "cls_token").view({1, 1, width}).expand({n, 1, width});
  const at::Tensor pos =
      g == m ? D(w, "pos_embed")[0] : ExplicitResize(D(w, "pos_embed")[0], m, g, m / (g + 0.1));
  at::Tensor x = at::cat({cls, tokens}, 1) + pos;
  Naive out;
  auto final_norm = [&](const at::Tensor& t) {
    return NaiveLayerNorm(t, D(w, "norm.weight"), D(w, "norm.bias"), eps);
  };
  for (int64_t b = 0; b < cfg.depth; ++b) {
    auto key = [&](const std::string& leaf) { return "blocks." + std::to_string(b) + "." + leaf; };
    const at::Tensor y = NaiveLayerNorm(x, D(w, key("norm1.weight")), D(w, key("norm1.bias")), eps);
    const at::Tensor qkv_w = D(w, key("attn.qkv.weight")), qkv_b = D(w, key("attn.qkv.bias"));
    std::vector<at::Tensor> head_out;
    for (int64_t h = 0; h < heads; ++h) {
      auto project = [&](int64_t which) {
        const int64_t row = which * width + h * d;
        return at::matmul(y, qkv_w.narrow(0, row, d).t()) + qkv_b.narrow(0, row, d);
      };
      // DINO's order: (q·kᵀ)·scale.
      const at::Tensor logits =
          at::matmul(project(0), project(1).transpose(-2, -1)) / std::sqrt(double(d));
      head_out.push_back(at::matmul(NaiveSoftmax(logits), project(2)));
    }
    at::Tensor a = at::matmul(at::cat(head_out, -1), D(w, key("attn.proj.weight")).t()) +
                   D(w, key("attn.proj.bias"));
    if (v2) a = a * D(w, key("ls1.gamma"));
    x = x + a;
    at::Tensor h = NaiveLayerNorm(x, D(w, key("norm2.weight")), D(w, key("norm2.bias")), eps);
    h = at::matmul(h, D(w, key("mlp.fc1.weight")).t()) + D(w, key("mlp.fc1.bias"));
    h = 0.5 * h * (1.0 + at::erf(h / std::sqrt(2.0)));  // Exact GELU.
    h = at::matmul(h, D(w, key("mlp.fc2.weight")).t()) + D(w, key("mlp.fc2.bias"));
    if (v2) h = h * D(w, key("ls2.gamma"));
    x = x + h;
    if (std::count(cfg.feature_blocks.begin(), cfg.feature_blocks.end(), b + 1)) {
      out.layer_maps.push_back(final_norm(x)
                                   .narrow(1, 1, g * g)
                                   .reshape({n, g, g, width})
                                   .permute({0, 3, 1, 2})
                                   .contiguous());
    }
  }
  out.embedding = final_norm(x).select(1, 0);
  return out;
}

double WorstScaledError(const at::Tensor& got, const at::Tensor& expected) {
  const at::Tensor e = expected.to(at::kDouble);
  return ((got.to(at::kDouble) - e).abs() / e.abs().clamp_min(1.0)).max().item<double>();
}

TEST(VitFamiliesTest, DinoAndDinoV2MatchIndependentFloat64Forward) {
  for (VitFamily family : {VitFamily::kDino, VitFamily::kDinoV2}) {
    for (int64_t size : {64, 48}) {
      VitConfig cfg = TinyVitConfig(family);
      cfg.input_size = size;
      cfg.feature_blocks = {1, 3, 4};
      const TensorMap w = RandomVitWeights(cfg, 21);
      VisionTransformer vit = Make(cfg, w);
      const at::Tensor images = Randn({2, 3, size, size}, 22);
      const BackboneFeatures got = Forward(vit, images);
      const Naive want = NaiveDinoForward(w, cfg, images);
      const std::string what = absl::StrCat(VitFamilyName(family), " at ", size);
      ASSERT_EQ(got.layer_maps.size(), 3u) << what;
      for (size_t l = 0; l < 3; ++l) {
        EXPECT_EQ(got.layer_maps[l].sizes(), (at::IntArrayRef{2, cfg.width, size / 8, size / 8}));
        EXPECT_LT(WorstScaledError(got.layer_maps[l], want.layer_maps[l]), 1e-4)
            << what << ", layer " << l;
      }
      // The image embedding is the normed class token as it is: not L2-normalised.
      EXPECT_EQ(got.image_embedding.sizes(), (at::IntArrayRef{2, cfg.width}));
      EXPECT_LT(WorstScaledError(got.image_embedding, want.embedding), 1e-4) << what;
      const double norm =
          at::linalg_vector_norm(got.image_embedding[0], 2, {}, false).item<double>();
      EXPECT_GT(std::abs(norm - 1.0), 0.5) << what;
    }
  }
}

TEST(VitFamiliesTest, LayerScaleAndFinalNormAreApplied) {
  const VitConfig cfg = TinyVitConfig(VitFamily::kDinoV2);
  const TensorMap w = RandomVitWeights(cfg, 31);
  const at::Tensor images = Randn({1, 3, 64, 64}, 32);
  VisionTransformer with = Make(cfg, w);
  const BackboneFeatures a = Forward(with, images);
  // LayerScale at 1 is DINO v1's block: the outputs must move.
  TensorMap unit = w;
  for (auto& [name, value] : unit) {
    if (Contains(name, "gamma")) value = at::ones_like(value);
  }
  VisionTransformer without = Make(cfg, unit);
  EXPECT_GT((Forward(without, images).layer_maps[3] - a.layer_maps[3]).abs().max().item<double>(),
            1e-2);
  // Through the final norm: every token's features have the norm's statistics, i.e. with the
  // norm's affine undone each token has mean 0 and variance 1.
  const at::Tensor tokens = a.layer_maps[1].permute({0, 2, 3, 1}).reshape({-1, cfg.width});
  const at::Tensor standard = (tokens - w.at("norm.bias")) / w.at("norm.weight");
  EXPECT_LT(standard.mean({-1}).abs().max().item<double>(), 1e-4);
  EXPECT_LT((standard.var({-1}, /*unbiased=*/false) - 1).abs().max().item<double>(), 1e-3);
  // CLIP's layers are taken before ln_post: no such normalisation.
  const VitConfig clip_cfg = TinyVitConfig(VitFamily::kOpenAiClip);
  VisionTransformer clip = Make(clip_cfg, RandomVitWeights(clip_cfg, 31));
  const at::Tensor clip_tokens =
      Forward(clip, images).layer_maps[1].permute({0, 2, 3, 1}).reshape({-1, clip_cfg.width});
  EXPECT_GT((clip_tokens.var({-1}, false) - 1).abs().max().item<double>(), 1e-2);
}

TEST(VitFamiliesTest, RandomWeightsFollowEachFamilysLayout) {
  for (VitFamily family : kFamilies) {
    const VitConfig cfg = TinyVitConfig(family);
    const auto expected = ExpectedVitParameters(cfg);
    const TensorMap w = RandomVitWeights(cfg, 3);
    EXPECT_EQ(w.size(), expected.size());
    const size_t per_block = family == VitFamily::kDinoV2 ? 14 : 12;
    const size_t outside = family == VitFamily::kOpenAiClip ? 8 : 6;
    EXPECT_EQ(expected.size(), outside + per_block * static_cast<size_t>(cfg.depth))
        << VitFamilyName(family);
    for (const auto& [name, shape] : expected) {
      ASSERT_TRUE(w.count(name)) << name;
      EXPECT_EQ(w.at(name).sizes(), at::IntArrayRef(shape)) << name;
    }
  }
  EXPECT_EQ(ParseVitFamily("dinov2"), VitFamily::kDinoV2);
  EXPECT_EQ(ParseVitFamily("clip"), VitFamily::kOpenAiClip);
  EXPECT_FALSE(ParseVitFamily("dino2").has_value());
  // A DINO-family model's image embedding is its class token.
  VitConfig bad = TinyVitConfig(VitFamily::kDino);
  bad.embed_dim = 32;
  EXPECT_THROW(Make(bad, RandomVitWeights(TinyVitConfig(VitFamily::kDino), 1)), c10::Error);
}

TEST(VitFamiliesTest, PreprocessingPerFamily) {
  const PreprocessSpec clip = VitPreprocessSpec(TinyVitConfig(VitFamily::kOpenAiClip));
  EXPECT_EQ(clip.filter, ResizeFilter::kBicubicAntialias);
  EXPECT_FLOAT_EQ(clip.mean[0], 0.48145466f);
  for (VitFamily family : {VitFamily::kDino, VitFamily::kDinoV2}) {
    VitConfig cfg = TinyVitConfig(family);
    cfg.input_size = 224;
    const PreprocessSpec spec = VitPreprocessSpec(cfg);
    EXPECT_EQ(spec.input_size, 224);
    EXPECT_EQ(spec.filter, ResizeFilter::kBilinear);
    EXPECT_FLOAT_EQ(spec.mean[0], 0.485f);
    EXPECT_FLOAT_EQ(spec.mean[1], 0.456f);
    EXPECT_FLOAT_EQ(spec.mean[2], 0.406f);
    EXPECT_FLOAT_EQ(spec.std[0], 0.229f);
    EXPECT_FLOAT_EQ(spec.std[1], 0.224f);
    EXPECT_FLOAT_EQ(spec.std[2], 0.225f);
  }
}

}  // namespace
}  // namespace musc
