// Calls of fastgan's own ops through the dispatcher, for kernels (autograd
// or composite) that run another fastgan op below the autograd key.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdint>

namespace fastgan {

inline at::Tensor call_spectral_norm_scale(
    const at::Tensor& weight, const at::Tensor& state, int64_t index, int64_t offset,
    int64_t dim) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastgan::spectral_norm_scale", "")
                             .typed<at::Tensor(
                                 const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t)>();
  return op.call(weight, state, index, offset, dim);
}

inline at::Tensor call_spectral_norm_scale_backward(
    const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& state, int64_t index,
    int64_t offset, int64_t dim) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastgan::spectral_norm_scale_backward", "")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
              int64_t)>();
  return op.call(grad, weight, state, index, offset, dim);
}

}  // namespace fastgan
