// The model registry: every entry is a valid configuration with the paper's default layers; the
// C++ table and core/models.tsv agree field by field; the full-size architectures hold exactly the
// tensors of the real checkpoints (tests/fixtures/*.tensors.txt) and open_clip's published
// parameter counts; CreateBackbone loads a real-size model from a file bit for bit and explains
// what to fetch when weights are missing.
#include "core/backbones/model_registry.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/backbones/backbone_registry.h"
#include "core/backbones/checkpoint_io.h"
#include "core/backbones/vision_transformer.h"
#include "core/backbones/vit_weight_names.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::MessageHas;
using ::musc::testing::ScratchDir;

namespace fs = std::filesystem;

// tests/core/backbones/model_registry_test.cc → the repository root.
fs::path RepoRoot() {
  return fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

using TensorList = std::vector<std::pair<std::string, std::vector<int64_t>>>;

std::map<std::string, std::vector<int64_t>> AsMap(const TensorList& list) {
  std::map<std::string, std::vector<int64_t>> m;
  for (const auto& [name, shape] : list) {
    EXPECT_TRUE(m.emplace(name, shape).second) << "duplicate " << name;
  }
  return m;
}

std::vector<int64_t> ParseInts(const std::string& s) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(s, ','))
    out.push_back(std::stoll(std::string(part)));
  return out;
}

TensorList ReadFixture(const std::string& name) {
  const fs::path path = RepoRoot() / "tests" / "fixtures" / (name + ".tensors.txt");
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  TensorList list;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.find(' ');
    list.emplace_back(line.substr(0, space), ParseInts(line.substr(space + 1)));
  }
  return list;
}

std::vector<std::map<std::string, std::string>> ReadModelsTsv() {
  std::ifstream in(RepoRoot() / "core" / "models.tsv");
  EXPECT_TRUE(in.good());
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    if (header.empty()) {
      header = fields;
      continue;
    }
    EXPECT_EQ(fields.size(), header.size()) << line;
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size() && i < fields.size(); ++i) {
      row[header[i]] = fields[i] == "-" ? "" : fields[i];
    }
    rows.push_back(row);
  }
  return rows;
}

std::string Join(const std::vector<int64_t>& v) { return absl::StrJoin(v, ","); }

VitWeightNaming NativeNaming(VitFamily family) { return NamingsOf(family).front(); }

TEST(ModelRegistryTest, EveryEntryIsAValidConfigurationWithThePapersLayers) {
  ASSERT_FALSE(ModelRegistry().empty());
  EXPECT_NE(FindModel(DefaultModelName()), nullptr);
  EXPECT_EQ(FindModel("no-such-model"), nullptr);
  for (const ModelSpec& spec : ModelRegistry()) {
    EXPECT_EQ(FindModel(spec.name), &spec);
    EXPECT_FALSE(spec.default_layers.empty()) << spec.name;
    const PreprocessSpec pre = PreprocessOf(spec, spec.default_input_size);
    EXPECT_EQ(pre.input_size, spec.default_input_size);
    if (spec.kind != BackboneKind::kVit) continue;
    absl::StatusOr<VitConfig> cfg = ResolveVitConfig(spec, BackboneOptions{});
    ASSERT_TRUE(cfg.ok()) << spec.name << ": " << cfg.status();
    EXPECT_EQ(cfg->input_size, spec.default_input_size) << spec.name;
    EXPECT_EQ(cfg->feature_blocks, spec.default_layers) << spec.name;
    EXPECT_EQ(cfg->input_size % cfg->patch_size, 0) << spec.name;
    EXPECT_EQ(cfg->width % cfg->heads, 0) << spec.name;
    EXPECT_EQ(cfg->mlp_width, 4 * cfg->width) << spec.name;
    if (!spec.random_weights) {
      EXPECT_EQ(cfg->width / cfg->heads, 64) << spec.name;  // All the real ones: 64-wide heads.
      const std::vector<int64_t> paper = cfg->depth == 24 ? std::vector<int64_t>{6, 12, 18, 24}
                                                          : std::vector<int64_t>{3, 6, 9, 12};
      EXPECT_EQ(spec.default_layers, paper) << spec.name;
      EXPECT_FALSE(spec.url.empty()) << spec.name;
      EXPECT_FALSE(spec.weights_file.empty()) << spec.name;
    }
    if (cfg->family != VitFamily::kOpenAiClip) {
      EXPECT_EQ(cfg->embed_dim, cfg->width) << spec.name;
    }
    EXPECT_EQ(spec.preprocess, cfg->family == VitFamily::kOpenAiClip ? PreprocessKind::kClip
                                                                     : PreprocessKind::kImageNet);
  }
  const ModelSpec& paper = *FindModel(DefaultModelName());
  EXPECT_EQ(paper.default_input_size, 518);
  EXPECT_EQ(paper.vit.pretrained_grid, 24);
}

