// The gradient-penalty math, shared by every backend.
//
// For per-sample gradient norms n_i = ||g_i||_2 over all non-batch
// dimensions of a batch of B gradients:
//   penalty  = (1/B) sum_i phi(n_i),  phi(n) = (n - c)^2, or max(0, n - c)^2
//              when one-sided (WGAN-LP);
//   dP/dg_i  = phi'(n_i) / (n_i B) * g_i, with the factor taken as 0 where
//              n_i = 0 (a constant critic: finite, as torch's norm backward).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "checks.h"
#include "dtypes.h"
#include "macros.h"

namespace fastgan::penalty {

template <typename Acc>
FASTGAN_HOST_DEVICE inline Acc excess(Acc norm, Acc center, bool one_sided) {
  const Acc d = norm - center;
  return one_sided && d < Acc(0) ? Acc(0) : d;
}

template <typename Acc>
FASTGAN_HOST_DEVICE inline Acc phi(Acc norm, Acc center, bool one_sided) {
  const Acc d = excess(norm, center, one_sided);
  return d * d;
}

// phi'(n) / n: the per-sample factor that multiplies g_i in the backward.
template <typename Acc>
FASTGAN_HOST_DEVICE inline Acc dphi_over_norm(Acc norm, Acc center, bool one_sided) {
  return norm > Acc(0) ? Acc(2) * excess(norm, center, one_sided) / norm : Acc(0);
}

inline void check_grads(const at::Tensor& grads, const char* op_name) {
  TORCH_CHECK_VALUE(
      grads.dim() >= 1 && grads.size(0) > 0, op_name,
      ": `grads` must have a batch dimension with at least one sample, got shape ",
      grads.sizes());
  TORCH_CHECK_TYPE(
      is_float_dtype(grads.scalar_type()), op_name, ": `grads` has dtype ", grads.scalar_type(),
      "; expected float32, float64, float16 or bfloat16");
}

// The backward's arguments besides `grads` (checked by check_grads).
inline void check_backward(
    const at::Tensor& grad_penalty, const at::Tensor& grads, const at::Tensor& norms,
    const char* op_name) {
  TORCH_CHECK_VALUE(
      grad_penalty.numel() == 1, op_name, ": `grad_penalty` must hold one element, got shape ",
      grad_penalty.sizes());
  TORCH_CHECK_TYPE(
      is_float_dtype(grad_penalty.scalar_type()), op_name, ": `grad_penalty` has dtype ",
      grad_penalty.scalar_type(), "; expected a floating-point dtype");
  TORCH_CHECK_VALUE(
      norms.dim() == 1 && norms.size(0) == grads.size(0), op_name, ": `norms` must have shape (",
      grads.size(0), ",), got ", norms.sizes());
  TORCH_CHECK_TYPE(
      is_float_dtype(norms.scalar_type()), op_name, ": `norms` has dtype ", norms.scalar_type(),
      "; expected a floating-point dtype");
  check_same_device(grad_penalty, {"grad_penalty"}, grads, {"grads"}, op_name);
  check_same_device(norms, {"norms"}, grads, {"grads"}, op_name);
}

inline void check_interpolate(
    const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps, const char* op_name) {
  TORCH_CHECK_VALUE(
      real.sizes() == fake.sizes(), op_name, ": `real` has shape ", real.sizes(),
      " but `fake` has ", fake.sizes());
  TORCH_CHECK_VALUE(real.dim() >= 1, op_name, ": `real` must have a batch dimension");
  TORCH_CHECK_TYPE(
      is_float_dtype(real.scalar_type()), op_name, ": `real` has dtype ", real.scalar_type(),
      "; expected float32, float64, float16 or bfloat16");
  TORCH_CHECK_TYPE(
      fake.scalar_type() == real.scalar_type() && eps.scalar_type() == real.scalar_type(),
      op_name, ": `real`, `fake` and `eps` must share one dtype, got ", real.scalar_type(), ", ",
      fake.scalar_type(), " and ", eps.scalar_type());
  TORCH_CHECK_VALUE(
      eps.dim() == 1 && eps.size(0) == real.size(0), op_name, ": `eps` must have shape (",
      real.size(0), ",), one weight per sample, got ", eps.sizes());
  TORCH_CHECK(
      fake.device() == real.device() && eps.device() == real.device(), op_name,
      ": `real`, `fake` and `eps` must be on one device, got ", real.device(), ", ",
      fake.device(), " and ", eps.device());
}

// The norms and the penalty are computed (and returned) in float32 for
// float16 / bfloat16 gradients.
inline at::ScalarType result_dtype(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 ? at::kFloat : t;
}

}  // namespace fastgan::penalty
