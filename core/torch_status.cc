#include "core/torch_status.h"

#include "absl/strings/str_cat.h"

namespace musc {

absl::Status TorchErrorToStatus(const c10::Error& error, absl::string_view context,
                                absl::StatusCode code) {
  const char* what = error.what_without_backtrace();
  return absl::Status(code,
                      context.empty() ? std::string(what) : absl::StrCat(context, ": ", what));
}

}  // namespace musc
