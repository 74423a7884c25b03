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

#include "checks.h"
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

inline MatrixShape matrix_shape(const at::Tensor& w, int64_t dim, const char* op, ArgName arg) {
  TORCH_CHECK_VALUE(
      w.dim() >= 2, op, ": ", arg, " must have at least 2 dimensions, got shape ", w.sizes());
  TORCH_CHECK_INDEX(
      dim >= 0 && dim < w.dim(), op, ": dim ", dim, " is out of range for ", arg, " of ",
      w.dim(), " dimensions");
  // The size products are checked: an empty weight's other sizes are not
  // bounded by its element count.
  MatrixShape s;
  for (int64_t d = 0; d < dim; ++d) s.a = checked_mul(s.a, w.size(d), op, "the weight's size product");
  s.h = w.size(dim);
  for (int64_t d = dim + 1; d < w.dim(); ++d) s.b = checked_mul(s.b, w.size(d), op, "the weight's size product");
  checked_mul(s.a, s.b, op, "the weight's column count");
  return s;
}

// Where each layer's u and v start in the state, and its total length.
inline std::vector<int64_t> state_offsets(const std::vector<MatrixShape>& shapes, int64_t* total) {
  const int64_t layers = static_cast<int64_t>(shapes.size());
  std::vector<int64_t> offsets(shapes.size());
  int64_t at = layers;
  for (size_t i = 0; i < shapes.size(); ++i) {
    offsets[i] = at;
    TORCH_CHECK_VALUE(
        !c10::add_overflows(at, shapes[i].h, &at) && !c10::add_overflows(at, shapes[i].cols(), &at),
        kPowerIteration, ": the state of these weights has more than 2^63 entries");
  }
  *total = at;
  return offsets;
}

// Checks made by every backend's power iteration; returns the matrix shapes.
inline std::vector<MatrixShape> check_power_iteration(
    at::TensorList weights, at::TensorList us, at::TensorList vs, at::IntArrayRef dims,
    int64_t n_iter, double eps) {
  const char* op = kPowerIteration;
  TORCH_CHECK_VALUE(!weights.empty(), op, ": `weights` is empty");
  TORCH_CHECK_VALUE(
      us.size() == weights.size() && vs.size() == weights.size() && dims.size() == weights.size(),
      op, ": `weights`, `us`, `vs` and `dims` must have one entry per layer, got ",
      weights.size(), ", ", us.size(), ", ", vs.size(), " and ", dims.size());
  TORCH_CHECK_VALUE(n_iter >= 0, op, ": `n_iter` must be >= 0, got ", n_iter);
  TORCH_CHECK_VALUE(eps > 0, op, ": `eps` must be > 0, got ", eps);
  const at::Tensor& first = weights[0];
  std::vector<MatrixShape> shapes;
  shapes.reserve(weights.size());
  for (size_t l = 0; l < weights.size(); ++l) {
    const int64_t i = static_cast<int64_t>(l);
    const at::Tensor& w = weights[l];
    TORCH_CHECK_TYPE(
        is_float_dtype(w.scalar_type()), op, ": weights[", i, "] has dtype ", w.scalar_type(),
        "; expected float32, float64, float16 or bfloat16");
    check_same_device(w, {"weights", i}, first, {"weights", 0}, op);
    const MatrixShape s = matrix_shape(w, dims[l], op, {"weights", i});
    // u and v are read, then written in place (through a contiguous copy,
    // written back, when they are strided): each element needs its own memory.
    for (const auto& [name, t, n] :
         {std::tuple{"us", &us[l], s.h}, std::tuple{"vs", &vs[l], s.cols()}}) {
      TORCH_CHECK_VALUE(
          t->dim() == 1 && t->size(0) == n, op, ": ", name, "[", i, "] must have shape (", n,
          ",) for a weight of shape ", w.sizes(), " and dim ", dims[l], ", got ", t->sizes());
      TORCH_CHECK_TYPE(
          t->scalar_type() == w.scalar_type(), op, ": ", name, "[", i, "] has dtype ",
          t->scalar_type(), " but weights[", i, "] has ", w.scalar_type());
      check_same_device(*t, {name, i}, first, {"weights", 0}, op);
      check_writable(*t, op, {name, i});
    }
    check_no_overlap(us[l], {"us", i}, vs[l], {"vs", i}, op);
    shapes.push_back(s);
  }
  return shapes;
}

// The argument names of a normalisation's weight, state, index and offset.
struct ScaleArgs {
  ArgName weight{"weight"}, state{"state"}, index{"index"}, offset{"offset"};
};

// Checks of the normalisation and its backward; returns the matrix shape.
//
// The kernels read the power iteration's state through its data pointer, so
// it must be 1-D, float64, contiguous and on the weight's device, with sigma
// at `index` and the layer's u (H entries) and v (K) from `offset`; the
// bounds are checked without forming offset + H + K, which can overflow.
inline MatrixShape check_scale(
    const at::Tensor& weight, const at::Tensor& state, int64_t index, int64_t offset,
    int64_t dim, const char* op, const ScaleArgs& args = {}) {
  TORCH_CHECK_TYPE(
      is_float_dtype(weight.scalar_type()), op, ": ", args.weight, " has dtype ",
      weight.scalar_type(), "; expected float32, float64, float16 or bfloat16");
  const MatrixShape s = matrix_shape(weight, dim, op, args.weight);
  TORCH_CHECK_TYPE(
      state.scalar_type() == at::kDouble, op, ": ", args.state,
      " must be the float64 tensor the power iteration returns, got ", state.scalar_type());
  TORCH_CHECK_VALUE(
      state.dim() == 1, op, ": ", args.state,
      " must be the 1-D tensor the power iteration returns, got shape ", state.sizes());
  check_contiguous(state, op, args.state);
  check_same_device(state, args.state, weight, args.weight, op);
  const int64_t size = state.size(0);
  TORCH_CHECK_VALUE(
      range_fits(index, 1, size) && range_fits(offset, s.h, size) &&
          range_fits(offset + s.h, s.cols(), size),
      op, ": ", args.index, " = ", index, " / ", args.offset, " = ", offset,
      " do not fit a state of ", size, " entries for ", args.weight, " of shape ",
      weight.sizes(), " (sigma at the index, then its ", s.h, " + ", s.cols(),
      " entries of u and v from the offset)");
  return s;
}

// The backward's incoming gradient, read like the weight: same shape, dtype
// and device.
inline void check_grad(const at::Tensor& grad, const at::Tensor& weight, const char* op) {
  TORCH_CHECK_VALUE(
      grad.sizes() == weight.sizes(), op, ": `grad` must have the shape of `weight` (",
      weight.sizes(), "), got ", grad.sizes());
  TORCH_CHECK_TYPE(
      grad.scalar_type() == weight.scalar_type(), op, ": `grad` has dtype ", grad.scalar_type(),
      " but `weight` has ", weight.scalar_type());
  check_same_device(grad, {"grad"}, weight, {"weight"}, op);
}

}  // namespace fastgan::spectral_norm
