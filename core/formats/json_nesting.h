// A pre-check for untrusted JSON (safetensors headers, tfjs manifests): how deeply its arrays and
// objects nest, counted on the raw text before any DOM parse — which would otherwise build (and
// print, recursively, in error messages) whatever tree a hostile file describes.
#ifndef MUSC_CORE_FORMATS_JSON_NESTING_H_
#define MUSC_CORE_FORMATS_JSON_NESTING_H_

#include <string_view>

namespace musc {

// Deepest nesting of arrays and objects in `text` (brackets inside strings do not count),
// stopping early once it exceeds `limit`.
int JsonNestingDepth(std::string_view text, int limit);

}  // namespace musc

#endif  // MUSC_CORE_FORMATS_JSON_NESTING_H_
