// Checkpoint reading and writing: safetensors round trips (values, names, shapes, dtype
// conversion, layout), TorchScript archives shaped like OpenAI's CLIP files loaded into the ViT and
// compared bit for bit with the in-memory model, and clear errors for missing, truncated, garbage
// and unsupported files.
#include "core/backbones/checkpoint_io.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/backbones/vision_transformer.h"
#include "core/formats/safetensors_format.h"
#include "tests/core/backbones/torchscript_fixture.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::MessageHas;
using ::musc::testing::ScratchDir;

namespace fs = std::filesystem;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TensorMap StripPrefix(const TensorMap& tensors, const std::string& prefix) {
  TensorMap out;
  for (const auto& [name, value] : tensors) {
    if (name.rfind(prefix, 0) == 0) out[name.substr(prefix.size())] = value;
  }
  return out;
}

std::vector<std::string> Names(const TensorMap& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, value] : tensors) names.push_back(name);
  return names;
}

void ExpectSameFeatures(const BackboneFeatures& a, const BackboneFeatures& b) {
  ASSERT_EQ(a.layer_maps.size(), b.layer_maps.size());
  for (size_t i = 0; i < a.layer_maps.size(); ++i) {
    EXPECT_TRUE(at::equal(a.layer_maps[i], b.layer_maps[i])) << "layer " << i;
  }
  ASSERT_TRUE(a.image_embedding.defined());
  EXPECT_TRUE(at::equal(a.image_embedding, b.image_embedding));
}

