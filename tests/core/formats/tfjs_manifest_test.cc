// TF.js layers-model reader: the real darknet-tiny export, and malformed exports written to a
// temporary directory, each of which must give a clear error (never a crash: this suite also runs
// under ASan/UBSan).
#include "core/formats/tfjs_manifest.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::MessageHas;
using ::musc::testing::ScratchDir;

namespace fs = std::filesystem;

const char kRealModelDir[] = MUSC_SHARED_DIR "/models/darknet-tiny-tfjs";

std::string FloatBytes(const std::vector<float>& values) {
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::vector<float> Iota(int n, float start) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

// A tiny valid export: Input → Conv2D(3 filters, 1×1, 2 input channels, no bias) → BN(3) →
// LeakyReLU. The placeholders let each test break exactly one thing.
constexpr char kTinyModelJson[] = R"({
  "modelTopology": {"keras_version": "2.1.6", "backend": "tensorflow", "model_config": {
    "class_name": "Model", "config": {"name": "m", "layers": [
      {"name": "input_1", "class_name": "InputLayer",
       "config": {"batch_input_shape": [null, 8, 8, 2]}, "inbound_nodes": []},
      {"name": "conv", "class_name": "Conv2D",
       "config": {"filters": 3, "kernel_size": [1, 1], "strides": [1, 1], "padding": "same",
                  "use_bias": false, "activation": "linear"},
       "inbound_nodes": [[["input_1", 0, 0, {}]]]},
      {"name": "bn", "class_name": "BatchNormalization",
       "config": {"axis": -1, "epsilon": 0.001, "center": true, "scale": true},
       "inbound_nodes": [[["conv", 0, 0, {}]]]},
      {"name": "act", "class_name": "LeakyReLU", "config": {"alpha": 0.1},
       "inbound_nodes": [[["bn", 0, 0, {}]]]}]}}},
  "weightsManifest": [
    {"paths": ["group1-shard1of1"], "weights": [
      {"name": "conv/kernel", "shape": KERNEL_SHAPE, "dtype": KERNEL_DTYPE}]},
    {"paths": ["group2-shard1of1"], "weights": [
      {"name": "bn/gamma", "shape": [3], "dtype": "float32"},
      {"name": "bn/beta", "shape": [3], "dtype": "float32"},
      {"name": "bn/moving_mean", "shape": [3], "dtype": "float32"},
      {"name": "VARIANCE_NAME", "shape": [3], "dtype": "float32"}]}]
})";

struct TinyModel {
  std::string kernel_shape = "[1, 1, 2, 3]";
  std::string kernel_dtype = "\"float32\"";
  std::string variance_name = "bn/moving_variance";
  std::vector<float> kernel = Iota(6, 0.5f);
  std::vector<float> bn = {1, 2, 3, 0.1f, 0.2f, 0.3f, -1, 0, 1, 0.5f, 1, 2};

  std::string Json() const {
    return absl::StrReplaceAll(kTinyModelJson, {{"KERNEL_SHAPE", kernel_shape},
                                                {"KERNEL_DTYPE", kernel_dtype},
                                                {"VARIANCE_NAME", variance_name}});
  }
  void WriteTo(const ScratchDir& dir) const {
    dir.Write("model.json", Json());
    dir.Write("group1-shard1of1", FloatBytes(kernel));
    dir.Write("group2-shard1of1", FloatBytes(bn));
  }
};