TEST(ModelRegistryTest, OptionsOverrideDefaultsAndAreValidated) {
  const ModelSpec& spec = *FindModel("dinov2-vit-b-14");
  BackboneOptions options;
  options.input_size = 224;
  options.layers = {12, 2};
  absl::StatusOr<VitConfig> cfg = ResolveVitConfig(spec, options);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->input_size, 224);
  EXPECT_EQ(cfg->feature_blocks, (std::vector<int64_t>{12, 2}));
  options.input_size = 225;
  EXPECT_EQ(ResolveVitConfig(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.input_size = 0;
  options.layers = {13};
  absl::Status bad = ResolveVitConfig(spec, options).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("layer 13 is outside 1..12"), absl::string_view::npos) << bad;
}

TEST(ModelRegistryTest, TsvMatchesTheCppTable) {
  const auto rows = ReadModelsTsv();
  ASSERT_EQ(rows.size(), ModelRegistry().size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const ModelSpec& spec = ModelRegistry()[i];
    const std::string& name = spec.name;
    EXPECT_EQ(row.at("name"), name);
    EXPECT_EQ(row.at("kind"), spec.random_weights ? "vit-random" : BackboneKindName(spec.kind))
        << name;
    EXPECT_EQ(row.at("input_size"), std::to_string(spec.default_input_size)) << name;
    EXPECT_EQ(row.at("layers"), Join(spec.default_layers)) << name;
    EXPECT_EQ(row.at("preprocess"), PreprocessKindName(spec.preprocess)) << name;
    EXPECT_EQ(row.at("weights_file"), spec.weights_file) << name;
    EXPECT_EQ(row.at("download_file"), spec.download_file) << name;
    EXPECT_EQ(row.at("url"), spec.url) << name;
    EXPECT_EQ(row.at("sha256"), spec.sha256) << name;
    if (spec.kind != BackboneKind::kVit) {
      for (const char* column :
           {"family", "patch", "width", "depth", "heads", "mlp_width", "grid", "embed_dim"}) {
        EXPECT_EQ(row.at(column), "") << name << " " << column;
      }
      continue;
    }
    const VitConfig& v = spec.vit;
    EXPECT_EQ(row.at("family"), VitFamilyName(v.family)) << name;
    EXPECT_EQ(row.at("patch"), std::to_string(v.patch_size)) << name;
    EXPECT_EQ(row.at("width"), std::to_string(v.width)) << name;
    EXPECT_EQ(row.at("depth"), std::to_string(v.depth)) << name;
    EXPECT_EQ(row.at("heads"), std::to_string(v.heads)) << name;
    EXPECT_EQ(row.at("mlp_width"), std::to_string(v.mlp_width)) << name;
    EXPECT_EQ(row.at("grid"), std::to_string(v.pretrained_grid)) << name;
    EXPECT_EQ(row.at("embed_dim"), std::to_string(v.embed_dim)) << name;
  }
}

TEST(ModelRegistryTest, DownloadsAndChecksums) {
  for (const ModelSpec& spec : ModelRegistry()) {
    if (spec.random_weights) {
      EXPECT_TRUE(spec.url.empty() && spec.sha256.empty()) << spec.name;
      continue;
    }
    EXPECT_EQ(spec.url.rfind("https://", 0), 0u) << spec.name;
    if (spec.kind == BackboneKind::kVit && spec.vit.family == VitFamily::kOpenAiClip) {
      // OpenAI's URL path is <sha256>/<file>; clip.py verifies the download against it.
      EXPECT_EQ(spec.sha256.size(), 64u) << spec.name;
      EXPECT_NE(spec.url.find("/" + spec.sha256 + "/" + spec.download_file), std::string::npos)
          << spec.name;
      EXPECT_EQ(spec.weights_file, spec.download_file) << spec.name;
    } else {
      // No official checksum is published for Meta's or ml5's files: none is invented.
      EXPECT_TRUE(spec.sha256.empty()) << spec.name;
      EXPECT_TRUE(spec.url.find("dl.fbaipublicfiles.com") != std::string::npos ||
                  spec.kind == BackboneKind::kDarknetTiny)
          << spec.name;
    }
  }
}

