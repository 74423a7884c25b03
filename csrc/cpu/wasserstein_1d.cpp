// fastgan::wasserstein_1d on the CPU: exact 1-D optimal transport.
//
// For each problem b of a batch, with atoms u (n) and v (m) and weights that
// sum to the same mass, the cost is the integral over t of
// |F_u^{-1}(t) - F_v^{-1}(t)|^p: sort both sides, then walk the merged
// breakpoints of the two cumulative weight sequences (the quantile
// functions are constant between them). One sort and one walk per problem,
// problems in parallel, accumulated in double. The same walk gives the
// gradients: with respect to an atom, the length of every segment it spans
// times d|d|^p/dd; with respect to a cumulative weight (a breakpoint), the
// cost of the segment that ends there minus that of the one that starts
// there, summed from the end for the weights themselves.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <cmath>
#include <cstdint>
#include <utility>
#include <optional>
#include <tuple>
#include <vector>

#include "../common/dtypes.h"

namespace fastgan::cpu {
namespace {

constexpr const char* kOp = "fastgan::wasserstein_1d";

inline double cost_of(double d, double p) {
  const double a = std::abs(d);
  return p == 1.0 ? a : (p == 2.0 ? a * a : std::pow(a, p));
}

// d|d|^p / dd
inline double dcost_of(double d, double p) {
  if (d == 0.0) {
    return 0.0;
  }
  const double s = d > 0.0 ? 1.0 : -1.0;
  return p == 1.0 ? s : (p == 2.0 ? 2.0 * d : s * p * std::pow(std::abs(d), p - 1.0));
}

struct Side {
  std::vector<int64_t> order;  // atoms sorted by value
  std::vector<double> value;   // sorted values
  std::vector<double> weight;  // weights in sorted order
  double mass = 1.0;
  bool finite_values = true;
  bool valid_weights = true;  // finite and >= 0
};

// Bad input found while loading a problem, reported once after the pass.
enum Problem : int { kOk = 0, kValues, kWeights, kZeroMass, kMass };

// Sorts one side. The permutation is kept only when weights or gradients
// need it; otherwise the values alone are sorted (about 1.5x faster).
template <typename scalar_t>
void load_side(const scalar_t* x, const scalar_t* w, int64_t n, bool need_order, Side& s) {
  s.value.resize(n);
  s.weight.assign(n, 1.0 / static_cast<double>(n));
  s.mass = 1.0;
  s.finite_values = true;
  s.valid_weights = true;
  // The checks ride on the pass that reads the data anyway.
  // x - x is 0 for every finite x and NaN for NaN or +-inf: unlike a sum of
  // the values, it cannot overflow for finite values near the dtype's max.
  double sum = 0.0;
  for (int64_t k = 0; k < n; ++k) {
    const double xk = static_cast<double>(x[k]);
    sum += xk - xk;
  }
  s.finite_values = sum == 0.0;
  if (w != nullptr) {
    double mass = 0.0;
    bool negative = false;
    for (int64_t k = 0; k < n; ++k) {
      const double wk = static_cast<double>(w[k]);
      mass += wk;
      negative |= wk < 0.0;
    }
    s.mass = mass;
    s.valid_weights = std::isfinite(mass) && !negative;
  }
  if (!need_order) {
    s.order.clear();
    for (int64_t k = 0; k < n; ++k) {
      s.value[k] = static_cast<double>(x[k]);
    }
    std::sort(s.value.begin(), s.value.end());
    return;
  }
  // (value, index) pairs sort without chasing pointers; ties go by index.
  std::vector<std::pair<double, int64_t>> pairs(n);
  for (int64_t k = 0; k < n; ++k) {
    pairs[k] = {static_cast<double>(x[k]), k};
  }
  std::sort(pairs.begin(), pairs.end());
  s.order.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    s.value[k] = pairs[k].first;
    s.order[k] = pairs[k].second;
    if (w != nullptr) {
      s.weight[k] = static_cast<double>(w[pairs[k].second]);
    }
  }
}

// The cost of one problem; with gradients, also d cost / d (values, weights)
// in the input order (gu, gv of n and m; gwu, gwv likewise, or nullptr).
template <typename scalar_t>
double solve(
    const Side& u, const Side& v, double p, scalar_t* gu, scalar_t* gv, scalar_t* gwu,
    scalar_t* gwv, std::vector<double>& breaks_u, std::vector<double>& breaks_v) {
  const int64_t n = static_cast<int64_t>(u.value.size());
  const int64_t m = static_cast<int64_t>(v.value.size());
  const bool grads = gu != nullptr;
  const bool weight_grads = gwu != nullptr;
  if (weight_grads) {
    breaks_u.assign(n, 0.0);
    breaks_v.assign(m, 0.0);
  }
  int64_t i = 0, j = 0;
  double cu = u.weight[0], cv = v.weight[0], t = 0.0, total = 0.0;
  while (true) {
    const double next = std::min(cu, cv);
    const double d = u.value[i] - v.value[j];
    const double c = cost_of(d, p);
    const double dt = next - t;
    if (dt > 0.0) {
      total += dt * c;
      if (grads) {
        const double g = dt * dcost_of(d, p);
        gu[u.order[i]] += static_cast<scalar_t>(g);
        gv[v.order[j]] -= static_cast<scalar_t>(g);
      }
      t = next;
    }
    const bool end_u = cu <= cv;
    const bool end_v = cv <= cu;
    const bool last_u = i + 1 == n;
    const bool last_v = j + 1 == m;
    if (weight_grads) {
      // Moving u's breakpoint right by dt keeps atom i over [t, t + dt]
      // instead of atom i + 1, against whichever v atom follows t (past
      // the last breakpoint, the last atoms extend). Where both sides
      // break at once this is the one-sided derivative with the other
      // breakpoint held still.
      const int64_t jn = end_v && !last_v ? j + 1 : j;
      const int64_t in = end_u && !last_u ? i + 1 : i;
      if (end_u) {
        const double keep = cost_of(u.value[i] - v.value[jn], p);
        breaks_u[i] = last_u ? keep : keep - cost_of(u.value[i + 1] - v.value[jn], p);
      }
      if (end_v) {
        const double keep = cost_of(u.value[in] - v.value[j], p);
        breaks_v[j] = last_v ? keep : keep - cost_of(u.value[in] - v.value[j + 1], p);
      }
    }
    if ((end_u && last_u) || (end_v && last_v)) {
      break;
    }
    if (end_u) {
      cu += u.weight[++i];
    }
    if (end_v) {
      cv += v.weight[++j];
    }
  }
  if (weight_grads) {
    // The last breakpoints of both sides are the total mass, equal up to
    // rounding; whichever the walk reached first, moving either one right
    // extends the segment of the two last atoms. (This fixes the constant
    // by which the weights' gradients are otherwise defined.)
    const double last = cost_of(u.value[n - 1] - v.value[m - 1], p);
    breaks_u[n - 1] = last;
    breaks_v[m - 1] = last;
    // d/dw_k = sum over the breakpoints at and after k in sorted order.
    double acc = 0.0;
    for (int64_t k = n - 1; k >= 0; --k) {
      acc += breaks_u[k];
      gwu[u.order[k]] = static_cast<scalar_t>(acc);
    }
    acc = 0.0;
    for (int64_t k = m - 1; k >= 0; --k) {
      acc += breaks_v[k];
      gwv[v.order[k]] = static_cast<scalar_t>(acc);
    }
  }
  return total;
}

void check_side(const at::Tensor& x, const std::optional<at::Tensor>& w, const char* xn, const char* wn) {
  TORCH_CHECK_TYPE(
      x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, kOp, ": `", xn,
      "` has dtype ", x.scalar_type(), "; expected float32 or float64");
  TORCH_CHECK_VALUE(
      x.dim() == 2 && x.size(1) > 0, kOp, ": `", xn, "` must have shape (B, n) with n >= 1, got ",
      x.sizes());
  if (w.has_value()) {
    TORCH_CHECK_VALUE(
        w->sizes() == x.sizes(), kOp, ": `", wn, "` has shape ", w->sizes(), " but `", xn,
        "` has ", x.sizes());
    TORCH_CHECK_TYPE(
        w->scalar_type() == x.scalar_type(), kOp, ": `", wn, "` has dtype ", w->scalar_type(),
        " but `", xn, "` has ", x.scalar_type());
    TORCH_CHECK(w->device() == x.device(), kOp, ": `", wn, "` and `", xn, "` are on different devices");
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> wasserstein_1d(
    const at::Tensor& u_values, const at::Tensor& v_values,
    const std::optional<at::Tensor>& u_weights, const std::optional<at::Tensor>& v_weights,
    double p, bool with_grad) {
  check_side(u_values, u_weights, "u_values", "u_weights");
  check_side(v_values, v_weights, "v_values", "v_weights");
  TORCH_CHECK_VALUE(
      u_values.size(0) == v_values.size(0), kOp, ": `u_values` has ", u_values.size(0),
      " problems but `v_values` has ", v_values.size(0));
  TORCH_CHECK_TYPE(
      u_values.scalar_type() == v_values.scalar_type(), kOp, ": `u_values` and `v_values` differ in dtype");
  TORCH_CHECK(u_values.device() == v_values.device(), kOp, ": `u_values` and `v_values` are on different devices");
  TORCH_CHECK_VALUE(
      std::isfinite(p) && p >= 1.0, kOp, ": `p` must be finite and >= 1, got ", p);
  TORCH_CHECK_VALUE(
      u_weights.has_value() == v_weights.has_value(), kOp,
      ": give both `u_weights` and `v_weights` or neither (uniform)");
  const int64_t batch = u_values.size(0);
  const int64_t n = u_values.size(1);
  const int64_t m = v_values.size(1);
  const at::Tensor u = u_values.contiguous();
  const at::Tensor v = v_values.contiguous();
  const at::Tensor wu = u_weights.has_value() ? u_weights->contiguous() : at::Tensor();
  const at::Tensor wv = v_weights.has_value() ? v_weights->contiguous() : at::Tensor();
  at::Tensor cost = at::empty({batch}, u.options());
  // Gradients not asked for come back empty.
  at::Tensor gu = at::empty({0}, u.options()), gv = at::empty({0}, u.options());
  at::Tensor gwu = at::empty({0}, u.options()), gwv = at::empty({0}, u.options());
  if (with_grad) {
    gu = at::zeros_like(u);
    gv = at::zeros_like(v);
    if (wu.defined()) {
      gwu = at::zeros_like(u);
      gwv = at::zeros_like(v);
    }
  }
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), kOp, [&] {
    const scalar_t* up = u.const_data_ptr<scalar_t>();
    const scalar_t* vp = v.const_data_ptr<scalar_t>();
    const scalar_t* wup = wu.defined() ? wu.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* wvp = wv.defined() ? wv.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* costp = cost.data_ptr<scalar_t>();
    const bool need_order = with_grad || wup != nullptr;
    const double tolerance =
        std::max(1e-6, 4.0 * std::numeric_limits<scalar_t>::epsilon() * std::sqrt(double(n + m)));
    std::atomic<int> problem{kOk};
    std::atomic<int64_t> where{-1};
    // Checks a loaded problem; false (and the first problem recorded) if bad.
    auto valid = [&](const Side& su, const Side& sv, int64_t b) {
      int code = kOk;
      if (!su.finite_values || !sv.finite_values) {
        code = kValues;
      } else if (!su.valid_weights || !sv.valid_weights) {
        code = kWeights;
      } else if (su.mass <= 0.0 || sv.mass <= 0.0) {
        code = kZeroMass;
      } else if (std::abs(su.mass - sv.mass) > tolerance * std::max(su.mass, sv.mass)) {
        code = kMass;
      }
      if (code != kOk) {
        int expected = kOk;
        if (problem.compare_exchange_strong(expected, code)) {
          where = b;
        }
      }
      return code == kOk;
    };
    auto grad_ptrs = [&](int64_t b, scalar_t** g) {
      if (with_grad) {
        g[0] = gu.data_ptr<scalar_t>() + b * n;
        g[1] = gv.data_ptr<scalar_t>() + b * m;
        if (wup != nullptr) {
          g[2] = gwu.data_ptr<scalar_t>() + b * n;
          g[3] = gwv.data_ptr<scalar_t>() + b * m;
        }
      }
    };
    if (batch == 1) {
      // One problem: its two sides sort in parallel.
      Side su, sv;
      at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
        for (int64_t side = begin; side < end; ++side) {
          if (side == 0) {
            load_side(up, wup, n, need_order, su);
          } else {
            load_side(vp, wvp, m, need_order, sv);
          }
        }
      });
      if (valid(su, sv, 0)) {
        std::vector<double> breaks_u, breaks_v;
        scalar_t* g[4] = {nullptr, nullptr, nullptr, nullptr};
        grad_ptrs(0, g);
        costp[0] = static_cast<scalar_t>(solve(su, sv, p, g[0], g[1], g[2], g[3], breaks_u, breaks_v));
      }
    } else {
      // Several: one problem per task, about one sort of 2^15 elements per task.
    const int64_t grain = std::max<int64_t>(1, 32768 / (n + m));
    at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
      Side su, sv;
      std::vector<double> breaks_u, breaks_v;
      for (int64_t b = begin; b < end; ++b) {
        load_side(up + b * n, wup ? wup + b * n : nullptr, n, need_order, su);
        load_side(vp + b * m, wvp ? wvp + b * m : nullptr, m, need_order, sv);
        if (!valid(su, sv, b)) {
          continue;
        }
        scalar_t* g[4] = {nullptr, nullptr, nullptr, nullptr};
        grad_ptrs(b, g);
        costp[b] = static_cast<scalar_t>(solve(su, sv, p, g[0], g[1], g[2], g[3], breaks_u, breaks_v));
      }
    });
    }
    const int64_t b = where.load();
    switch (problem.load()) {
      case kValues:
        TORCH_CHECK_VALUE(false, kOp, ": `u_values` or `v_values` of problem ", b, " contains NaN or infinite values");
      case kWeights:
        TORCH_CHECK_VALUE(false, kOp, ": `u_weights` or `v_weights` of problem ", b, " has negative, NaN or infinite weights");
      case kZeroMass:
        TORCH_CHECK_VALUE(false, kOp, ": the weights of problem ", b, " have zero total mass");
      case kMass:
        TORCH_CHECK_VALUE(
            false, kOp, ": `u_weights` and `v_weights` of problem ", b,
            " have unequal mass (relative difference above ", tolerance, ")");
      default:
        break;
    }
  });
  return {cost, gu, gv, gwu, gwv};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("wasserstein_1d", &wasserstein_1d);
}

}  // namespace fastgan::cpu