TEST(TfjsManifestTest, LoadsRealDarknetTinyExport) {
  if (!fs::exists(fs::path(kRealModelDir) / "model.json")) {
    GTEST_SKIP() << "shared model directory " << kRealModelDir << " is absent";
  }
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(kRealModelDir);
  ASSERT_TRUE(model.ok()) << model.status();

  EXPECT_EQ(model->groups.size(), 31u);
  EXPECT_EQ(model->weights.size(), 77u);  // 16 kernels, 1 bias, 15 × 4 BN tensors.
  EXPECT_EQ(model->total_parameters(), 1046488);

  int convs = 0, bns = 0, leaky = 0, pools = 0;
  for (const KerasLayer& layer : model->layers) {
    if (layer.class_name == "Conv2D") {
      ++convs;
      EXPECT_EQ(layer.padding, KerasPadding::kSame) << layer.name;
      EXPECT_EQ(layer.strides, (std::array<int64_t, 2>{1, 1})) << layer.name;
      EXPECT_EQ(layer.activation, "linear") << layer.name;
    } else if (layer.class_name == "BatchNormalization") {
      ++bns;
      EXPECT_DOUBLE_EQ(layer.epsilon, 0.001) << layer.name;
      EXPECT_EQ(layer.axis, -1) << layer.name;
    } else if (layer.class_name == "LeakyReLU") {
      ++leaky;
      EXPECT_NEAR(layer.alpha, 0.1, 1e-7) << layer.name;
    } else if (layer.class_name == "MaxPooling2D") {
      ++pools;
      EXPECT_EQ(layer.pool_size, (std::array<int64_t, 2>{2, 2})) << layer.name;
      EXPECT_EQ(layer.strides, (std::array<int64_t, 2>{2, 2})) << layer.name;
      EXPECT_EQ(layer.padding, KerasPadding::kSame) << layer.name;
    }
  }
  EXPECT_EQ(convs, 16);
  EXPECT_EQ(bns, 15);
  EXPECT_EQ(leaky, 15);
  EXPECT_EQ(pools, 4);
  ASSERT_EQ(model->layers.size(), 52u);  // + input and global average pooling.
  EXPECT_EQ(model->layers[0].class_name, "InputLayer");
  EXPECT_EQ(model->layers[1].name, "conv2d_1");
  EXPECT_EQ(model->layers[1].inbound, std::vector<std::string>{"input_1"});
  EXPECT_FALSE(model->layers[1].use_bias);
  EXPECT_EQ(model->layers.back().class_name, "GlobalAveragePooling2D");

  // Values checked against the shard bytes decoded independently (Python struct.unpack '<f').
  const TfjsTensor* k1 = model->FindWeight("conv2d_1/kernel");
  ASSERT_NE(k1, nullptr);
  EXPECT_EQ(k1->shape, (std::vector<int64_t>{3, 3, 3, 16}));
  EXPECT_FLOAT_EQ(k1->values[0], 0.14289306104183197f);
  EXPECT_FLOAT_EQ(k1->values[3], -0.09639453142881393f);
  const TfjsTensor* bias = model->FindWeight("conv2d_16/bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->shape, std::vector<int64_t>{1000});
  EXPECT_FLOAT_EQ(bias->values[0], -1.3172122240066528f);
  const TfjsTensor* var1 = model->FindWeight("batch_normalization_1/moving_variance");
  ASSERT_NE(var1, nullptr);
  EXPECT_FLOAT_EQ(var1->values[15], 0.029412662610411644f);
  EXPECT_EQ(model->FindWeight("conv2d_16/kernel")->shape, (std::vector<int64_t>{1, 1, 128, 1000}));
}

TEST(TfjsManifestTest, LoadsMinimalExport) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->layers.size(), 4u);
  EXPECT_EQ(model->groups.size(), 2u);
  EXPECT_EQ(model->total_parameters(), 18);
  EXPECT_EQ(model->FindWeight("conv/kernel")->values, tiny.kernel);
  EXPECT_EQ(model->FindWeight("bn/moving_variance")->values, (std::vector<float>{0.5f, 1.f, 2.f}));
  EXPECT_EQ(model->layers[1].filters, 3);
  EXPECT_EQ(model->layers[1].kernel_size, (std::array<int64_t, 2>{1, 1}));
  EXPECT_EQ(model->FindWeight("nope"), nullptr);
}

TEST(TfjsManifestTest, MissingDirectoryIsNotFound) {
  const std::string missing = "/nonexistent/musc/darknet";
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(missing);
  ASSERT_EQ(model.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(model.status(), missing));
}

TEST(TfjsManifestTest, MissingModelJsonIsNotFound) {
  ScratchDir dir;
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(model.status(), "model.json"));
}

