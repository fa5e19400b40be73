// Named tensors: what every checkpoint reader produces and every model consumes.
#ifndef MUSC_CORE_BACKBONES_TENSOR_MAP_H_
#define MUSC_CORE_BACKBONES_TENSOR_MAP_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace musc {

using TensorMap = std::map<std::string, at::Tensor>;

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_TENSOR_MAP_H_