TEST(CheckpointIoTest, SafetensorsRoundTripConvertsFloatsToFloat32) {
  ScratchDir dir;
  at::Generator gen = at::detail::createCPUGenerator(1);
  TensorMap tensors;
  tensors["a.f32"] = at::randn({3, 4}, gen);
  tensors["b.f16"] = at::randn({5}, gen).to(at::kHalf);
  tensors["c.bf16"] = at::randn({2, 3, 2}, gen).to(at::kBFloat16);
  tensors["d.f64"] = at::randn({2}, gen, at::kDouble);
  tensors["e.i64"] = at::arange(6, at::kLong).reshape({2, 3});
  tensors["f.bool"] = at::randn({7}, gen) > 0;
  tensors["g.scalar"] = at::randn({}, gen);
  tensors["h.empty"] = at::zeros({0, 3});
  tensors["i.transposed"] = at::randn({3, 5}, gen).t();
  tensors["j.u8"] = at::arange(3, at::kByte);  // 3 bytes: the next tensor must stay aligned.
  tensors["k.f16"] = at::randn({3}, gen).to(at::kHalf);
  const std::string path = dir.Path("round_trip.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());

  absl::StatusOr<TensorMap> read = ReadCheckpoint(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(Names(*read), Names(tensors));
  for (const auto& [name, original] : tensors) {
    const at::Tensor& value = read->at(name);
    SCOPED_TRACE(name);
    EXPECT_EQ(value.sizes(), original.sizes());
    EXPECT_TRUE(value.is_contiguous());
    EXPECT_FALSE(value.requires_grad());
    if (at::isFloatingType(original.scalar_type())) {
      EXPECT_EQ(value.scalar_type(), at::kFloat);
      // Every half and bfloat16 value is exactly representable in float32; doubles are rounded.
      EXPECT_TRUE(at::equal(value, original.to(at::kFloat)));
    } else {
      EXPECT_EQ(value.scalar_type(), original.scalar_type());
      EXPECT_TRUE(at::equal(value, original));
    }
  }

  // The layout: stored dtypes, an 8-byte aligned data section, each tensor at a multiple of its
  // item size, metadata kept.
  const std::string bytes = ReadBytes(path);
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(bytes, bytes.size(), path);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->data_start % 8, 0u);
  EXPECT_EQ(header->metadata.at("format"), "pt");
  std::map<std::string, std::string> dtypes;
  for (const SafetensorsEntry& entry : header->tensors) {
    dtypes[entry.name] = entry.dtype;
    EXPECT_EQ(entry.begin % SafetensorsDtypeSize(entry.dtype), 0u) << entry.name;
  }
  EXPECT_EQ(dtypes["a.f32"], "F32");
  EXPECT_EQ(dtypes["b.f16"], "F16");
  EXPECT_EQ(dtypes["c.bf16"], "BF16");
  EXPECT_EQ(dtypes["d.f64"], "F64");
  EXPECT_EQ(dtypes["e.i64"], "I64");
  EXPECT_EQ(dtypes["f.bool"], "BOOL");
  EXPECT_EQ(dtypes["j.u8"], "U8");

  // A prefix selects tensors.
  read = ReadCheckpoint(path, "b.");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(Names(*read), std::vector<std::string>{"b.f16"});
}

TEST(CheckpointIoTest, WriteSafetensorsReplacesAtomicallyAndReportsErrors) {
  ScratchDir dir;
  const std::string path = dir.Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"x", at::zeros({2})}}).ok());
  ASSERT_TRUE(WriteSafetensors(path, {{"y", at::zeros({3})}}).ok());
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1)
      << "a temporary file was left behind";
  absl::StatusOr<TensorMap> read = ReadCheckpoint(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(Names(*read), std::vector<std::string>{"y"});

  absl::Status status = WriteSafetensors(dir.Path("u.safetensors"), {{"u", at::Tensor()}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(status, "\"u\" is undefined"));
  status = WriteSafetensors(dir.Path("c.safetensors"),
                            {{"c", at::zeros({2}, at::TensorOptions().dtype(at::kComplexFloat))}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(status, "\"c\" has dtype ComplexFloat"));
  status = WriteSafetensors(dir.Path("m.safetensors"), {{"__metadata__", at::zeros({1})}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  status = WriteSafetensors("/nonexistent/musc/dir/model.safetensors", {{"x", at::zeros({1})}});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(status, "/nonexistent/musc/dir/model.safetensors"));
}

// OpenAI's CLIP archive → ReadCheckpoint → "visual." stripped → VisionTransformer: the same
// features, bit for bit, as the model built in memory from the same (fp16-rounded) weights.
TEST(CheckpointIoTest, OpenAiClipTorchScriptArchiveMatchesInMemoryModel) {
  ScratchDir dir;
  const VitConfig cfg = TinyVitConfig();
  const TensorMap weights = RandomVitWeights(cfg, 11);
  TensorMap as_stored;  // What the archive holds, as float32.
  int64_t rounded = 0;
  for (const auto& [name, value] : weights) {
    as_stored[name] = OpenAiStoresHalf(name) ? value.to(at::kHalf).to(at::kFloat) : value;
    rounded += at::equal(as_stored[name], value) ? 0 : 1;
  }
  ASSERT_GT(rounded, 0) << "fp16 storage should change some weights";
  const std::string path = dir.Path("ViT-Tiny-8.pt");
  SaveOpenAiClipArchive(path, weights);

  // Everything, text tower included.
  absl::StatusOr<TensorMap> all = ReadCheckpoint(path);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), weights.size() + 6);
  EXPECT_EQ(all->at("positional_embedding").sizes(), at::IntArrayRef({5, 8}));
  EXPECT_EQ(all->at("text_projection").scalar_type(), at::kFloat);
  EXPECT_EQ(all->at("visual.conv1.weight").scalar_type(), at::kFloat);
  EXPECT_TRUE(all->count("visual.transformer.resblocks.3.attn.out_proj.weight"));

  absl::StatusOr<TensorMap> visual = ReadCheckpoint(path, "visual.");
  ASSERT_TRUE(visual.ok()) << visual.status();
  const TensorMap loaded = StripPrefix(*visual, "visual.");
  ASSERT_EQ(Names(loaded), Names(weights));
  for (const auto& [name, value] : loaded) {
    EXPECT_FALSE(value.requires_grad()) << name;
    EXPECT_TRUE(at::equal(value, as_stored.at(name))) << name;
  }

  VisionTransformer from_file("clip-tiny-torchscript", cfg, loaded,
                              ClipPreprocessSpec(cfg.input_size));
  VisionTransformer in_memory("clip-tiny", cfg, as_stored, ClipPreprocessSpec(cfg.input_size));
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor images = at::randn({2, 3, cfg.input_size, cfg.input_size}, gen);
  ExpectSameFeatures(from_file.Forward(images), in_memory.Forward(images));
}

TEST(CheckpointIoTest, OpenClipSafetensorsMatchesInMemoryModel) {
  ScratchDir dir;
  const VitConfig cfg = TinyVitConfig();
  const TensorMap weights = RandomVitWeights(cfg, 12);
  TensorMap file_tensors;
  for (const auto& [name, value] : weights) file_tensors["visual." + name] = value;
  file_tensors["text_projection"] = at::zeros({8, 4});
  const std::string path = dir.Path("open_clip_model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, file_tensors).ok());

  absl::StatusOr<TensorMap> visual = ReadCheckpoint(path, "visual.");
  ASSERT_TRUE(visual.ok()) << visual.status();
  const TensorMap loaded = StripPrefix(*visual, "visual.");
  ASSERT_EQ(Names(loaded), Names(weights));

  VisionTransformer from_file("clip-tiny-safetensors", cfg, loaded,
                              ClipPreprocessSpec(cfg.input_size));
  VisionTransformer in_memory("clip-tiny", cfg, weights, ClipPreprocessSpec(cfg.input_size));
  at::Generator gen = at::detail::createCPUGenerator(4);
  const at::Tensor images = at::randn({2, 3, cfg.input_size, cfg.input_size}, gen);
  ExpectSameFeatures(from_file.Forward(images), in_memory.Forward(images));
}

TEST(CheckpointIoTest, TorchScriptArchiveYieldsParametersAndBuffers) {
  ScratchDir dir;
  at::Generator gen = at::detail::createCPUGenerator(5);
  TensorMap parameters;
  parameters["encoder.layer.0.weight"] =
      at::randn({3, 3}, gen, at::kDouble).set_requires_grad(true);
  parameters["head.bias"] = at::randn({2}, gen).to(at::kHalf);
  parameters["scale"] = at::randn({}, gen);
  TensorMap buffers;
  buffers["encoder.layer.0.running_mean"] = at::randn({3}, gen);
  buffers["encoder.steps"] = at::arange(4, at::kLong);
  const std::string path = dir.Path("tree.pt");
  SaveTorchScriptModuleTree(path, parameters, buffers);

  absl::StatusOr<TensorMap> read = ReadCheckpoint(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(Names(*read),
            (std::vector<std::string>{"encoder.layer.0.running_mean", "encoder.layer.0.weight",
                                      "encoder.steps", "head.bias", "scale"}));
  for (const TensorMap* group : {&parameters, &buffers}) {
    for (const auto& [name, original] : *group) {
      const at::Tensor& value = read->at(name);
      SCOPED_TRACE(name);
      EXPECT_FALSE(value.requires_grad());
      if (at::isFloatingType(original.scalar_type())) {
        EXPECT_EQ(value.scalar_type(), at::kFloat);
        EXPECT_TRUE(at::equal(value, original.detach().to(at::kFloat)));
      } else {
        EXPECT_EQ(value.scalar_type(), original.scalar_type());
        EXPECT_TRUE(at::equal(value, original));
      }
    }
  }
  read = ReadCheckpoint(path, "encoder.layer.");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), 2u);
}

TEST(CheckpointIoTest, MissingAndNonRegularFiles) {
  const std::string missing = "/nonexistent/musc/ViT-L-14-336px.pt";
  absl::StatusOr<TensorMap> read = ReadCheckpoint(missing);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(read.status(), missing));

  ScratchDir dir;
  read = ReadCheckpoint(dir.path());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), "not a regular file"));

  dir.Write("empty.pt", "");
  read = ReadCheckpoint(dir.Path("empty.pt"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), "only 0 bytes"));
}

