// Inputs that the fuzz harnesses (fuzz/) showed to crash or misbehave, kept as unit tests so they
// stay fixed in the ordinary and the ASan/UBSan builds. (Regressions in the products file, which
// needs the server library, are in tests/server/hostile_input_test.cc.)
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "core/formats/tfjs_manifest.h"
#include "tests/test_support.h"

namespace musc {
namespace {

using ::musc::testing::MessageHas;

// A layer whose config value is an array nested `depth` deep: the error message for it rendered
// the value recursively, and 30000 levels (a 60 KB file) overflowed the stack under ASan.
std::string DeeplyNestedModelJson(int depth) {
  return absl::StrCat(R"({"modelTopology": {"class_name": "Model", "config": {"layers": [)",
                      R"({"name": "c", "class_name": "Conv2D", "config": {"filters": )",
                      std::string(depth, '['), std::string(depth, ']'), "}}]}}}");
}

TEST(FuzzRegressionTest, DeeplyNestedTfjsModelJsonIsRefusedBeforeParsing) {
  absl::StatusOr<TfjsModel> model =
      ParseTfjsModel(DeeplyNestedModelJson(100000), "/nonexistent", "deep/model.json");
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(model.status(), "nested deeper than 64 levels"));
  // Brackets inside strings are text, not nesting.
  model = ParseTfjsModel(absl::StrCat(R"({"x": ")", std::string(1000, '['), R"("})"),
                         "/nonexistent", "strings/model.json");
  EXPECT_FALSE(MessageHas(model.status(), "nested deeper"));
  // At the limit the file is parsed, and refused for what it says.
  model = ParseTfjsModel(DeeplyNestedModelJson(64 - 6), "/nonexistent", "limit/model.json");
  EXPECT_TRUE(MessageHas(model.status(), "config.filters")) << model.status();
}

}  // namespace
}  // namespace musc
