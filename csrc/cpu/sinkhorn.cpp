// Entropic optimal transport on the CPU: log-domain Sinkhorn whose cost is
// streamed, never stored.
//
// Every update is a softmin, out_i = -eps log sum_j exp(h_j - C_ij / eps),
// computed row by row over tiles of kTile columns with a running maximum
// and a rescaled running sum (the streaming log-sum-exp of flash
// attention): no n x m buffer, any eps without under- or overflow. C_ij
// comes either from an explicit cost matrix (read row by row; its
// transpose, made once, serves the column updates) or from point clouds,
// C(x, y) = |x - y|^p / p for p = 1, 2, recomputed per tile from x and a
// (d, m) copy of y so that the tile loops run along contiguous memory.
//
// The exponentials use a branch-free exp (Cody-Waite reduction and a
// Taylor polynomial, 2^k built from the exponent bits) that GCC
// vectorises inside the AVX2 clones; sums and maxima keep kLanes
// independent lanes for the same reason (a single accumulator is a serial
// dependency that the compiler may not reorder).
//
// Ops (schemas in csrc/fastgan.cpp):
//  - sinkhorn_log: POT's ot.bregman.sinkhorn_log on B problems, same update
//    order and stopping test, each problem stopping on its own.
//  - sinkhorn_softmin: the point-cloud softmin itself.
//  - sinkhorn_points: GeomLoss's symmetric eps-scaling loop (debiased or
//    not, balanced or unbalanced), optionally continued at the final eps
//    until a tolerance.
//  - sinkhorn_points_backward: the envelope gradients from the potentials,
//    one streaming pass per transport term.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "vectorize.h"

namespace fastgan::cpu {
namespace {

constexpr int kLanes = 8;
// Columns per tile: the tile's values (4 KiB in float64) stay in L1.
constexpr int64_t kTile = 512;
// GeomLoss's p = 1 cost, sqrt(max(|x - y|^2, 1e-8)): smooth where x = y.
constexpr double kMinSquaredDistance = 1e-8;

template <typename T>
struct ExpConstants;

template <>
struct ExpConstants<double> {
  using Bits = uint64_t;
  static constexpr double kLow = -708.0, kHigh = 709.0;
  static constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  static constexpr int kMantissa = 52, kBias = 1023, kDegree = 12;
};

template <>
struct ExpConstants<float> {
  using Bits = uint32_t;
  static constexpr float kLow = -87.0f, kHigh = 88.0f;
  static constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23
  static constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  static constexpr int kMantissa = 23, kBias = 127, kDegree = 7;
};

template <typename T, int N>
constexpr std::array<T, N + 1> inverse_factorials() {
  std::array<T, N + 1> c{};
  double f = 1.0;
  for (int k = 0; k <= N; ++k) {
    f = k == 0 ? 1.0 : f * k;
    c[k] = static_cast<T>(1.0 / f);
  }
  return c;
}

// The bits of `from` as a `To` (std::bit_cast, which C++17 lacks); compiles
// to a register move.
template <typename To, typename From>
FASTGAN_ALWAYS_INLINE inline To bits_as(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bits_as: sizes differ");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// exp(x) to about 1 ulp, 0 below the smallest normal result: x = k ln2 + r,
// |r| <= ln2 / 2, exp(r) by Taylor (degree 12 for double: truncation below
// 2e-16; 7 for float), 2^k written into the exponent field.
template <typename T>
FASTGAN_ALWAYS_INLINE inline T fast_exp(T x) {
  using C = ExpConstants<T>;
  using Bits = typename C::Bits;
  const bool underflow = x < C::kLow;
  x = x < C::kLow ? C::kLow : x;
  x = x > C::kHigh ? C::kHigh : x;
  T kd = x * T(1.4426950408889634) + C::kShifter;
  const Bits ki = bits_as<Bits>(kd);
  kd -= C::kShifter;
  const T r = (x - kd * C::kLn2Hi) - kd * C::kLn2Lo;
  // Horner on the Taylor coefficients 1/k!: one multiply and one add per
  // degree (folding 1/k into the recursion instead cost a third more).
  constexpr auto coef = inverse_factorials<T, C::kDegree>();
  T poly = coef[C::kDegree];
  for (int k = C::kDegree - 1; k >= 0; --k) {
    poly = poly * r + coef[k];
  }
  const T scale = bits_as<T>(static_cast<Bits>((ki + Bits(C::kBias)) << C::kMantissa));
  return underflow ? T(0) : poly * scale;
}

// Running log-sum-exp state of one row.
struct Lse {
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0.0;
  double value() const { return max + std::log(sum); }
};

// Folds values v[0, len) into the running state. v must hold a multiple of
// kLanes entries; the padding past len is set here to -inf.
template <typename T>
FASTGAN_ALWAYS_INLINE inline void lse_tile(T* v, int64_t len, Lse& state) {
  const int64_t padded = (len + kLanes - 1) / kLanes * kLanes;
  for (int64_t t = len; t < padded; ++t) {
    v[t] = -std::numeric_limits<T>::infinity();
  }
  T lane_max[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    lane_max[l] = -std::numeric_limits<T>::infinity();
  }
  for (int64_t t = 0; t < padded; t += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      lane_max[l] = v[t + l] > lane_max[l] ? v[t + l] : lane_max[l];
    }
  }
  T tile_max = lane_max[0];
  for (int l = 1; l < kLanes; ++l) {
    tile_max = lane_max[l] > tile_max ? lane_max[l] : tile_max;
  }
  if (!(tile_max > -std::numeric_limits<T>::infinity())) {
    return;  // nothing but zero weights in this tile
  }
  if (tile_max > state.max) {
    state.sum *= std::exp(state.max - static_cast<double>(tile_max));
    state.max = tile_max;
  }
  const T shift = static_cast<T>(state.max);
  T lane_sum[kLanes] = {};
  for (int64_t t = 0; t < padded; t += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      lane_sum[l] += fast_exp<T>(v[t + l] - shift);
    }
  }
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) {
    s += lane_sum[l];
  }
  state.sum += s;
}