TEST(CheckpointIoTest, TruncatedSafetensorsNameTheFileAndTensor) {
  ScratchDir dir;
  const std::string path = dir.Path("cut.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", at::zeros({4, 4})}, {"b", at::zeros({8})}}).ok());
  const std::string bytes = ReadBytes(path);

  // Cut inside the data section: the last tensor reaches past the end.
  dir.Write("cut.safetensors", bytes.substr(0, bytes.size() - 10));
  absl::StatusOr<TensorMap> read = ReadCheckpoint(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(MessageHas(read.status(), path));
  EXPECT_TRUE(MessageHas(read.status(), "tensor \"b\""));
  EXPECT_TRUE(MessageHas(read.status(), "extend past the data section"));

  // Cut inside the header.
  dir.Write("cut.safetensors", bytes.substr(0, 20));
  read = ReadCheckpoint(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(MessageHas(read.status(), path));
  EXPECT_TRUE(MessageHas(read.status(), "truncated"));
}

TEST(CheckpointIoTest, GarbageAndUnsupportedFilesAreRefusedClearly) {
  ScratchDir dir;
  std::mt19937 rng(99);
  std::string garbage(4096, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  garbage[0] = 'G';
  garbage[8] = 'x';
  dir.Write("garbage.pt", garbage);
  absl::StatusOr<TensorMap> read = ReadCheckpoint(dir.Path("garbage.pt"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), dir.Path("garbage.pt")));
  EXPECT_TRUE(MessageHas(read.status(), "expected a safetensors file"));

  // Zip magic, then garbage.
  dir.Write("zip_garbage.pt", std::string("PK\x03\x04", 4) + garbage);
  read = ReadCheckpoint(dir.Path("zip_garbage.pt"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), "could not be loaded as a TorchScript archive"));

  // A TorchScript archive cut in half.
  SaveTorchScriptModuleTree(dir.Path("whole.pt"), {{"w", at::zeros({64, 64})}});
  const std::string archive = ReadBytes(dir.Path("whole.pt"));
  dir.Write("half.pt", archive.substr(0, archive.size() / 2));
  read = ReadCheckpoint(dir.Path("half.pt"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), dir.Path("half.pt")));

  // torch.save(state_dict): recognised, and refused with the way out.
  SavePickledStateDict(dir.Path("dino.pth"), {{"cls_token", at::zeros({1, 1, 8})}});
  read = ReadCheckpoint(dir.Path("dino.pth"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), "torch.save() archive"));
  EXPECT_TRUE(MessageHas(read.status(), "safetensors"));

  // Pre-1.6 PyTorch pickle.
  dir.Write("legacy.pth", std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8", 12));
  read = ReadCheckpoint(dir.Path("legacy.pth"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), "legacy (pre-1.6) PyTorch pickle"));
}