TEST(ModelRegistryTest, FullSizeArchitecturesHoldExactlyTheRealCheckpointsTensors) {
  for (const ModelSpec& spec : ModelRegistry()) {
    if (spec.kind != BackboneKind::kVit || spec.random_weights) continue;
    std::vector<std::pair<std::string, VitWeightNaming>> fixtures = {
        {spec.name, NativeNaming(spec.vit.family)}};
    if (spec.vit.family == VitFamily::kOpenAiClip) {
      fixtures.push_back({spec.name + ".hf", VitWeightNaming::kHfClip});
    }
    if (spec.vit.family == VitFamily::kDinoV2) {
      fixtures.push_back({spec.name + ".hf", VitWeightNaming::kHfDinoV2});
    }
    for (const auto& [fixture, naming] : fixtures) {
      const TensorList real = ReadFixture(fixture);
      ASSERT_FALSE(real.empty()) << fixture;
      EXPECT_EQ(AsMap(CheckpointVitTensors(spec.vit, naming)), AsMap(real)) << fixture;

      // Translating the real list yields exactly what the model needs. Zero-stride tensors of
      // the right sizes keep this cheap.
      TensorMap file;
      for (const auto& [name, shape] : real) file[name] = at::zeros({1}).expand(shape);
      absl::StatusOr<CanonicalVitWeights> canonical = CanonicalizeVitCheckpoint(file, spec.vit);
      ASSERT_TRUE(canonical.ok()) << fixture << ": " << canonical.status();
      EXPECT_EQ(canonical->weights.size(), ExpectedVitParameters(spec.vit).size()) << fixture;
      for (const auto& [name, shape] : ExpectedVitParameters(spec.vit)) {
        ASSERT_TRUE(canonical->weights.count(name)) << fixture << ": " << name;
        EXPECT_EQ(canonical->weights.at(name).sizes(), at::IntArrayRef(shape)) << name;
      }
      if (spec.vit.family == VitFamily::kDinoV2) {
        EXPECT_EQ(canonical->unused.size(), 1u) << fixture;  // mask_token.
      } else {
        EXPECT_TRUE(canonical->unused.empty()) << fixture;
      }
    }
  }
}

