// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status and absl::StatusOr (Debian 12's Abseil has
// no public pair). Part of base/: every layer may use it.
#ifndef MUSC_BASE_STATUS_MACROS_H_
#define MUSC_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status or StatusOr) once; returns its status from the enclosing
// function when it is not OK.
#define MUSC_RETURN_IF_ERROR(expr)                                                            \
  do {                                                                                        \
    if (::absl::Status musc_status_ = ::musc::internal::ToStatus(expr); !musc_status_.ok()) { \
      return musc_status_;                                                                    \
    }                                                                                         \
  } while (false)

// `lhs` = the value of the StatusOr `rexpr`, or return its status when it is not OK. `lhs` may
// declare a variable (`MUSC_ASSIGN_OR_RETURN(auto x, F())`) or name an existing one.
#define MUSC_ASSIGN_OR_RETURN(lhs, rexpr) \
  MUSC_ASSIGN_OR_RETURN_IMPL_(MUSC_STATUS_MACROS_CONCAT_(musc_statusor_, __LINE__), lhs, rexpr)

#define MUSC_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)  \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#define MUSC_STATUS_MACROS_CONCAT_INNER_(x, y) x##y
#define MUSC_STATUS_MACROS_CONCAT_(x, y) MUSC_STATUS_MACROS_CONCAT_INNER_(x, y)

namespace musc::internal {
inline absl::Status ToStatus(const absl::Status& status) { return status; }
inline absl::Status ToStatus(absl::Status&& status) { return std::move(status); }
template <typename T>
absl::Status ToStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}
}  // namespace musc::internal

#endif  // MUSC_BASE_STATUS_MACROS_H_
