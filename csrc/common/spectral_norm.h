// Shapes, state layout and argument checks of the spectral-norm ops, shared by
// the CPU and CUDA kernels (host code).
//
// A weight W with `dim` d is read as the matrix W_mat = W.movedim(d, 0)
// .flatten(1) of H = W.size(d) rows and K = numel / H columns, without a
// copy: W is viewed as [A, H, B] (A = product of the sizes before d, B of
// those after), and W_mat[h, a * B + b] = W[a, h, b].
//
// The power iteration returns one float64 tensor, the state, laid out as
//   [sigma_0, ..., sigma_{L-1}, u_0 (H_0), v_0 (K_0), u_1, v_1, ...]:
// every layer's sigma first, then the u and v the sigma was computed with
// (as stored in the weight's dtype), which the normalisation's backward
// needs after later forwards have updated the buffers in place.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <vector>

#include "dtypes.h"

namespace fastgan::spectral_norm {

constexpr const char* kPowerIteration = "fastgan::spectral_norm_power_iteration";
constexpr const char* kScale = "fastgan::spectral_norm_scale";
constexpr const char* kScaleBackward = "fastgan::spectral_norm_scale_backward";
constexpr const char* kLinear = "fastgan::spectral_norm_linear";

struct MatrixShape {
  int64_t a = 1;  // product of the sizes before dim
  int64_t h = 0;  // rows: the size of dim
  int64_t b = 1;  // product of the sizes after dim
  int64_t cols() const { return a * b; }
};

inline MatrixShape matrix_shape(const at::Tensor& w, int64_t dim, const char* op, size_t i) {
  TORCH_CHECK(
      w.dim() >= 2, op, ": weights[", i, "] must have at least 2 dimensions, got shape ",
      w.sizes());
  TORCH_CHECK(
      dim >= 0 && dim < w.dim(), op, ": dims[", i, "] = ", dim, " is out of range for a weight of ",
      w.dim(), " dimensions");
  MatrixShape s;
  for (int64_t d = 0; d < dim; ++d) s.a *= w.size(d);
  s.h = w.size(dim);
  for (int64_t d = dim + 1; d < w.dim(); ++d) s.b *= w.size(d);
  return s;
}

// Where each layer's u and v start in the state, and its total length.
inline std::vector<int64_t> state_offsets(const std::vector<MatrixShape>& shapes, int64_t* total) {
  const int64_t layers = static_cast<int64_t>(shapes.size());
  std::vector<int64_t> offsets(shapes.size());
  int64_t at = layers;
  for (size_t i = 0; i < shapes.size(); ++i) {
    offsets[i] = at;
    at += shapes[i].h + shapes[i].cols();
  }
  *total = at;
  return offsets;
}

// Checks made by every backend's power iteration; returns the matrix shapes.
inline std::vector<MatrixShape> check_power_iteration(
    at::TensorList weights, at::TensorList us, at::TensorList vs, at::IntArrayRef dims,
    int64_t n_iter, double eps) {
  const char* op = kPowerIteration;
  TORCH_CHECK(!weights.empty(), op, ": `weights` is empty");
  TORCH_CHECK(
      us.size() == weights.size() && vs.size() == weights.size() && dims.size() == weights.size(),
      op, ": `weights`, `us`, `vs` and `dims` must have one entry per layer, got ",
      weights.size(), ", ", us.size(), ", ", vs.size(), " and ", dims.size());
  TORCH_CHECK(n_iter >= 0, op, ": `n_iter` must be >= 0, got ", n_iter);
  TORCH_CHECK(eps > 0, op, ": `eps` must be > 0, got ", eps);
  const c10::Device device = weights[0].device();
  std::vector<MatrixShape> shapes;
  shapes.reserve(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor& w = weights[i];
    TORCH_CHECK(
        is_float_dtype(w.scalar_type()), op, ": weights[", i, "] has dtype ", w.scalar_type(),
        "; expected float32, float64, float16 or bfloat16");
    const MatrixShape s = matrix_shape(w, dims[i], op, i);
    for (const auto& [name, t, n] :
         {std::tuple{"us", &us[i], s.h}, std::tuple{"vs", &vs[i], s.cols()}}) {
      TORCH_CHECK(
          t->dim() == 1 && t->size(0) == n, op, ": ", name, "[", i, "] must have shape (", n,
          ",) for a weight of shape ", w.sizes(), " and dim ", dims[i], ", got ", t->sizes());
      TORCH_CHECK(
          t->scalar_type() == w.scalar_type(), op, ": ", name, "[", i, "] has dtype ",
          t->scalar_type(), " but weights[", i, "] has ", w.scalar_type());
      TORCH_CHECK(
          t->device() == device && w.device() == device, op, ": weights[", i, "] and ", name,
          "[", i, "] must be on ", device);
    }
    shapes.push_back(s);
  }
  return shapes;
}

// Checks of the normalisation and its backward; returns the matrix shape.
inline MatrixShape check_scale(
    const at::Tensor& weight, const at::Tensor& state, int64_t index, int64_t offset,
    int64_t dim, const char* op) {
  TORCH_CHECK(
      is_float_dtype(weight.scalar_type()), op, ": `weight` has dtype ", weight.scalar_type(),
      "; expected float32, float64, float16 or bfloat16");
  TORCH_CHECK(
      state.dim() == 1 && state.scalar_type() == at::kDouble, op,
      ": `state` must be the 1-D float64 tensor the power iteration returns, got ",
      state.scalar_type(), " of shape ", state.sizes());
  TORCH_CHECK(
      state.device() == weight.device(), op, ": `state` is on ", state.device(),
      " but `weight` is on ", weight.device());
  const MatrixShape s = matrix_shape(weight, dim, op, 0);
  TORCH_CHECK(
      index >= 0 && index < state.size(0) && offset >= 0 &&
          offset + s.h + s.cols() <= state.size(0),
      op, ": `index` ", index, " / `offset` ", offset, " do not fit a state of ", state.size(0),
      " entries for a weight of shape ", weight.sizes());
  return s;
}

}  // namespace fastgan::spectral_norm
