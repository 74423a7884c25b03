// The floating-point dtypes fastgan's kernels support.
#pragma once

#include <c10/core/ScalarType.h>

namespace fastgan {

inline bool is_float_dtype(c10::ScalarType t) {
  return t == c10::kFloat || t == c10::kDouble || t == c10::kHalf || t == c10::kBFloat16;
}

}  // namespace fastgan
