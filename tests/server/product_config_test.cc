#include "server/product_config.h"

#include <gtest/gtest.h>

#include "core/musc_engine.h"

namespace musc {
namespace {

absl::StatusOr<std::vector<ProductConfig>> Parse(const std::string& yaml) {
  return ParseProducts(yaml, "products.yaml", "/etc/musc");
}

TEST(ProductConfigTest, ParsesEveryFieldAndResolvesRelativeWeights) {
  absl::StatusOr<std::vector<ProductConfig>> products = Parse(R"(
products:
  - name: tire
    description: a tyre
    backbone: {model: darknet-tiny, weights: models/dn, input_size: 256, layers: [9, 13]}
    scoring: {degrees: [1, 3], interval: [0.1, 0.4], rscin_windows: [1, 8, 9],
              block_budget_mib: 64}
    batch: {min_images: 8, max_images: 50, auto_seal: {at_count: 20, idle_seconds: 2.5}}
    maps: {encoding: float16, mask_threshold: 0.7}
  - name: plain
)");
  ASSERT_TRUE(products.ok()) << products.status();
  ASSERT_EQ(products->size(), 2u);
  const ProductConfig& p = (*products)[0];
  EXPECT_EQ(p.backbone.model, "darknet-tiny");
  EXPECT_EQ(p.backbone.weights_path, "/etc/musc/models/dn");
  EXPECT_EQ(p.backbone.input_size, 256);
  EXPECT_EQ(p.backbone.layers, (std::vector<int64_t>{9, 13}));
  EXPECT_EQ(p.scoring.degrees, (std::vector<int64_t>{1, 3}));
  EXPECT_DOUBLE_EQ(p.scoring.interval_low, 0.1);
  EXPECT_DOUBLE_EQ(p.scoring.interval_high, 0.4);
  EXPECT_EQ(p.scoring.rscin_windows, (std::vector<int64_t>{1, 8, 9}));
  EXPECT_EQ(p.scoring.block_budget_bytes, int64_t{64} << 20);
  EXPECT_EQ(p.min_images, 8u);
  EXPECT_EQ(p.max_images, 50u);
  EXPECT_EQ(p.auto_seal.at_count, 20u);
  EXPECT_DOUBLE_EQ(p.auto_seal.idle_seconds, 2.5);
  EXPECT_EQ(p.map_encoding, v1::FLOAT16);
  ASSERT_TRUE(p.mask_threshold.has_value());
  EXPECT_FLOAT_EQ(*p.mask_threshold, 0.7f);
  // Defaults: the paper's backbone and scoring.
  const ProductConfig& plain = (*products)[1];
  EXPECT_EQ(plain.backbone.model, DefaultBackboneModel());
  EXPECT_EQ(plain.backbone.model, "clip-vit-l-14-336");
  EXPECT_EQ(plain.scoring.degrees, (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(plain.min_images, 5u);
  EXPECT_EQ(plain.map_encoding, v1::PNG16);
  EXPECT_FALSE(plain.mask_threshold.has_value());
}

TEST(ProductConfigTest, LargeBatchKeysAreParsedAndReported) {
  absl::StatusOr<std::vector<ProductConfig>> products = Parse(R"(
products:
  - name: big
    scoring: {block_budget_mib: 64, approximate_neighbours: 32, token_dtype: bf16,
              gemm_dtype: fp16}
  - name: plain
)");
  ASSERT_TRUE(products.ok()) << products.status();
  const ProductConfig& big = (*products)[0];
  EXPECT_EQ(big.scoring.approximate_neighbours, 32);
  EXPECT_EQ(big.scoring.token_dtype, NumericType::kBFloat16);
  // Valid here; a CPU server refuses it at load.
  EXPECT_EQ(big.scoring.gemm_dtype, NumericType::kFloat16);
  v1::Product proto;
  ProductToProto(big, &proto);
  EXPECT_EQ(proto.scoring().block_budget_mib(), 64);
  EXPECT_EQ(proto.scoring().approximate_neighbours(), 32u);
  EXPECT_EQ(proto.scoring().token_dtype(), "bf16");
  EXPECT_EQ(proto.scoring().gemm_dtype(), "fp16");
  v1::Product plain;
  ProductToProto((*products)[1], &plain);
  EXPECT_EQ(plain.scoring().block_budget_mib(), 512);
  EXPECT_EQ(plain.scoring().approximate_neighbours(), 0u);
  EXPECT_EQ(plain.scoring().token_dtype(), "fp32");
  EXPECT_EQ(plain.scoring().gemm_dtype(), "fp32");
  EXPECT_FALSE(Parse("products:\n  - name: x\n    scoring: {gemm_dtype: int8}\n").ok());
}

TEST(ProductConfigTest, MistakesAreErrorsThatSayWhere) {
  struct Case {
    const char* yaml;
    const char* expected;  // A fragment of the message.
  };
  const Case cases[] = {
      {"products: []", "non-empty list"},
      {"product: []", "unknown key 'product'"},
      {"products: [{name: a, batchh: {}}]", "unknown key 'batchh'"},
      {"products: [{name: a, backbone: {model: resnet-9000}}]", "unknown model 'resnet-9000'"},
      {"products: [{name: a, scoring: {degrees: [2]}}]", "degree 2"},
      {"products: [{name: a, scoring: {interval: [0.5, 0.2]}}]", "interval"},
      {"products: [{name: a, scoring: {interval: [0.1]}}]", "[low, high]"},
      {"products: [{name: a, batch: {min_images: 1}}]", "minimum is 2"},
      {"products: [{name: a, batch: {min_images: 9, max_images: 4}}]", "max_images 4"},
      {"products: [{name: a, maps: {encoding: jpeg}}]", "map encoding 'jpeg'"},
      {"products: [{name: a}, {name: a}]", "defined twice"},
      {"products: [{description: no name}]", "missing 'name'"},
      // Names become header values, metric labels and session-id prefixes ("<product>:<hex>").
      {"products: [{name: 'line 3'}]", "1..128 characters of A-Z a-z 0-9 . _ -"},
      {"products: [{name: 'a:b'}]", "name 'a:b' must be"},
      {"products: [{name: ''}]", "1..128 characters"},
      {"products: [{name: a, batch: {min_images: many}}]", "products.yaml"},
      {"products: [{name: a", "products.yaml"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<ProductConfig>> products = Parse(c.yaml);
    ASSERT_FALSE(products.ok()) << c.yaml;
    EXPECT_EQ(products.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_NE(products.status().message().find(c.expected), std::string::npos)
        << c.yaml << " → " << products.status().message();
  }
}

TEST(ProductConfigTest, NamesAreOneTo128SafeCharacters) {
  const std::string longest(128, 'x');
  absl::StatusOr<std::vector<ProductConfig>> ok =
      Parse("products: [{name: Line-3_v1.2}, {name: " + longest + "}]");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)[0].name, "Line-3_v1.2");
  EXPECT_EQ((*ok)[1].name, longest);
  for (const std::string& bad : {longest + "x", std::string("caf\u00e9"), std::string("a/b")}) {
    absl::StatusOr<std::vector<ProductConfig>> p = Parse("products: [{name: \"" + bad + "\"}]");
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ProductConfigTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadProductsFile("/nonexistent/products.yaml").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace musc