// c[t] = C(x_i, y_{j0 + t}) for t < len; yt is (d, m).
template <typename T, int P, int D>
FASTGAN_ALWAYS_INLINE inline void point_costs(
    const T* xi, const T* yt, int64_t m, int64_t d, int64_t j0, int64_t len, T* c) {
  if constexpr (D > 0) {
    T xk[D];
    for (int k = 0; k < D; ++k) {
      xk[k] = xi[k];
    }
    for (int64_t t = 0; t < len; ++t) {
      T s = 0;
      for (int k = 0; k < D; ++k) {
        const T diff = xk[k] - yt[k * m + j0 + t];
        s += diff * diff;
      }
      c[t] = s;
    }
  } else {
    for (int64_t t = 0; t < len; ++t) {
      c[t] = 0;
    }
    for (int64_t k = 0; k < d; ++k) {
      const T xk = xi[k];
      const T* yk = yt + k * m + j0;
      for (int64_t t = 0; t < len; ++t) {
        const T diff = xk - yk[t];
        c[t] += diff * diff;
      }
    }
  }
  for (int64_t t = 0; t < len; ++t) {
    if constexpr (P == 2) {
      c[t] = T(0.5) * c[t];
    } else {
      const T s = c[t] < T(kMinSquaredDistance) ? T(kMinSquaredDistance) : c[t];
      c[t] = std::sqrt(s);
    }
  }
}

// out[i] = -eps log sum_j exp(h_j - C(x_i, y_j) / eps) for rows [i0, i1).
template <typename T, int P, int D>
FASTGAN_ALWAYS_INLINE inline void softmin_points_rows(
    const T* x, const T* yt, const T* h, int64_t m, int64_t d, T eps, T* out, int64_t i0,
    int64_t i1) {
  alignas(64) T buf[kTile + kLanes];
  const T inv_eps = T(1) / eps;
  for (int64_t i = i0; i < i1; ++i) {
    Lse state;
    for (int64_t j0 = 0; j0 < m; j0 += kTile) {
      const int64_t len = std::min(kTile, m - j0);
      point_costs<T, P, D>(x + i * d, yt, m, d, j0, len, buf);
      for (int64_t t = 0; t < len; ++t) {
        buf[t] = h[j0 + t] - buf[t] * inv_eps;
      }
      lse_tile<T>(buf, len, state);
    }
    out[i] = static_cast<T>(-static_cast<double>(eps) * state.value());
  }
}

// Envelope gradient rows: grad[i] = scale_i * sum_j w_ij dC/dx (x_i, y_j),
// w_ij = exp(h_j - C_ij / eps + f_i / eps) (the plan row over a_i, given
// the final potential f_i of the softmin that h and f belong to), added
// with sign `sign` into grad (n, d).
template <typename T, int P, int D>
FASTGAN_ALWAYS_INLINE inline void envelope_rows(
    const T* x, const T* yt, const T* h, const T* f, const T* scale, int64_t m, int64_t d, T eps,
    T sign, T* grad, int64_t i0, int64_t i1) {
  alignas(64) T c[kTile + kLanes];
  alignas(64) T w[kTile + kLanes];
  const T inv_eps = T(1) / eps;
  std::vector<double> acc_y(d);
  for (int64_t i = i0; i < i1; ++i) {
    const T fi = f[i] * inv_eps;
    double acc_w = 0.0;
    std::fill(acc_y.begin(), acc_y.end(), 0.0);
    for (int64_t j0 = 0; j0 < m; j0 += kTile) {
      const int64_t len = std::min(kTile, m - j0);
      const int64_t padded = (len + kLanes - 1) / kLanes * kLanes;
      point_costs<T, P, D>(x + i * d, yt, m, d, j0, len, c);
      for (int64_t t = 0; t < len; ++t) {
        T wt = fast_exp<T>(h[j0 + t] - c[t] * inv_eps + fi);
        if constexpr (P == 1) {
          // d|x - y| / dx = (x - y) / |x - y|, zero where GeomLoss clamps.
          wt = c[t] * c[t] > T(kMinSquaredDistance) ? wt / c[t] : T(0);
        }
        w[t] = wt;
      }
      for (int64_t t = len; t < padded; ++t) {
        w[t] = 0;
      }
      T lanes[kLanes] = {};
      for (int64_t t = 0; t < padded; t += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
          lanes[l] += w[t + l];
        }
      }
      for (int l = 0; l < kLanes; ++l) {
        acc_w += lanes[l];
      }
      for (int64_t k = 0; k < d; ++k) {
        const T* yk = yt + k * m + j0;
        T ly[kLanes] = {};
        int64_t t = 0;
        for (; t + kLanes <= len; t += kLanes) {
          for (int l = 0; l < kLanes; ++l) {
            ly[l] += w[t + l] * yk[t + l];
          }
        }
        double s = 0.0;
        for (; t < len; ++t) {
          s += static_cast<double>(w[t]) * yk[t];
        }
        for (int l = 0; l < kLanes; ++l) {
          s += ly[l];
        }
        acc_y[k] += s;
      }
    }
    const double si = static_cast<double>(sign) * scale[i];
    for (int64_t k = 0; k < d; ++k) {
      grad[i * d + k] += static_cast<T>(si * (acc_w * x[i * d + k] - acc_y[k]));
    }
  }
}

