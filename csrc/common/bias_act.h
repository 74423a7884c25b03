// Bias + activation math shared by every backend.
//
// bias_act computes y = gain * f(x + b), the bias broadcast along one
// dimension; its derivatives of order k are gain * f^(k)(x + b). For
// linear, relu and leaky relu f'' = 0 almost everywhere, which is what lets
// the double backward of a critic skip the path back through its forward.
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>

#include "macros.h"

namespace fastgan::bias_act {

enum class Act : int {
  kLinear = 0,
  kRelu,
  kLrelu,
  kTanh,
  kSigmoid,
  kElu,
  kSelu,
  kSoftplus,
  kSwish,
};

// The highest derivative order the kernels compute: what a gradient penalty
// through a curved activation needs is 2; gradgradcheck of that takes 3.
constexpr int kMaxOrder = 3;

// Activations whose second derivative is zero almost everywhere.
inline bool piecewise_linear(Act act) {
  return act == Act::kLinear || act == Act::kRelu || act == Act::kLrelu;
}

inline Act parse_act(c10::string_view name, const char* op_name) {
  if (name == "linear") return Act::kLinear;
  if (name == "relu") return Act::kRelu;
  if (name == "lrelu") return Act::kLrelu;
  if (name == "tanh") return Act::kTanh;
  if (name == "sigmoid") return Act::kSigmoid;
  if (name == "elu") return Act::kElu;
  if (name == "selu") return Act::kSelu;
  if (name == "softplus") return Act::kSoftplus;
  if (name == "swish") return Act::kSwish;
  TORCH_CHECK_VALUE(
      false, op_name, ": unknown activation `act`='", name,
      "'; expected linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus or swish");
}

// SELU's fixed constants (Klambauer et al.), as torch.nn.SELU uses them.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

template <typename T>
FASTGAN_HOST_DEVICE inline T sigmoid(T x) {
  if (x >= T(0)) {
    return T(1) / (T(1) + std::exp(-x));
  }
  const T e = std::exp(x);
  return e / (T(1) + e);
}

// f^(K)(v) for K = 0, 1, 2, 3. `alpha` is the negative slope of lrelu and the
// saturation of elu; the other activations ignore it.
template <Act A, int K, typename T>
FASTGAN_HOST_DEVICE inline T derivative(T v, T alpha) {
  static_assert(K >= 0 && K <= kMaxOrder, "derivative order out of range");
  if constexpr (A == Act::kLinear) {
    return K == 0 ? v : (K == 1 ? T(1) : T(0));
  } else if constexpr (A == Act::kRelu) {
    // Written so that NaN passes through as torch's relu and its backward
    // (threshold_backward: zero where v <= 0) pass it.
    if constexpr (K == 0) return v < T(0) ? T(0) : v;
    if constexpr (K == 1) return v <= T(0) ? T(0) : T(1);
    return T(0);  // K >= 2
  } else if constexpr (A == Act::kLrelu) {
    // Both sides computed, then selected: a branch-free loop that vectorises.
    const T negative = v * alpha;
    if constexpr (K == 0) return v > T(0) ? v : negative;
    if constexpr (K == 1) return v > T(0) ? T(1) : alpha;
    return T(0);
  } else if constexpr (A == Act::kTanh) {
    const T y = std::tanh(v);
    if constexpr (K == 0) return y;
    if constexpr (K == 1) return T(1) - y * y;
    if constexpr (K == 2) return T(-2) * y * (T(1) - y * y);
    return (T(6) * y * y - T(2)) * (T(1) - y * y);
  } else if constexpr (A == Act::kSigmoid) {
    const T s = sigmoid(v);
    if constexpr (K == 0) return s;
    const T d1 = s * (T(1) - s);
    if constexpr (K == 1) return d1;
    if constexpr (K == 2) return d1 * (T(1) - T(2) * s);
    return d1 * (T(1) - T(6) * s + T(6) * s * s);
  } else if constexpr (A == Act::kElu || A == Act::kSelu) {
    const T a = A == Act::kSelu ? T(kSeluAlpha) : alpha;
    const T scale = A == Act::kSelu ? T(kSeluScale) : T(1);
    // expm1, not exp - 1: keeps the relative precision of small negative v.
    if constexpr (K == 0) return scale * (v > T(0) ? v : a * std::expm1(v));
    if constexpr (K == 1) return scale * (v > T(0) ? T(1) : a * std::exp(v));
    return v > T(0) ? T(0) : scale * a * std::exp(v);  // K >= 2
  } else if constexpr (A == Act::kSoftplus) {
    // log(1 + e^v) = max(v, 0) + log1p(e^-|v|): no overflow for large v.
    if constexpr (K == 0) return (v > T(0) ? v : T(0)) + std::log1p(std::exp(-std::abs(v)));
    const T s = sigmoid(v);
    if constexpr (K == 1) return s;
    if constexpr (K == 2) return s * (T(1) - s);
    return s * (T(1) - s) * (T(1) - T(2) * s);
  } else {  // swish (SiLU): v * sigmoid(v)
    const T s = sigmoid(v);
    if constexpr (K == 0) return v * s;
    const T d1 = s * (T(1) - s);
    const T d2 = d1 * (T(1) - T(2) * s);
    if constexpr (K == 1) return s + v * d1;
    if constexpr (K == 2) return T(2) * d1 + v * d2;
    return T(3) * d2 + v * d1 * (T(1) - T(6) * s + T(6) * s * s);
  }
}

}  // namespace fastgan::bias_act
