// fastgan::bias_act and fastgan::bias_act_grad on the CPU.
//
// One pass over x (and grad): y = gain * f(x + b), or grad * gain * f^(k)(x + b).
// The elements are visited in memory order, split into runs that share one
// bias element (channels before the spatial dimensions) or that walk the bias
// vector (channels last, or a Linear layer's (N, C) output), so the inner
// loops are plain strided-free loops the compiler vectorises.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "../common/bias_act.h"
#include "../common/dtypes.h"
#include "vectorize.h"

namespace fastgan::cpu {
namespace {

using bias_act::Act;

constexpr const char* kForward = "fastgan::bias_act";
constexpr const char* kGrad = "fastgan::bias_act_grad";

// How the elements of x map onto the bias in memory order.
struct Layout {
  at::MemoryFormat format = at::MemoryFormat::Contiguous;
  int64_t channels = 1;  // bias length (1 without a bias)
  int64_t inner = 1;     // consecutive elements sharing one bias element
};

Layout layout_of(const at::Tensor& x, const std::optional<at::Tensor>& bias, int64_t dim) {
  Layout layout;
  // A channels-last x (a convolution's output) keeps its layout when the
  // bias runs along the channels; anything else is read contiguously.
  if (x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast) &&
      (!bias.has_value() || dim == 1)) {
    layout.format = at::MemoryFormat::ChannelsLast;
  }
  if (!bias.has_value()) {
    return layout;
  }
  layout.channels = x.size(dim);
  if (layout.format == at::MemoryFormat::ChannelsLast) {
    // dim is 1, the channels, stored last.
    layout.inner = 1;
  } else {
    for (int64_t d = dim + 1; d < x.dim(); ++d) {
      layout.inner *= x.size(d);
    }
  }
  return layout;
}

int64_t check_args(
    const at::Tensor& x, const std::optional<at::Tensor>& bias, int64_t dim, const char* op) {
  TORCH_CHECK_TYPE(
      is_float_dtype(x.scalar_type()), op, ": `x` has dtype ", x.scalar_type(),
      "; expected float32, float64, float16 or bfloat16");
  if (!bias.has_value()) {
    return 0;
  }
  const at::Tensor& b = *bias;
  TORCH_CHECK_VALUE(x.dim() >= 1, op, ": `x` must have at least one dimension when a bias is given");
  TORCH_CHECK_INDEX(
      dim >= -x.dim() && dim < x.dim(), op, ": `dim`=", dim, " is out of range for `x` of shape ",
      x.sizes());
  if (dim < 0) {
    dim += x.dim();
  }
  TORCH_CHECK_VALUE(
      b.dim() == 1 && b.size(0) == x.size(dim), op, ": `bias` must have shape (", x.size(dim),
      ",) to match `x` of shape ", x.sizes(), " along dim ", dim, ", got ", b.sizes());
  TORCH_CHECK_TYPE(
      b.scalar_type() == x.scalar_type(), op, ": `bias` has dtype ", b.scalar_type(),
      " but `x` has ", x.scalar_type());
  TORCH_CHECK(
      b.device() == x.device(), op, ": `bias` is on ", b.device(), " but `x` is on ", x.device());
  return dim;
}

// out[k] = gain * f^(K)(x[k] + b) (times grad[k] when K >= 1) for n elements,
// b either one value or a vector walked with k.
template <Act A, int K, bool VecBias, typename T, typename Acc>
FASTGAN_ALWAYS_INLINE inline void span(
    const T* x, const T* grad, const T* bvec, Acc bscalar, T* out, int64_t n, Acc alpha,
    Acc gain) {
  FASTGAN_UNROLL
  for (int64_t k = 0; k < n; ++k) {
    const Acc v = static_cast<Acc>(x[k]) + (VecBias ? static_cast<Acc>(bvec[k]) : bscalar);
    const Acc d = bias_act::derivative<A, K, Acc>(v, alpha);
    if constexpr (K == 0) {
      out[k] = static_cast<T>(gain * d);
    } else {
      out[k] = static_cast<T>(static_cast<Acc>(grad[k]) * gain * d);
    }
  }
}

// Elements [begin, end) in memory order, cut into runs of one bias layout.
template <Act A, int K, typename T, typename Acc>
FASTGAN_ALWAYS_INLINE inline void range(
    const T* x, const T* grad, const T* bias, T* out, int64_t begin, int64_t end,
    const Layout& layout, Acc alpha, Acc gain) {
  if (bias == nullptr) {
    span<A, K, false, T, Acc>(x + begin, grad ? grad + begin : nullptr, nullptr, Acc(0), out + begin,
                      end - begin, alpha, gain);
    return;
  }
  int64_t i = begin;
  while (i < end) {
    if (layout.inner == 1) {
      const int64_t c = i % layout.channels;
      const int64_t n = std::min(end - i, layout.channels - c);
      span<A, K, true, T, Acc>(x + i, grad ? grad + i : nullptr, bias + c, Acc(0), out + i, n, alpha,
                       gain);
      i += n;
    } else {
      const int64_t block = i / layout.inner;
      const int64_t n = std::min(end - i, (block + 1) * layout.inner - i);
      const Acc b = static_cast<Acc>(bias[block % layout.channels]);
      span<A, K, false, T, Acc>(x + i, grad ? grad + i : nullptr, nullptr, b, out + i, n, alpha, gain);
      i += n;
    }
  }
}

// Inlined into each run_range below, so that the AVX2 clone holds the loops.
template <int K, typename T, typename Acc>
FASTGAN_ALWAYS_INLINE inline void range_for(
    Act act, const T* x, const T* grad, const T* bias, T* out, int64_t begin, int64_t end,
    const Layout& layout, Acc alpha, Acc gain) {
#define FASTGAN_ACT_CASE(A) \
  case A:                   \
    return range<A, K, T, Acc>(x, grad, bias, out, begin, end, layout, alpha, gain);
  switch (act) {
    FASTGAN_ACT_CASE(Act::kLinear)
    FASTGAN_ACT_CASE(Act::kRelu)
    FASTGAN_ACT_CASE(Act::kLrelu)
    FASTGAN_ACT_CASE(Act::kTanh)
    FASTGAN_ACT_CASE(Act::kSigmoid)
    FASTGAN_ACT_CASE(Act::kElu)
    FASTGAN_ACT_CASE(Act::kSelu)
    FASTGAN_ACT_CASE(Act::kSoftplus)
    FASTGAN_ACT_CASE(Act::kSwish)
  }
#undef FASTGAN_ACT_CASE
}

// float and double, compiled for AVX2 as well as the baseline.
#define FASTGAN_BIAS_ACT_CLONE(T)                                                              \
  FASTGAN_CPU_CLONES void run_range(                                                           \
      Act act, int order, const T* x, const T* grad, const T* bias, T* out, int64_t begin,     \
      int64_t end, const Layout& layout, T alpha, T gain) {                                    \
    switch (order) {                                                                           \
      case 0: return range_for<0, T, T>(act, x, grad, bias, out, begin, end, layout, alpha, gain); \
      case 1: return range_for<1, T, T>(act, x, grad, bias, out, begin, end, layout, alpha, gain); \
      case 2: return range_for<2, T, T>(act, x, grad, bias, out, begin, end, layout, alpha, gain); \
      default: return range_for<3, T, T>(act, x, grad, bias, out, begin, end, layout, alpha, gain); \
    }                                                                                          \
  }
FASTGAN_BIAS_ACT_CLONE(float)
FASTGAN_BIAS_ACT_CLONE(double)
#undef FASTGAN_BIAS_ACT_CLONE

// float16 / bfloat16: computed in float.
template <typename T>
void run_range(
    Act act, int order, const T* x, const T* grad, const T* bias, T* out, int64_t begin,
    int64_t end, const Layout& layout, float alpha, float gain) {
  switch (order) {
    case 0: return range_for<0, T, float>(act, x, grad, bias, out, begin, end, layout, alpha, gain);
    case 1: return range_for<1, T, float>(act, x, grad, bias, out, begin, end, layout, alpha, gain);
    case 2: return range_for<2, T, float>(act, x, grad, bias, out, begin, end, layout, alpha, gain);
    default: return range_for<3, T, float>(act, x, grad, bias, out, begin, end, layout, alpha, gain);
  }
}

at::Tensor run(
    const at::Tensor* grad, const at::Tensor& x, const std::optional<at::Tensor>& bias,
    c10::string_view act_name, double alpha, double gain, int64_t dim, int64_t order,
    const char* op) {
  const Act act = bias_act::parse_act(act_name, op);
  dim = check_args(x, bias, dim, op);
  const Layout layout = layout_of(x, bias, dim);
  const at::Tensor xc = x.contiguous(layout.format);
  at::Tensor gc;
  if (grad != nullptr) {
    TORCH_CHECK_VALUE(
        grad->sizes() == x.sizes(), op, ": `grad` has shape ", grad->sizes(), " but `x` has ",
        x.sizes());
    TORCH_CHECK_TYPE(
        grad->scalar_type() == x.scalar_type(), op, ": `grad` has dtype ", grad->scalar_type(),
        " but `x` has ", x.scalar_type());
    TORCH_CHECK(
        grad->device() == x.device(), op, ": `grad` is on ", grad->device(), " but `x` is on ",
        x.device());
    gc = grad->contiguous(layout.format);
  }
  const at::Tensor bc = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(layout.format));
  const int64_t n = x.numel();
  if (n == 0) {
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), kForward, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    const scalar_t* gp = gc.defined() ? gc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* bp = bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op_ = out.data_ptr<scalar_t>();
    const auto a = static_cast<acc_t>(alpha);
    const auto g = static_cast<acc_t>(gain);
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      run_range(act, static_cast<int>(order), xp, gp, bp, op_, begin, end, layout, a, g);
    });
  });
  return out;
}

at::Tensor bias_act_forward(
    const at::Tensor& x, const std::optional<at::Tensor>& bias, c10::string_view act,
    double alpha, double gain, int64_t dim) {
  return run(nullptr, x, bias, act, alpha, gain, dim, 0, kForward);
}

at::Tensor bias_act_grad(
    const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& bias,
    c10::string_view act, double alpha, double gain, int64_t dim, int64_t order) {
  TORCH_CHECK_VALUE(
      order >= 1 && order <= bias_act::kMaxOrder, kGrad, ": `order` must be 1 to ",
      bias_act::kMaxOrder, ", got ", order);
  return run(&grad, x, bias, act, alpha, gain, dim, order, kGrad);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("bias_act", &bias_act_forward);
  m.impl("bias_act_grad", &bias_act_grad);
}

}  // namespace fastgan::cpu