// Rows of an explicit cost: out[i] = -reg LSE_j(h_j - M_ij / reg) + base[i]
// scaled as POT's log-scalings: out[i] = base[i] - LSE_j(h_j - M_ij / reg).
template <typename T>
FASTGAN_ALWAYS_INLINE inline void lse_matrix_rows(
    const T* M, const T* h, const T* base, int64_t m, T inv_reg, T* out, int64_t i0, int64_t i1) {
  alignas(64) T buf[kTile + kLanes];
  for (int64_t i = i0; i < i1; ++i) {
    Lse state;
    const T* row = M + i * m;
    for (int64_t j0 = 0; j0 < m; j0 += kTile) {
      const int64_t len = std::min(kTile, m - j0);
      for (int64_t t = 0; t < len; ++t) {
        buf[t] = h[j0 + t] - row[j0 + t] * inv_reg;
      }
      lse_tile<T>(buf, len, state);
    }
    out[i] = static_cast<T>((base ? static_cast<double>(base[i]) : 0.0) - state.value());
  }
}

// sum_ij M_ij exp(u_i + v_j - M_ij / reg) over rows [i0, i1), in double.
template <typename T>
FASTGAN_ALWAYS_INLINE inline double transport_cost_rows(
    const T* M, const T* u, const T* v, int64_t m, T inv_reg, int64_t i0, int64_t i1) {
  double total = 0.0;
  for (int64_t i = i0; i < i1; ++i) {
    const T* row = M + i * m;
    const T ui = u[i];
    T lanes[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= m; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const T c = row[j + l];
        lanes[l] += c * fast_exp<T>(ui + v[j + l] - c * inv_reg);
      }
    }
    double s = 0.0;
    for (; j < m; ++j) {
      s += static_cast<double>(row[j]) * std::exp(static_cast<double>(ui + v[j] - row[j] * inv_reg));
    }
    for (int l = 0; l < kLanes; ++l) {
      s += lanes[l];
    }
    total += s;
  }
  return total;
}

// The vectorised entry points: float and double, AVX2 and baseline clones.
#define FASTGAN_SINKHORN_CLONES(T)                                                              \
  FASTGAN_CPU_CLONES void softmin_points(                                                       \
      int p, const T* x, const T* yt, const T* h, int64_t m, int64_t d, T eps, T* out,          \
      int64_t i0, int64_t i1) {                                                                 \
    if (p == 2) {                                                                               \
      if (d == 2) return softmin_points_rows<T, 2, 2>(x, yt, h, m, d, eps, out, i0, i1);       \
      return softmin_points_rows<T, 2, 0>(x, yt, h, m, d, eps, out, i0, i1);                   \
    }                                                                                           \
    if (d == 2) return softmin_points_rows<T, 1, 2>(x, yt, h, m, d, eps, out, i0, i1);         \
    return softmin_points_rows<T, 1, 0>(x, yt, h, m, d, eps, out, i0, i1);                     \
  }                                                                                             \
  FASTGAN_CPU_CLONES void envelope(                                                             \
      int p, const T* x, const T* yt, const T* h, const T* f, const T* scale, int64_t m,        \
      int64_t d, T eps, T sign, T* grad, int64_t i0, int64_t i1) {                              \
    if (p == 2) {                                                                               \
      if (d == 2)                                                                               \
        return envelope_rows<T, 2, 2>(x, yt, h, f, scale, m, d, eps, sign, grad, i0, i1);       \
      return envelope_rows<T, 2, 0>(x, yt, h, f, scale, m, d, eps, sign, grad, i0, i1);         \
    }                                                                                           \
    if (d == 2) return envelope_rows<T, 1, 2>(x, yt, h, f, scale, m, d, eps, sign, grad, i0, i1); \
    return envelope_rows<T, 1, 0>(x, yt, h, f, scale, m, d, eps, sign, grad, i0, i1);           \
  }                                                                                             \
  FASTGAN_CPU_CLONES void lse_matrix(                                                           \
      const T* M, const T* h, const T* base, int64_t m, T inv_reg, T* out, int64_t i0,          \
      int64_t i1) {                                                                             \
    lse_matrix_rows<T>(M, h, base, m, inv_reg, out, i0, i1);                                    \
  }                                                                                             \
  FASTGAN_CPU_CLONES double transport_cost(                                                     \
      const T* M, const T* u, const T* v, int64_t m, T inv_reg, int64_t i0, int64_t i1) {      \
    return transport_cost_rows<T>(M, u, v, m, inv_reg, i0, i1);                                 \
  }
FASTGAN_SINKHORN_CLONES(float)
FASTGAN_SINKHORN_CLONES(double)
#undef FASTGAN_SINKHORN_CLONES

// Rows per parallel task for rows of `cols` columns and `d` features.
int64_t row_grain(int64_t cols, int64_t d) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols * (d + 4)));
}

// ---------------------------------------------------------------- checks

void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(
      t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": `", name,
      "` has dtype ", t.scalar_type(), "; expected float32 or float64");
}

void check_like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name, const char* ref_name) {
  TORCH_CHECK_TYPE(
      t.scalar_type() == ref.scalar_type(), op, ": `", name, "` has dtype ", t.scalar_type(),
      " but `", ref_name, "` has ", ref.scalar_type());
  TORCH_CHECK(
      t.device() == ref.device(), op, ": `", name, "` is on ", t.device(), " but `", ref_name,
      "` is on ", ref.device());
}

void check_shape(const at::Tensor& t, at::IntArrayRef shape, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.sizes() == shape, op, ": `", name, "` must have shape ", shape, ", got ", t.sizes());
}