TEST(TfjsManifestTest, BadJsonIsInvalidArgument) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.WriteTo(dir);
  dir.Write("model.json", tiny.Json().substr(0, 200));
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(), "model.json: not valid JSON"));
}

TEST(TfjsManifestTest, MissingShardIsNotFound) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.WriteTo(dir);
  fs::remove(fs::path(dir.path()) / "group2-shard1of1");
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(model.status(), "group2-shard1of1"));
}

TEST(TfjsManifestTest, TruncatedShardIsDataLoss) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.WriteTo(dir);
  dir.Write("group2-shard1of1", FloatBytes(tiny.bn).substr(0, 45));
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(MessageHas(model.status(), "group2-shard1of1"));
  EXPECT_TRUE(MessageHas(model.status(), "hold 45 bytes"));
  EXPECT_TRUE(MessageHas(model.status(), "need 48 bytes"));
  EXPECT_TRUE(MessageHas(model.status(), "bn/moving_variance [3]"));
}

TEST(TfjsManifestTest, ShardLargerThanItsTensorsIsDataLoss) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.kernel.push_back(7.f);
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(MessageHas(model.status(), "hold 28 bytes"));
  EXPECT_TRUE(MessageHas(model.status(), "need 24 bytes"));
}

TEST(TfjsManifestTest, WrongDtypeIsInvalidArgument) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.kernel_dtype = "\"int32\"";
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(), "conv/kernel"));
  EXPECT_TRUE(MessageHas(model.status(), "expected \"float32\", found \"int32\""));
}

TEST(TfjsManifestTest, KernelShapeDisagreeingWithLayerIsInvalidArgument) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.kernel_shape = "[1, 1, 3, 2]";  // Same byte count, but 2 filters where the layer has 3.
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(), "'conv/kernel' of layer 'conv'"));
  EXPECT_TRUE(MessageHas(model.status(), "expected shape [1,1,?,3], found [1,1,3,2]"));
}

TEST(TfjsManifestTest, MissingLayerTensorIsInvalidArgument) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.variance_name = "bn/moving_var";
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(),
                         "layer 'bn' (BatchNormalization) needs weight 'bn/moving_variance'"));
}

TEST(TfjsManifestTest, AbsurdShapesAreRejectedBeforeAllocating) {
  for (const char* shape :
       {"[65536, 65536, 65536, 3]", "[-1, 1, 2, 3]", "[1.5, 1, 2, 3]",
        "[1, 1, 1, 1, 1, 1, 1, 1, 1]", "[18446744073709551615, 3]", "\"big\""}) {
    SCOPED_TRACE(shape);
    ScratchDir dir;
    TinyModel tiny;
    tiny.kernel_shape = shape;
    tiny.WriteTo(dir);
    absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
    ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(MessageHas(model.status(), "tensor 'conv/kernel'"));
    EXPECT_TRUE(MessageHas(model.status(), "shape"));
  }
}

TEST(TfjsManifestTest, ShardPathsMustStayInsideTheDirectory) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.WriteTo(dir);
  for (const char* path : {"../group1-shard1of1", "/etc/passwd", "a/../../b"}) {
    SCOPED_TRACE(path);
    std::string json = tiny.Json();
    json = absl::StrReplaceAll(json, {{"\"group1-shard1of1\"", absl::StrCat("\"", path, "\"")}});
    absl::StatusOr<TfjsModel> model = ParseTfjsModel(json, dir.path(), "model.json");
    ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(MessageHas(model.status(), "relative file name"));
  }
}

TEST(TfjsManifestTest, NonFiniteWeightsAreRejected) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.kernel[4] = std::numeric_limits<float>::quiet_NaN();
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(), "'conv/kernel' element 4"));
}

TEST(TfjsManifestTest, NegativeVarianceIsRejected) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.bn[10] = -1.f;
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(), "moving_variance' element 1"));
}

