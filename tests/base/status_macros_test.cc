#include "base/status_macros.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace musc {
namespace {

int evaluations = 0;

absl::Status Fails(absl::StatusCode code) {
  ++evaluations;
  return absl::Status(code, "from Fails");
}
absl::StatusOr<std::unique_ptr<int>> MakeValue(bool ok) {
  ++evaluations;
  if (!ok) return absl::NotFoundError("no value");
  return std::make_unique<int>(42);
}

absl::Status ReturnIfError(absl::StatusCode code, int* reached) {
  MUSC_RETURN_IF_ERROR(Fails(code));
  ++*reached;
  return absl::OkStatus();
}
absl::Status ReturnIfErrorOfStatusOr(bool ok, int* reached) {
  MUSC_RETURN_IF_ERROR(MakeValue(ok));
  ++*reached;
  return absl::OkStatus();
}
absl::StatusOr<int> AssignOrReturn(bool ok) {
  MUSC_ASSIGN_OR_RETURN(std::unique_ptr<int> value, MakeValue(ok));  // Move-only values too.
  int existing = 0;
  MUSC_ASSIGN_OR_RETURN(existing, absl::StatusOr<int>(*value + 1));  // An existing variable.
  return existing;
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsTheErrorAndEvaluatesOnce) {
  int reached = 0;
  evaluations = 0;
  const absl::Status s = ReturnIfError(absl::StatusCode::kUnavailable, &reached);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "from Fails");
  EXPECT_EQ(reached, 0);
  EXPECT_EQ(evaluations, 1);
  EXPECT_TRUE(ReturnIfError(absl::StatusCode::kOk, &reached).ok());
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(evaluations, 2);
}

TEST(StatusMacrosTest, ReturnIfErrorTakesAStatusOr) {
  int reached = 0;
  EXPECT_EQ(ReturnIfErrorOfStatusOr(false, &reached).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(ReturnIfErrorOfStatusOr(true, &reached).ok());
  EXPECT_EQ(reached, 1);
}

TEST(StatusMacrosTest, AssignOrReturnAssignsOrReturns) {
  evaluations = 0;
  const absl::StatusOr<int> good = AssignOrReturn(true);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(*good, 43);
  EXPECT_EQ(evaluations, 1);
  EXPECT_EQ(AssignOrReturn(false).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace musc