// NaN / Inf anywhere, or (weights) a negative entry: a clear error.
template <typename T>
void check_values(const at::Tensor& t, bool weights, const char* op, const char* name) {
  const T* p = t.const_data_ptr<T>();
  std::atomic<bool> not_finite{false}, negative{false};
  at::parallel_for(0, t.numel(), kGrain, [&](int64_t begin, int64_t end) {
    T s = 0;
    bool neg = false;
    for (int64_t k = begin; k < end; ++k) {
      s += p[k] * T(0);  // NaN and Inf survive, finite values vanish
      neg |= p[k] < T(0);
    }
    if (!std::isfinite(s)) not_finite = true;
    if (neg) negative = true;
  });
  TORCH_CHECK_VALUE(!not_finite.load(), op, ": `", name, "` contains NaN or infinite values");
  TORCH_CHECK_VALUE(!weights || !negative.load(), op, ": `", name, "` has negative weights");
}

void check_points(const at::Tensor& x, const at::Tensor& y, int64_t p, const char* op) {
  check_float(x, op, "x");
  check_like(y, x, op, "y", "x");
  TORCH_CHECK_VALUE(x.dim() == 3, op, ": `x` must have shape (B, n, d), got ", x.sizes());
  TORCH_CHECK_VALUE(y.dim() == 3, op, ": `y` must have shape (B, m, d), got ", y.sizes());
  TORCH_CHECK_VALUE(
      y.size(0) == x.size(0) && y.size(2) == x.size(2), op, ": `x` ", x.sizes(), " and `y` ",
      y.sizes(), " must share the batch and feature sizes");
  TORCH_CHECK_VALUE(p == 1 || p == 2, op, ": `p` must be 1 or 2, got ", p);
}

// (B, n, d) -> (B, d, n), contiguous.
at::Tensor feature_major(const at::Tensor& x) {
  return x.transpose(1, 2).contiguous();
}

// ---------------------------------------------------------------- POT's sinkhorn_log

constexpr const char* kLogOp = "fastgan::sinkhorn_log";

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> sinkhorn_log(
    const at::Tensor& a, const at::Tensor& b, const at::Tensor& M, double reg, int64_t max_iter,
    double tol) {
  check_float(M, kLogOp, "M");
  TORCH_CHECK_VALUE(M.dim() == 3, kLogOp, ": `M` must have shape (B, n, m), got ", M.sizes());
  const int64_t batch = M.size(0), n = M.size(1), m = M.size(2);
  check_like(a, M, kLogOp, "a", "M");
  check_like(b, M, kLogOp, "b", "M");
  check_shape(a, {batch, n}, kLogOp, "a");
  check_shape(b, {batch, m}, kLogOp, "b");
  TORCH_CHECK_VALUE(std::isfinite(reg) && reg > 0, kLogOp, ": `reg` must be finite and > 0, got ", reg);
  TORCH_CHECK_VALUE(max_iter >= 1, kLogOp, ": `max_iter` must be >= 1, got ", max_iter);
  TORCH_CHECK_VALUE(tol >= 0 && !std::isnan(tol), kLogOp, ": `tol` must be >= 0, got ", tol);
  TORCH_CHECK_VALUE(n > 0 && m > 0, kLogOp, ": `M` must have n, m >= 1, got ", M.sizes());
  const at::Tensor Mc = M.contiguous(), ac = a.contiguous(), bc = b.contiguous();
  at::Tensor u = at::zeros({batch, n}, M.options());
  at::Tensor v = at::zeros({batch, m}, M.options());
  at::Tensor cost = at::zeros({batch}, M.options());
  at::Tensor n_iter = at::zeros({batch}, M.options().dtype(at::kLong));
  at::Tensor err = at::zeros({batch}, M.options());
  at::Tensor converged = at::zeros({batch}, M.options().dtype(at::kBool));
  if (batch == 0) {
    return {u, v, cost, n_iter, err, converged};
  }
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), kLogOp, [&] {
    check_values<scalar_t>(Mc, false, kLogOp, "M");
    check_values<scalar_t>(ac, true, kLogOp, "a");
    check_values<scalar_t>(bc, true, kLogOp, "b");
    // The columns read M transposed: one copy, then rows again.
    const at::Tensor Mt = Mc.transpose(1, 2).contiguous();
    const scalar_t inv_reg = static_cast<scalar_t>(1.0 / reg);
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> loga(n), logb(m), col(m);
      for (int64_t p = b0; p < b1; ++p) {
        const scalar_t* Mp = Mc.const_data_ptr<scalar_t>() + p * n * m;
        const scalar_t* Mtp = Mt.const_data_ptr<scalar_t>() + p * n * m;
        const scalar_t* ap = ac.const_data_ptr<scalar_t>() + p * n;
        const scalar_t* bp = bc.const_data_ptr<scalar_t>() + p * m;
        scalar_t* up = u.data_ptr<scalar_t>() + p * n;
        scalar_t* vp = v.data_ptr<scalar_t>() + p * m;
        for (int64_t i = 0; i < n; ++i) loga[i] = std::log(ap[i]);
        for (int64_t j = 0; j < m; ++j) logb[j] = std::log(bp[j]);
        // col[j] = -LSE_i(u_i - M_ij / reg): v = log b + col.
        auto column_pass = [&] {
          at::parallel_for(0, m, row_grain(n, 1), [&](int64_t j0, int64_t j1) {
            lse_matrix(Mtp, up, nullptr, n, inv_reg, col.data(), j0, j1);
          });
        };
        // POT checks the column marginal after iterations 0, 10, 20, ...;
        // the column pass that starts the next iteration computes it.
        auto marginal_error = [&] {
          double e = 0.0;
          for (int64_t j = 0; j < m; ++j) {
            const double r = std::exp(static_cast<double>(vp[j]) - col[j]) - bp[j];
            e += r * r;
          }
          return std::sqrt(e);
        };
        int64_t it = 0;
        bool done = false;
        double last_err = std::numeric_limits<double>::infinity();
        for (; it < max_iter; ++it) {
          column_pass();
          if (it > 0 && (it - 1) % 10 == 0) {
            last_err = marginal_error();
            if (last_err < tol) {
              done = true;
              it -= 1;
              break;
            }
          }
          for (int64_t j = 0; j < m; ++j) vp[j] = logb[j] + col[j];
          at::parallel_for(0, n, row_grain(m, 1), [&](int64_t i0, int64_t i1) {
            lse_matrix(Mp, vp, loga.data(), m, inv_reg, up, i0, i1);
          });
        }
        if (!done) {
          it = max_iter - 1;
          if (it % 10 == 0) {
            column_pass();
            last_err = marginal_error();
            done = last_err < tol;
          }
        }
        n_iter.data_ptr<int64_t>()[p] = it;
        err.data_ptr<scalar_t>()[p] = static_cast<scalar_t>(last_err);
        converged.data_ptr<bool>()[p] = done;
        const double total = at::parallel_reduce(
            0, n, row_grain(m, 1), 0.0,
            [&](int64_t i0, int64_t i1, double acc) {
              return acc + transport_cost(Mp, up, vp, m, inv_reg, i0, i1);
            },
            std::plus<double>());
        cost.data_ptr<scalar_t>()[p] = static_cast<scalar_t>(total);
      }
    });
  });
  return {u, v, cost, n_iter, err, converged};
}

