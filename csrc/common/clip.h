// The clipping rule, shared by the CPU and CUDA kernels.
//
// An element x becomes clamp(x, lo, hi) with hi = clip_value rounded to the
// tensor's dtype and lo = -hi, exactly as torch.clamp(x, -c, c) rounds its
// bounds; it counts as clipped when the clamp changed it (x > hi or x < lo).
// NaN compares false both ways, so it stays NaN and is not counted.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "dtypes.h"
#include "macros.h"


namespace fastgan::clip {

constexpr const char* kOpName = "fastgan::clip_";

template <typename Acc>
FASTGAN_HOST_DEVICE inline Acc clamp(Acc v, Acc lo, Acc hi) {
  return v > hi ? hi : (v < lo ? lo : v);
}

template <typename Acc>
FASTGAN_HOST_DEVICE inline int is_clipped(Acc v, Acc lo, Acc hi) {
  return static_cast<int>(v > hi) | static_cast<int>(v < lo);
}

// hi = clip_value rounded to the storage type T, widened to the compute type.
template <typename T, typename Acc>
inline Acc upper_bound(double clip_value) {
  return static_cast<Acc>(static_cast<T>(clip_value));
}

// Checks made by every backend's kernel: the Python API raises the same
// errors (with the user's argument names) before it gets here.
inline void check_args(at::TensorList tensors, double clip_value) {
  TORCH_CHECK_VALUE(
      std::isfinite(clip_value) && clip_value > 0, kOpName,
      ": `clip_value` must be finite and > 0, got ", clip_value);
  for (size_t i = 0; i < tensors.size(); ++i) {
    TORCH_CHECK_TYPE(
        is_float_dtype(tensors[i].scalar_type()), kOpName, ": tensors[", i,
        "] has dtype ", tensors[i].scalar_type(),
        "; clipping needs float32, float64, float16 or bfloat16");
  }
}

}  // namespace fastgan::clip