TEST(CheckpointIoTest, SafetensorsThatLibTorchCannotHold) {
  ScratchDir dir;
  absl::StatusOr<std::string> header =
      EncodeSafetensorsHeader({{"visual.w", "F32", {2}, 0, 8}, {"counts", "U16", {2}, 8, 12}}, {});
  ASSERT_TRUE(header.ok()) << header.status();
  dir.Write("u16.safetensors", *header + std::string(12, '\0'));
  const std::string path = dir.Path("u16.safetensors");
  absl::StatusOr<TensorMap> read = ReadCheckpoint(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), "tensor \"counts\": dtype U16"));
  // Not selected, not read.
  read = ReadCheckpoint(path, "visual.");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(Names(*read), std::vector<std::string>{"visual.w"});

  // Empty, but with dimensions whose product overflows LibTorch's int64 strides.
  header =
      EncodeSafetensorsHeader({{"huge", "F32", {int64_t{1} << 40, int64_t{1} << 40, 0}, 0, 0}}, {});
  ASSERT_TRUE(header.ok()) << header.status();
  dir.Write("huge.safetensors", *header);
  read = ReadCheckpoint(dir.Path("huge.safetensors"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(read.status(), "tensor \"huge\": its dimensions multiply to more than"));
}

}  // namespace
}  // namespace musc