// ---------------------------------------------------------------- point clouds

constexpr const char* kSoftminOp = "fastgan::sinkhorn_softmin";

at::Tensor sinkhorn_softmin(const at::Tensor& x, const at::Tensor& y, const at::Tensor& h, double eps, int64_t p) {
  check_points(x, y, p, kSoftminOp);
  check_like(h, x, kSoftminOp, "h", "x");
  check_shape(h, {y.size(0), y.size(1)}, kSoftminOp, "h");
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, kSoftminOp, ": `eps` must be finite and > 0, got ", eps);
  const int64_t batch = x.size(0), n = x.size(1), m = y.size(1), d = x.size(2);
  at::Tensor out = at::empty({batch, n}, x.options());
  if (out.numel() == 0) {
    return out;
  }
  TORCH_CHECK_VALUE(m > 0, kSoftminOp, ": `y` has no points: the softmin over an empty set is +inf");
  const at::Tensor xc = x.contiguous(), yt = feature_major(y), hc = h.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), kSoftminOp, [&] {
    const int64_t grain = row_grain(m, d);
    at::parallel_for(0, batch * n, grain, [&](int64_t r0, int64_t r1) {
      while (r0 < r1) {
        const int64_t pb = r0 / n, i0 = r0 % n, i1 = std::min(n, i0 + (r1 - r0));
        softmin_points(
            static_cast<int>(p), xc.const_data_ptr<scalar_t>() + pb * n * d,
            yt.const_data_ptr<scalar_t>() + pb * d * m, hc.const_data_ptr<scalar_t>() + pb * m, m,
            d, static_cast<scalar_t>(eps), out.data_ptr<scalar_t>() + pb * n, i0, i1);
        r0 += i1 - i0;
      }
    });
  });
  return out;
}

constexpr const char* kPointsOp = "fastgan::sinkhorn_points";

// GeomLoss's loop for one problem. Potentials per side: f (x side, against
// y), f_aa (x against x), g, g_bb likewise; all four softmins of an update
// read the previous potentials and the new ones are averaged with them
// (symmetric Sinkhorn). The last step is an "extrapolation" from the state
// to the returned potentials, which is what the gradient differentiates.
// Unbalanced OT (rho > 0; 0 stands for balanced) damps every softmin by
// rho / (rho + eps).
template <typename T>
struct PointsProblem {
  const T *x, *y, *xt, *yt, *a, *b;
  int64_t n, m, d;
  int p;
  bool debias;
  double rho;
};

// The damping of a softmin at `eps`: 1 for balanced OT.
inline double damping(double rho, double eps) {
  return rho > 0 ? rho / (rho + eps) : 1.0;
}

template <typename T>
void softmin_all(
    const PointsProblem<T>& q, T eps, const T* f, const T* g, const T* faa, const T* gbb,
    const std::vector<T>& loga, const std::vector<T>& logb, std::vector<T>& hx, std::vector<T>& hy,
    std::vector<T>& hxx, std::vector<T>& hyy, T* f_out, T* g_out, T* faa_out, T* gbb_out) {
  const T inv = T(1) / eps;
  const T lambda = static_cast<T>(damping(q.rho, static_cast<double>(eps)));
  const int64_t n = q.n, m = q.m;
  for (int64_t j = 0; j < m; ++j) hy[j] = logb[j] + (g ? g[j] * inv : T(0));
  for (int64_t i = 0; i < n; ++i) hx[i] = loga[i] + (f ? f[i] * inv : T(0));
  if (q.debias) {
    for (int64_t i = 0; i < n; ++i) hxx[i] = loga[i] + (faa ? faa[i] * inv : T(0));
    for (int64_t j = 0; j < m; ++j) hyy[j] = logb[j] + (gbb ? gbb[j] * inv : T(0));
  }
  // The softmins of an update, each as (rows, columns in feature-major
  // layout, h, column count, output):
  //   f_i = softmin_j over y with h = log b + g / eps; g_j over x likewise;
  //   f_aa over x against x and g_bb over y against y when debiased.
  struct Term {
    const T *rows, *cols_t, *h;
    int64_t count, ncols;
    T* out;
  };
  const Term terms[4] = {
      {q.x, q.yt, hy.data(), n, m, f_out},
      {q.y, q.xt, hx.data(), m, n, g_out},
      {q.x, q.xt, hxx.data(), n, n, faa_out},
      {q.y, q.yt, hyy.data(), m, m, gbb_out},
  };
  // One parallel region over the rows of every softmin of this update.
  const int64_t rows = q.debias ? 2 * (n + m) : n + m;
  const int64_t grain = row_grain(std::max(n, m), q.d);
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    while (r0 < r1) {
      int64_t r = r0, kind = 0;
      while (r >= terms[kind].count) {
        r -= terms[kind].count;
        ++kind;
      }
      const Term& t = terms[kind];
      const int64_t i1 = std::min(t.count, r + (r1 - r0));
      softmin_points(q.p, t.rows, t.cols_t, t.h, t.ncols, q.d, eps, t.out, r, i1);
      if (q.rho > 0) {
        for (int64_t i = r; i < i1; ++i) t.out[i] *= lambda;
      }
      r0 += i1 - r;
    }
  });
}