TEST(ModelRegistryTest, ClipVisionParameterCountsMatchOpenClipsProfile) {
  // mlfoundations/open_clip docs/model_profile.csv, column image_mparams (millions, 2 decimals).
  const std::map<std::string, double> published = {{"clip-vit-b-32", 87.85},
                                                   {"clip-vit-b-16", 86.19},
                                                   {"clip-vit-l-14", 303.97},
                                                   {"clip-vit-l-14-336", 304.29}};
  for (const auto& [name, mparams] : published) {
    int64_t count = 0;
    for (const auto& [tensor, shape] : ExpectedVitParameters(FindModel(name)->vit)) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      count += n;
    }
    EXPECT_NEAR(static_cast<double>(count) / 1e6, mparams, 0.005) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// CreateBackbone.

void ExpectSameFeatures(Backbone& a, Backbone& b, int64_t size, const std::string& what) {
  at::Generator gen = at::detail::createCPUGenerator(77);
  const at::Tensor images = at::randn({1, 3, size, size}, gen);
  c10::InferenceMode guard;
  const BackboneFeatures fa = a.Forward(images), fb = b.Forward(images);
  ASSERT_EQ(fa.layer_maps.size(), fb.layer_maps.size()) << what;
  for (size_t l = 0; l < fa.layer_maps.size(); ++l) {
    EXPECT_TRUE(at::equal(fa.layer_maps[l], fb.layer_maps[l])) << what << " layer " << l;
  }
  EXPECT_TRUE(at::equal(fa.image_embedding, fb.image_embedding)) << what;
}

TEST(ModelRegistryTest, CreateBackboneLoadsRealSizeModelsFromFilesBitForBit) {
  ScratchDir dir;
  struct Case {
    const char* model;
    VitWeightNaming naming;
    int64_t input_size;
    const char* file;
  };
  for (const Case& c :
       {Case{"clip-vit-b-32", VitWeightNaming::kOpenAiClip, 64, "open_clip_model.safetensors"},
        Case{"dinov2-vit-b-14", VitWeightNaming::kHfDinoV2, 112, "model.safetensors"}}) {
    const ModelSpec& spec = *FindModel(c.model);
    BackboneOptions options;
    options.model = c.model;
    options.input_size = c.input_size;
    const VitConfig cfg = *ResolveVitConfig(spec, options);
    const TensorMap weights = RandomVitWeights(cfg, 5);
    TensorMap file = *FromCanonicalVitWeights(weights, cfg, c.naming);
    file["text_projection"] = at::zeros({768, 512});  // A text tower the loader must skip.
    options.weights_path = dir.Path(c.file);
    ASSERT_TRUE(WriteSafetensors(options.weights_path, file).ok());
    file.clear();

    absl::StatusOr<std::unique_ptr<Backbone>> loaded = CreateBackbone(options);
    ASSERT_TRUE(loaded.ok()) << c.model << ": " << loaded.status();
    EXPECT_EQ((*loaded)->name(), c.model);
    EXPECT_EQ((*loaded)->preprocess_spec().input_size, c.input_size);
    EXPECT_EQ((*loaded)->preprocess_spec().filter, cfg.family == VitFamily::kOpenAiClip
                                                       ? ResizeFilter::kBicubicAntialias
                                                       : ResizeFilter::kBilinear);
    VisionTransformer in_memory(c.model, cfg, weights, VitPreprocessSpec(cfg));
    ExpectSameFeatures(**loaded, in_memory, c.input_size, c.model);
  }
}

TEST(ModelRegistryTest, CreateBackboneExplainsMissingWeights) {
  ScratchDir dir;
  BackboneOptions options;
  options.model = "clip-vit-l-14-336";
  absl::Status s = CreateBackbone(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("ViT-L-14-336px.pt"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("scripts/fetch-weights.sh clip-vit-l-14-336"), absl::string_view::npos)
      << s;

  options.weights_path = dir.Path("nothing-here.pt");
  s = CreateBackbone(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;

  options.weights_path = dir.path();  // An empty directory.
  s = CreateBackbone(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("holds no ViT-L-14-336px.pt"), absl::string_view::npos) << s;

  // DINO's official .pth next to no converted file: say what to do.
  options.model = "dino-vit-b-16";
  std::ofstream(dir.Path("dino_vitbase16_pretrain.pth")) << "PK";
  s = CreateBackbone(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("dino_vitbase16_pretrain.safetensors"), absl::string_view::npos) << s;

  // A checkpoint of another architecture: the mis-shaped tensor is named.
  options.model = "clip-vit-b-16";
  options.input_size = 64;
  const TensorMap other = {{"visual.conv1.weight", at::zeros({768, 3, 32, 32})}};  // ViT-B/32's.
  options.weights_path = dir.Path("ViT-B-32.safetensors");
  ASSERT_TRUE(WriteSafetensors(options.weights_path, other).ok());
  s = CreateBackbone(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("clip-vit-b-16: "), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("visual.conv1.weight"), absl::string_view::npos) << s;

  options.model = "no-such-model";
  s = CreateBackbone(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dinov2-vit-l-14"), absl::string_view::npos) << s;
}

TEST(ModelRegistryTest, RandomTinyModelStillWorks) {
  BackboneOptions options;
  options.model = "vit-tiny-random";
  options.seed = 3;
  absl::StatusOr<std::unique_ptr<Backbone>> a = CreateBackbone(options);
  ASSERT_TRUE(a.ok()) << a.status();
  VitConfig cfg = TinyVitConfig();
  VisionTransformer b("vit-tiny-random", cfg, RandomVitWeights(cfg, 3), ClipPreprocessSpec(64));
  ExpectSameFeatures(**a, b, 64, "vit-tiny-random");
  EXPECT_EQ(RegisteredModels().size(), ModelRegistry().size());
}

}  // namespace
}  // namespace musc