TEST(TfjsManifestTest, BadLayerConfigNamesLayerAndField) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.WriteTo(dir);
  struct Case {
    const char* from;
    const char* to;
    const char* expect;
  };
  for (const Case& c : {
           Case{"\"filters\": 3", "\"filters\": \"three\"",
                "layer 'conv' (Conv2D): config.filters: expected an integer"},
           Case{"\"padding\": \"same\"", "\"padding\": \"full\"",
                "config.padding: expected \"same\" or \"valid\", found \"full\""},
           Case{"\"kernel_size\": [1, 1]", "\"kernel_size\": [1, 1, 1]", "config.kernel_size"},
           Case{"\"alpha\": 0.1", "\"alpha\": \"x\"", "layer 'act' (LeakyReLU): config.alpha"},
           Case{"\"epsilon\": 0.001", "\"epsilon\": -1", "config.epsilon"},
           Case{"\"name\": \"bn\",", "\"name\": \"conv\",", "layer name 'conv' appears twice"},
           Case{"\"weightsManifest\"", "\"weights\"", "missing array \"weightsManifest\""},
           Case{"\"modelTopology\"", "\"topology\"", "missing object \"modelTopology\""},
       }) {
    SCOPED_TRACE(c.from);
    const std::string json = absl::StrReplaceAll(tiny.Json(), {{c.from, c.to}});
    ASSERT_NE(json, tiny.Json());
    absl::StatusOr<TfjsModel> model = ParseTfjsModel(json, dir.path(), "model.json");
    ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(MessageHas(model.status(), c.expect));
  }
}

TEST(TfjsManifestTest, DuplicateTensorNameIsRejected) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.variance_name = "bn/gamma";
  tiny.WriteTo(dir);
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(dir.path());
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(), "more than once"));
}

TEST(TfjsManifestTest, ShardsOfOneGroupAreConcatenated) {
  ScratchDir dir;
  TinyModel tiny;
  tiny.WriteTo(dir);
  // TF.js splits large groups into several files; tensors may straddle the file boundary.
  const std::string bn = FloatBytes(tiny.bn);
  dir.Write("group2-shard1of2", bn.substr(0, 18));
  dir.Write("group2-shard2of2", bn.substr(18));
  const std::string json = absl::StrReplaceAll(
      tiny.Json(), {{"[\"group2-shard1of1\"]", "[\"group2-shard1of2\", \"group2-shard2of2\"]"}});
  absl::StatusOr<TfjsModel> model = ParseTfjsModel(json, dir.path(), "model.json");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->FindWeight("bn/beta")->values, (std::vector<float>{0.1f, 0.2f, 0.3f}));
}

// Arbitrary damage to the real manifest must give an error or a model, never a crash (the
// sanitizer build turns any memory error here into a failure).
TEST(TfjsManifestTest, DamagedRealManifestNeverCrashes) {
  const fs::path json_path = fs::path(kRealModelDir) / "model.json";
  if (!fs::exists(json_path)) {
    GTEST_SKIP() << "shared model directory " << kRealModelDir << " is absent";
  }
  std::ifstream in(json_path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(text.size(), 1000u);
  std::mt19937 rng(1234);
  int parsed = 0;
  for (int i = 0; i < 60; ++i) {
    std::string damaged = text;
    if (i % 2 == 0) {
      damaged.resize(std::uniform_int_distribution<size_t>(0, text.size() - 1)(rng));
    } else {
      for (int k = 0; k < 3; ++k) {
        const size_t pos = std::uniform_int_distribution<size_t>(0, text.size() - 1)(rng);
        damaged[pos] = static_cast<char>(std::uniform_int_distribution<int>(32, 126)(rng));
      }
    }
    absl::StatusOr<TfjsModel> model = ParseTfjsModel(damaged, kRealModelDir, "model.json");
    if (model.ok()) {
      ++parsed;
    } else {
      EXPECT_FALSE(model.status().message().empty());
    }
  }
  // Most single-character edits land in ignored config fields; that is fine either way.
  SUCCEED() << parsed << " of 60 damaged manifests still loaded";
}

}  // namespace
}  // namespace musc