// rho of the op's optional argument: 0 for balanced OT (none, or +inf).
double unbalanced_rho(const std::optional<double>& rho, const char* op) {
  if (!rho.has_value() || std::isinf(*rho)) {
    return 0.0;
  }
  TORCH_CHECK_VALUE(*rho > 0, op, ": `rho` must be > 0 (or None / inf for balanced OT), got ", *rho);
  return *rho;
}

// The cost of one problem from its returned potentials (float64 sums).
// Balanced: <a, f - f_aa> + <b, g - g_bb> (without debias, f_aa = g_bb = 0).
// Unbalanced (GeomLoss, Sejourne et al. 2019):
// (rho + eps / 2) (<a, e^{-f_aa / rho} - e^{-f / rho}> + <b, e^{-g_bb / rho} - e^{-g / rho}>),
// with e^{-f_aa / rho} = e^{-g_bb / rho} = 1 without debias.
template <typename T>
double points_cost(
    const PointsProblem<T>& q, double eps, const T* f, const T* g, const T* faa, const T* gbb) {
  const double rho = q.rho;
  auto side = [&](const T* w, const T* pot, const T* self, int64_t count) {
    double total = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      const double fi = pot[i], si = self ? static_cast<double>(self[i]) : 0.0;
      const double term = rho > 0 ? std::exp(-si / rho) - std::exp(-fi / rho) : fi - si;
      total += static_cast<double>(w[i]) * term;
    }
    return total;
  };
  const double total = side(q.a, f, faa, q.n) + side(q.b, g, gbb, q.m);
  return rho > 0 ? (rho + 0.5 * eps) * total : total;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> sinkhorn_points(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b, int64_t p,
    at::ArrayRef<double> eps_list, bool debias, double tol, int64_t max_iter,
    std::optional<double> rho_arg) {
  check_points(x, y, p, kPointsOp);
  const int64_t batch = x.size(0), n = x.size(1), m = y.size(1), d = x.size(2);
  check_like(a, x, kPointsOp, "a", "x");
  check_like(b, x, kPointsOp, "b", "x");
  check_shape(a, {batch, n}, kPointsOp, "a");
  check_shape(b, {batch, m}, kPointsOp, "b");
  TORCH_CHECK_VALUE(!eps_list.empty(), kPointsOp, ": `eps_list` is empty");
  for (double e : eps_list) {
    TORCH_CHECK_VALUE(std::isfinite(e) && e > 0, kPointsOp, ": `eps_list` holds ", e, "; every eps must be finite and > 0");
  }
  TORCH_CHECK_VALUE(!std::isnan(tol), kPointsOp, ": `tol` is NaN");
  const double rho = unbalanced_rho(rho_arg, kPointsOp);
  const int64_t schedule = static_cast<int64_t>(eps_list.size());
  TORCH_CHECK_VALUE(
      max_iter >= schedule, kPointsOp, ": `max_iter` (", max_iter,
      ") must be at least the length of the eps schedule (", schedule, ")");
  TORCH_CHECK_VALUE(n > 0 && m > 0, kPointsOp, ": `x` and `y` need at least one point each, got ", x.sizes(), " and ", y.sizes());
  const at::Tensor xc = x.contiguous(), yc = y.contiguous(), ac = a.contiguous(), bc = b.contiguous();
  // Potentials: [0] returned (after the last extrapolation), [1] the state it started from.
  at::Tensor f = at::empty({2, batch, n}, x.options());
  at::Tensor g = at::empty({2, batch, m}, x.options());
  at::Tensor faa = debias ? at::empty({2, batch, n}, x.options()) : at::empty({0}, x.options());
  at::Tensor gbb = debias ? at::empty({2, batch, m}, x.options()) : at::empty({0}, x.options());
  at::Tensor cost = at::empty({batch}, x.options());
  at::Tensor n_iter = at::empty({batch}, x.options().dtype(at::kLong));
  if (batch == 0) {
    return {cost, f, g, faa, gbb, n_iter};
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), kPointsOp, [&] {
    using T = scalar_t;
    check_values<T>(xc, false, kPointsOp, "x");
    check_values<T>(yc, false, kPointsOp, "y");
    check_values<T>(ac, true, kPointsOp, "a");
    check_values<T>(bc, true, kPointsOp, "b");
    const at::Tensor xt = feature_major(xc), yt = feature_major(yc);
    const T final_eps = static_cast<T>(eps_list.back());
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> loga(n), logb(m), hx(n), hy(m), hxx(debias ? n : 0), hyy(debias ? m : 0);
      std::vector<T> fs(n), gs(m), faas(debias ? n : 0), gbbs(debias ? m : 0);
      std::vector<T> ft(n), gt(m), faat(debias ? n : 0), gbbt(debias ? m : 0);
      for (int64_t pb = b0; pb < b1; ++pb) {
        const PointsProblem<T> q{
            xc.const_data_ptr<T>() + pb * n * d, yc.const_data_ptr<T>() + pb * m * d,
            xt.const_data_ptr<T>() + pb * n * d, yt.const_data_ptr<T>() + pb * m * d,
            ac.const_data_ptr<T>() + pb * n, bc.const_data_ptr<T>() + pb * m, n, m, d,
            static_cast<int>(p), debias, rho};
        // GeomLoss's log weights: log 0 taken as -1e5.
        for (int64_t i = 0; i < n; ++i) loga[i] = q.a[i] > 0 ? std::log(q.a[i]) : T(-100000);
        for (int64_t j = 0; j < m; ++j) logb[j] = q.b[j] > 0 ? std::log(q.b[j]) : T(-100000);
        T* faa_state = debias ? faas.data() : nullptr;
        T* gbb_state = debias ? gbbs.data() : nullptr;
        // Start: softmins of the weights alone at the first eps.
        softmin_all<T>(
            q, static_cast<T>(eps_list[0]), nullptr, nullptr, nullptr, nullptr, loga, logb, hx, hy,
            hxx, hyy, fs.data(), gs.data(), faa_state, gbb_state);
        auto average = [](std::vector<T>& state, const std::vector<T>& fresh) {
          T change = 0;
          for (size_t k = 0; k < state.size(); ++k) {
            change = std::max(change, std::abs(fresh[k] - state[k]));
            state[k] = T(0.5) * (state[k] + fresh[k]);
          }
          return change;
        };
        int64_t it = 0;
        for (; it < max_iter; ++it) {
          const T eps = it < schedule ? static_cast<T>(eps_list[it]) : final_eps;
          softmin_all<T>(
              q, eps, fs.data(), gs.data(), faa_state, gbb_state, loga, logb, hx, hy, hxx, hyy,
              ft.data(), gt.data(), debias ? faat.data() : nullptr, debias ? gbbt.data() : nullptr);
          T change = std::max(average(fs, ft), average(gs, gt));
          if (debias) {
            change = std::max(change, std::max(average(faas, faat), average(gbbs, gbbt)));
          }
          // Past the schedule (tol >= 0), each problem runs until its
          // potentials move by at most tol; tol < 0 stops with the schedule.
          if (it + 1 >= schedule && (tol < 0 || change <= tol)) {
            ++it;
            break;
          }
        }
        n_iter.data_ptr<int64_t>()[pb] = it;
        // The extrapolation: returned potentials from the state.
        T* fo = f.data_ptr<T>() + pb * n;
        T* go = g.data_ptr<T>() + pb * m;
        T* faao = debias ? faa.data_ptr<T>() + pb * n : nullptr;
        T* gbbo = debias ? gbb.data_ptr<T>() + pb * m : nullptr;
        softmin_all<T>(
            q, final_eps, fs.data(), gs.data(), faa_state, gbb_state, loga, logb, hx, hy, hxx, hyy,
            fo, go, faao, gbbo);
        std::copy(fs.begin(), fs.end(), fo + batch * n);
        std::copy(gs.begin(), gs.end(), go + batch * m);
        if (debias) {
          std::copy(faas.begin(), faas.end(), faao + batch * n);
          std::copy(gbbs.begin(), gbbs.end(), gbbo + batch * m);
        }
        cost.data_ptr<T>()[pb] = static_cast<T>(points_cost(q, eps_list.back(), fo, go, faao, gbbo));
      }
    });
  });
  return {cost, f, g, faa, gbb, n_iter};
}

constexpr const char* kBackwardOp = "fastgan::sinkhorn_points_backward";

std::tuple<at::Tensor, at::Tensor> sinkhorn_points_backward(
    const at::Tensor& grad_cost, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& faa,
    const at::Tensor& gbb, int64_t p, double eps, std::optional<double> rho_arg) {
  check_points(x, y, p, kBackwardOp);
  const int64_t batch = x.size(0), n = x.size(1), m = y.size(1), d = x.size(2);
  const bool debias = faa.numel() > 0;
  const std::pair<const at::Tensor*, const char*> others[] = {
      {&grad_cost, "grad_cost"}, {&a, "a"}, {&b, "b"}, {&f, "f"}, {&g, "g"}, {&faa, "f_aa"}, {&gbb, "g_bb"}};
  for (const auto& [t, name] : others) {
    check_like(*t, x, kBackwardOp, name, "x");
  }
  check_shape(grad_cost, {batch}, kBackwardOp, "grad_cost");
  check_shape(a, {batch, n}, kBackwardOp, "a");
  check_shape(b, {batch, m}, kBackwardOp, "b");
  check_shape(f, {2, batch, n}, kBackwardOp, "f");
  check_shape(g, {2, batch, m}, kBackwardOp, "g");
  if (debias) {
    check_shape(faa, {2, batch, n}, kBackwardOp, "f_aa");
    check_shape(gbb, {2, batch, m}, kBackwardOp, "g_bb");
  } else {
    TORCH_CHECK_VALUE(gbb.numel() == 0, kBackwardOp, ": `f_aa` is empty (not debiased) but `g_bb` is not");
  }
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, kBackwardOp, ": `eps` must be finite and > 0, got ", eps);
  const double rho = unbalanced_rho(rho_arg, kBackwardOp);
  at::Tensor gx = at::zeros({batch, n, d}, x.options());
  at::Tensor gy = at::zeros({batch, m, d}, x.options());
  if (gx.numel() == 0 && gy.numel() == 0) {
    return {gx, gy};
  }
  const at::Tensor xc = x.contiguous(), yc = y.contiguous(), ac = a.contiguous(), bc = b.contiguous();
  const at::Tensor fc = f.contiguous(), gc = g.contiguous(), faac = faa.contiguous(), gbbc = gbb.contiguous();
  const at::Tensor xt = feature_major(xc), yt = feature_major(yc);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), kBackwardOp, [&] {
    using T = scalar_t;
    const T e = static_cast<T>(eps), inv = T(1) / e;
    // Each transport term (x against y, y against x, and with debias x
    // against x, y against y) has potentials f = lambda softmin, lambda =
    // rho / (rho + eps) (1 balanced). Its plan has rows w_i e^{-f_i / rho}
    // times the softmin's normalised weights (e^{-f/rho} = 1 balanced), so
    // the rows get the scale grad_cost * w_i e^{-f_i / rho} and the
    // softmin's own potential f_i / lambda. This is the derivative of the
    // returned cost (GeomLoss's own autograd scales unbalanced position
    // gradients by (rho + eps / 2) / (rho + eps) instead).
    const double lambda = damping(rho, eps);
    auto scale_of = [&](T grad_w, T pot) {
      return rho > 0 ? static_cast<T>(grad_w * std::exp(-static_cast<double>(pot) / rho)) : grad_w;
    };
    // Per transport term, for every problem: h over its columns (from the
    // state potentials), and per row the softmin's potential and the scale.
    struct Term {
      std::vector<T> h, pot, scale;
      Term(int64_t rows, int64_t cols) : h(cols), pot(rows), scale(rows) {}
    };
    Term xy(batch * n, batch * m), yx(batch * m, batch * n);
    Term xx(debias ? batch * n : 0, debias ? batch * n : 0), yy(debias ? batch * m : 0, debias ? batch * m : 0);
    const at::Tensor gcc = grad_cost.contiguous();
    // One side (the x side: weights a, potentials f and f_aa; or the y
    // side) of one problem: its points are the columns of `across` (h from
    // the state potential), the rows of `own` (the returned potential) and
    // both for `self` (debiased).
    const auto fill_side = [&](int64_t pb, int64_t count, const at::Tensor& w, const at::Tensor& pot,
                               const at::Tensor& self_pot, Term& across, Term& own, Term& self) {
      const T gcb = gcc.const_data_ptr<T>()[pb];
      const T* wp = w.const_data_ptr<T>() + pb * count;
      const T* returned = pot.const_data_ptr<T>() + pb * count;
      const T* state = pot.const_data_ptr<T>() + (batch + pb) * count;
      const T* self_returned = debias ? self_pot.const_data_ptr<T>() + pb * count : nullptr;
      const T* self_state = debias ? self_pot.const_data_ptr<T>() + (batch + pb) * count : nullptr;
      for (int64_t i = 0; i < count; ++i) {
        const int64_t k = pb * count + i;
        const T lw = wp[i] > 0 ? std::log(wp[i]) : T(-100000);
        across.h[k] = lw + state[i] * inv;
        own.pot[k] = static_cast<T>(returned[i] / lambda);
        own.scale[k] = scale_of(gcb * wp[i], returned[i]);
        if (debias) {
          self.h[k] = lw + self_state[i] * inv;
          self.pot[k] = static_cast<T>(self_returned[i] / lambda);
          self.scale[k] = scale_of(gcb * wp[i], self_returned[i]);
        }
      }
    };
    for (int64_t pb = 0; pb < batch; ++pb) {
      fill_side(pb, n, ac, fc, faac, yx, xy, xx);
      fill_side(pb, m, bc, gc, gbbc, xy, yx, yy);
    }
    // Rows of x then rows of y, every problem, in one parallel region.
    const int64_t rows = batch * (n + m);
    at::parallel_for(0, rows, row_grain(std::max(n, m) * (debias ? 2 : 1), d), [&](int64_t r0, int64_t r1) {
      while (r0 < r1) {
        const int64_t pb = r0 / (n + m);
        int64_t r = r0 % (n + m);
        const bool xside = r < n;
        if (!xside) r -= n;
        const int64_t count = xside ? n : m;
        const int64_t i1 = std::min(count, r + (r1 - r0));
        const int pp = static_cast<int>(p);
        const T* xp = xc.const_data_ptr<T>() + pb * n * d;
        const T* yp = yc.const_data_ptr<T>() + pb * m * d;
        const T* xtp = xt.const_data_ptr<T>() + pb * n * d;
        const T* ytp = yt.const_data_ptr<T>() + pb * m * d;
        const int64_t xo = pb * n, yo = pb * m;
        if (xside) {
          T* out = gx.data_ptr<T>() + pb * n * d;
          envelope(pp, xp, ytp, xy.h.data() + yo, xy.pot.data() + xo, xy.scale.data() + xo, m, d, e, T(1), out, r, i1);
          if (debias) {
            envelope(pp, xp, xtp, xx.h.data() + xo, xx.pot.data() + xo, xx.scale.data() + xo, n, d, e, T(-1), out, r, i1);
          }
        } else {
          T* out = gy.data_ptr<T>() + pb * m * d;
          envelope(pp, yp, xtp, yx.h.data() + xo, yx.pot.data() + yo, yx.scale.data() + yo, n, d, e, T(1), out, r, i1);
          if (debias) {
            envelope(pp, yp, ytp, yy.h.data() + yo, yy.pot.data() + yo, yy.scale.data() + yo, m, d, e, T(-1), out, r, i1);
          }
        }
        r0 += i1 - r;
      }
    });
  });
  return {gx, gy};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("sinkhorn_log", &sinkhorn_log);
  m.impl("sinkhorn_softmin", &sinkhorn_softmin);
  m.impl("sinkhorn_points", &sinkhorn_points);
  m.impl("sinkhorn_points_backward", &sinkhorn_points_backward);
}

}  // namespace fastgan::cpu
