// fastgan::spectral_norm_* on the CPU.
//
// Power iteration: one sweep per iteration over a work list of chunks of
// rows of every layer (about a 32nd of the model each, kGrain to
// kTransposeGrain elements), in parallel. A chunk reads each of its rows
// once: the row's dot product with v (u_raw = W v), then the row, still in
// cache, added into the chunk's own K-vector weighted by that dot product
// (W^T W v). The partials are summed in a fixed order, so the result does
// not depend on the thread count; the larger chunks keep them (K values
// each) few next to the weights. Then per layer u = W v / max(|W v|, eps),
// v_raw = W^T u = (W^T W v) / max(|W v|, eps), v = v_raw / max(|v_raw|, eps),
// and sigma = u^T W v = v_raw . v. Sums accumulate in float64; u and v are
// rounded to the weight's dtype as soon as they are formed, as a per-layer
// computation in that dtype would round them. Evaluation (no iteration)
// sweeps W v alone, over chunks of about kGrain elements.
//
// Normalisation W / sigma: one read and one write. Its backward,
// grad / sigma - (<grad, W> / sigma^2) u v^T: one read of grad and W for
// the dot product, one read of grad and one write.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "../common/spectral_norm.h"
#include "vectorize.h"

namespace fastgan::cpu {
namespace {

using spectral_norm::MatrixShape;

// Independent partial sums in Acc (four AVX2 vectors: sixteen doubles or
// thirty-two floats) so the dot product vectorises and hides the add
// latency: with four doubles it ran at 1.8G elements/s on the SN-GAN
// critic's weights, a third of the read bandwidth. The tail and the final
// sum are in double.
template <typename T, typename Y = double, typename Acc = double>
FASTGAN_ALWAYS_INLINE inline double dot_generic(
    const T* __restrict__ x, const Y* __restrict__ y, int64_t n) {
  constexpr int kLanes = 128 / sizeof(Acc);  // four 32-byte vectors
  Acc lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      lanes[k] += static_cast<Acc>(x[j + k]) * static_cast<Acc>(y[j + k]);
    }
  }
  double sum = 0;
  for (; j < n; ++j) {
    sum += static_cast<double>(x[j]) * y[j];
  }
  for (int k = 0; k < kLanes; ++k) {
    sum += lanes[k];
  }
  return sum;
}

template <typename T>
FASTGAN_ALWAYS_INLINE inline void axpy_generic(
    double a, const T* __restrict__ x, double* __restrict__ y, int64_t n) {
  FASTGAN_UNROLL
  for (int64_t j = 0; j < n; ++j) {
    y[j] += a * static_cast<double>(x[j]);
  }
}

FASTGAN_CPU_CLONES double dot(const double* x, const double* y, int64_t n) {
  return dot_generic(x, y, n);
}
template <typename T>
double dot(const T* x, const double* y, int64_t n) {
  return dot_generic(x, y, n);
}

FASTGAN_CPU_CLONES void axpy(double a, const float* x, double* y, int64_t n) {
  axpy_generic(a, x, y, n);
}
FASTGAN_CPU_CLONES void axpy(double a, const double* x, double* y, int64_t n) {
  axpy_generic(a, x, y, n);
}
template <typename T>
void axpy(double a, const T* x, double* y, int64_t n) {
  axpy_generic(a, x, y, n);
}

// float32 weights: float lanes against the float32 u and v as stored (the
// float64 working copies hold exactly those values), eight AVX2 floats per
// instruction instead of four doubles and no widening in the inner loop.
// Each row's sum is short (one row of W) and goes to float64 at once.
FASTGAN_CPU_CLONES double dot_f32(const float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  return dot_generic<float, float, float>(x, y, n);
}

// y += u[0] * w_0 + ... + u[R - 1] * w_{R-1} for the rows w_r = w + r *
// stride, added in row order (the same float sums as R single-row calls).
template <int R>
FASTGAN_ALWAYS_INLINE inline void axpy_rows_generic(
    const float* u, const float* __restrict__ w, int64_t stride, float* __restrict__ y, int64_t n) {
  float ur[R];
  for (int r = 0; r < R; ++r) ur[r] = u[r];
  for (int64_t j = 0; j < n; ++j) {
    float acc = y[j];
    for (int r = 0; r < R; ++r) acc += ur[r] * w[r * stride + j];
    y[j] = acc;
  }
}

FASTGAN_CPU_CLONES void axpy_f32(float a, const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  axpy_rows_generic<1>(&a, x, 0, y, n);
}

// The float32 sweeps take several rows at a time: each load of v (W v,
// kRowBlock rows) or of the running sum (W^T u, kAxpyRows rows) then serves
// that many rows of W, which takes the loops from the load ports' limit
// towards the weights' read bandwidth.
constexpr int64_t kRowBlock = 4;
constexpr int64_t kAxpyRows = 8;

// The vector helper below is always inlined, so the vector ABI note GCC
// gives for 32-byte values does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// out[r] = <w + r * stride, v> for r < kRowBlock: float lanes per row,
// widened to float64 once per row.
FASTGAN_CPU_CLONES void dot_rows_f32(
    const float* __restrict__ w, int64_t stride, const float* __restrict__ v, int64_t n, double* out) {
#if defined(__GNUC__)
  using vec8f = float __attribute__((vector_size(32)));
  const auto load8 = [](const float* p) FASTGAN_ALWAYS_INLINE {
    vec8f x;
    std::memcpy(&x, p, sizeof(x));
    return x;
  };
  vec8f acc[kRowBlock][2] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const vec8f v0 = load8(v + j);
    const vec8f v1 = load8(v + j + 8);
    for (int64_t r = 0; r < kRowBlock; ++r) {
      acc[r][0] += load8(w + r * stride + j) * v0;
      acc[r][1] += load8(w + r * stride + j + 8) * v1;
    }
  }
  for (int64_t r = 0; r < kRowBlock; ++r) {
    const vec8f lanes = acc[r][0] + acc[r][1];
    double sum = 0;
    for (int64_t k = j; k < n; ++k) sum += static_cast<double>(w[r * stride + k]) * v[k];
    for (int k = 0; k < 8; ++k) sum += lanes[k];
    out[r] = sum;
  }
#else
  for (int64_t r = 0; r < kRowBlock; ++r) out[r] = dot_generic<float, float, float>(w + r * stride, v, n);
#endif
}

FASTGAN_CPU_CLONES void axpy_rows_f32(
    const float* u, const float* __restrict__ w, int64_t stride, float* __restrict__ y, int64_t n) {
  axpy_rows_generic<kAxpyRows>(u, w, stride, y, n);
}

// Elements per chunk of the W^T u sweep: a 32nd of the model, between one
// and eight of W v's chunks. Chunks of like sizes keep the threads' shares
// even (each thread sweeps a contiguous range of the list); the size does
// not depend on the thread count, so neither does the result.
constexpr int64_t kTransposeChunks = 32;
constexpr int64_t kTransposeGrain = 8 * kGrain;
// float32 rows are summed in float kFloatRows at a time, then widened
// into the chunk's float64 partial (torch's float32 matrix-vector product
// sums all rows in float; widening every 16 rows cost a third more time).
constexpr int64_t kFloatRows = 64;

// One layer of the batch, with its float64 working vectors.
struct Layer {
  at::Tensor weight;  // dense, as [A, H, B]
  at::Tensor u, v;    // contiguous (a copy when the buffer was not)
  MatrixShape shape;
  double* u_raw;      // W v (H)
  double* u_used;     // u as stored, widened (H)
  double* v_used;     // v as stored, widened (K)
  double* partials;   // one K-vector per chunk
  int64_t first_chunk, num_chunks;
};

struct Chunk {
  int32_t layer;
  int64_t row_begin, row_end;
};

// Rows shorter than this are summed inline (a call per row of a few
// elements, as the input layer of a 2-D critic has, cost more than the sums).
constexpr int64_t kNarrowRow = 32;

// Rows [r0, r1) of W_mat times v_used, into u_raw.
template <typename T>
void rows_times_v(const Layer& l, int64_t r0, int64_t r1) {
  const T* w = l.weight.const_data_ptr<T>();
  const MatrixShape& s = l.shape;
  if (s.b < kNarrowRow) {
    for (int64_t h = r0; h < r1; ++h) {
      double acc = 0;
      for (int64_t a = 0; a < s.a; ++a) {
        const T* row = w + (a * s.h + h) * s.b;
        const double* v = l.v_used + a * s.b;
        for (int64_t k = 0; k < s.b; ++k) acc += static_cast<double>(row[k]) * v[k];
      }
      l.u_raw[h] = acc;
    }
    return;
  }
  int64_t h = r0;
  if constexpr (std::is_same_v<T, float>) {
    for (; h + kRowBlock <= r1; h += kRowBlock) {
      double acc[kRowBlock] = {};
      for (int64_t a = 0; a < s.a; ++a) {
        double part[kRowBlock];
        dot_rows_f32(w + (a * s.h + h) * s.b, s.b, l.v.const_data_ptr<float>() + a * s.b, s.b, part);
        for (int64_t r = 0; r < kRowBlock; ++r) acc[r] += part[r];
      }
      std::copy(acc, acc + kRowBlock, l.u_raw + h);
    }
  }
  for (; h < r1; ++h) {
    double acc = 0;
    for (int64_t a = 0; a < s.a; ++a) {
      if constexpr (std::is_same_v<T, float>) {
        acc += dot_f32(w + (a * s.h + h) * s.b, l.v.const_data_ptr<float>() + a * s.b, s.b);
      } else {
        acc += dot(w + (a * s.h + h) * s.b, l.v_used + a * s.b, s.b);
      }
    }
    l.u_raw[h] = acc;
  }
}

// One power-iteration step over rows [r0, r1) of W_mat, reading each row
// once: u_raw[h] = <row_h, v>, then row_h, still in cache, is added into
// `partial` (K) with weight u_raw[h]. Summed over all rows of a layer,
// partial = W^T (W v) = |W v| W^T u for u = W v / |W v|, so v_raw = W^T u
// is the sum divided by max(|W v|, eps) and W is read once per iteration,
// not twice.
template <typename T>
void rows_power_step(const Layer& l, int64_t r0, int64_t r1, double* partial) {
  const T* w = l.weight.const_data_ptr<T>();
  const MatrixShape& s = l.shape;
  const auto row = [&](int64_t a, int64_t h) { return w + (a * s.h + h) * s.b; };
  if (s.b < kNarrowRow || !std::is_same_v<T, float>) {
    std::fill(partial, partial + s.cols(), 0.0);
    for (int64_t h = r0; h < r1; ++h) {
      double d = 0;
      for (int64_t a = 0; a < s.a; ++a) {
        const double* v = l.v_used + a * s.b;
        if (s.b < kNarrowRow) {
          for (int64_t k = 0; k < s.b; ++k) d += static_cast<double>(row(a, h)[k]) * v[k];
        } else {
          d += dot(row(a, h), v, s.b);
        }
      }
      l.u_raw[h] = d;
      for (int64_t a = 0; a < s.a; ++a) {
        double* out = partial + a * s.b;
        if (s.b < kNarrowRow) {
          for (int64_t k = 0; k < s.b; ++k) out[k] += d * static_cast<double>(row(a, h)[k]);
        } else {
          axpy(d, row(a, h), out, s.b);
        }
      }
    }
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    // Blocks of kAxpyRows rows: their dot products (kRowBlock rows per load
    // of v), then the same rows, now in L1/L2, summed in float with the dot
    // products rounded to float as weights (eight floats per AVX2
    // instruction), widened into the float64 partial once per kFloatRows
    // rows; the first block of rows sets the partial.
    static_assert(kAxpyRows % kRowBlock == 0);
    thread_local std::vector<float> acc;
    acc.resize(s.cols());
    const float* v = l.v.const_data_ptr<float>();
    for (int64_t h0 = r0; h0 < r1; h0 += kFloatRows) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      const int64_t h1 = std::min(r1, h0 + kFloatRows);
      int64_t h = h0;
      for (; h + kAxpyRows <= h1; h += kAxpyRows) {
        double d[kAxpyRows] = {};
        for (int64_t a = 0; a < s.a; ++a) {
          for (int64_t q = 0; q < kAxpyRows; q += kRowBlock) {
            double part[kRowBlock];
            dot_rows_f32(row(a, h + q), s.b, v + a * s.b, s.b, part);
            for (int64_t r = 0; r < kRowBlock; ++r) d[q + r] += part[r];
          }
        }
        float c[kAxpyRows];
        for (int64_t r = 0; r < kAxpyRows; ++r) {
          l.u_raw[h + r] = d[r];
          c[r] = static_cast<float>(d[r]);
        }
        for (int64_t a = 0; a < s.a; ++a) {
          axpy_rows_f32(c, row(a, h), s.b, acc.data() + a * s.b, s.b);
        }
      }
      for (; h < h1; ++h) {
        double d = 0;
        for (int64_t a = 0; a < s.a; ++a) d += dot_f32(row(a, h), v + a * s.b, s.b);
        l.u_raw[h] = d;
        for (int64_t a = 0; a < s.a; ++a) axpy_f32(static_cast<float>(d), row(a, h), acc.data() + a * s.b, s.b);
      }
      if (h0 == r0) {
        std::copy(acc.begin(), acc.end(), partial);
      } else {
        for (int64_t j = 0; j < s.cols(); ++j) partial[j] += acc[j];
      }
    }
  }
}

FASTGAN_CPU_CLONES double dot_f64(const double* x, const double* y, int64_t n) {
  return dot_generic<double, double, double>(x, y, n);
}

struct Normalized {
  double denom;  // max(|x_raw|, eps)
  double dot;    // sum(x_raw * used): sigma, when x_raw = W^T u
};

// x_raw / max(|x_raw|, eps), rounded to T, stored in `out` and widened into
// `used`. Both sums run in independent lanes (vectorised, in a fixed order).
template <typename T>
Normalized normalize_into(const double* raw, int64_t n, double eps, T* out, double* used) {
  const double denom = std::max(std::sqrt(dot_f64(raw, raw, n)), eps);
  for (int64_t i = 0; i < n; ++i) {
    const T rounded = static_cast<T>(raw[i] / denom);
    out[i] = rounded;
    used[i] = static_cast<double>(rounded);
  }
  return {denom, dot_f64(raw, used, n)};
}

template <typename F>
void dispatch(const at::Tensor& t, const F& f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, t.scalar_type(), spectral_norm::kPowerIteration,
      [&] { f(scalar_t{}); });
}

at::Tensor power_iteration(
    at::TensorList weights, at::TensorList us, at::TensorList vs, at::IntArrayRef dims,
    int64_t n_iter, double eps) {
  const std::vector<MatrixShape> shapes =
      spectral_norm::check_power_iteration(weights, us, vs, dims, n_iter, eps);
  for (size_t i = 0; i < weights.size(); ++i) {
    TORCH_CHECK(
        weights[i].device().is_cpu(), spectral_norm::kPowerIteration, ": weights[", i,
        "] is on ", weights[i].device(), "; this kernel handles CPU tensors");
  }
  int64_t total = 0;
  const std::vector<int64_t> offsets = spectral_norm::state_offsets(shapes, &total);
  at::Tensor state = at::empty({total}, at::TensorOptions().dtype(at::kDouble));
  double* st = state.data_ptr<double>();

  // Layers, their chunks of rows for each sweep, float64 working vectors,
  // and (when iterating) the W^T u partials, which every chunk overwrites.
  const size_t n_layers = weights.size();
  std::vector<Layer> layers(n_layers);
  std::vector<Chunk> chunks, transposed;
  int64_t scratch_size = 0, partials_size = 0, elements = 0;
  for (size_t i = 0; i < n_layers; ++i) {
    elements += shapes[i].h * shapes[i].cols();
  }
  const int64_t transpose_grain = std::clamp(elements / kTransposeChunks, kGrain, kTransposeGrain);
  for (size_t i = 0; i < n_layers; ++i) {
    Layer& l = layers[i];
    l.shape = shapes[i];
    l.weight = weights[i].contiguous();
    l.u = us[i].contiguous();
    l.v = vs[i].contiguous();
    const int64_t k = l.shape.cols();
    l.first_chunk = static_cast<int64_t>(transposed.size());
    if (k > 0) {
      const auto cut = [&](std::vector<Chunk>& list, int64_t grain) {
        const int64_t rows_per_chunk = std::max<int64_t>(1, grain / k);
        for (int64_t r = 0; r < l.shape.h; r += rows_per_chunk) {
          list.push_back({static_cast<int32_t>(i), r, std::min(l.shape.h, r + rows_per_chunk)});
        }
      };
      cut(chunks, kGrain);
      cut(transposed, transpose_grain);
    }
    l.num_chunks = static_cast<int64_t>(transposed.size()) - l.first_chunk;
    scratch_size += l.shape.h;
    partials_size += l.num_chunks * k;
  }
  // W v of every layer; zero where a layer has no columns (no chunk writes it).
  std::vector<double> scratch(scratch_size, 0.0);
  // Not initialised: every chunk fills its own partial.
  std::unique_ptr<double[]> partials(n_iter > 0 ? new double[std::max<int64_t>(partials_size, 1)] : nullptr);
  double* next = scratch.data();
  double* next_partial = partials.get();
  for (size_t i = 0; i < n_layers; ++i) {
    Layer& l = layers[i];
    const int64_t k = l.shape.cols();
    l.u_raw = next;
    next += l.shape.h;
    // u and v as used are kept where the state returns them.
    l.u_used = st + offsets[i];
    l.v_used = st + offsets[i] + l.shape.h;
    l.partials = next_partial;
    if (next_partial != nullptr) next_partial += l.num_chunks * k;
    dispatch(l.weight, [&](auto zero) {
      using T = decltype(zero);
      const T* u = l.u.const_data_ptr<T>();
      const T* v = l.v.const_data_ptr<T>();
      for (int64_t i = 0; i < l.shape.h; ++i) l.u_used[i] = static_cast<double>(u[i]);
      for (int64_t i = 0; i < k; ++i) l.v_used[i] = static_cast<double>(v[i]);
    });
  }
  // Column ranges of the layers with several W^T u chunks, each about kGrain
  // additions of partials (a Chunk's rows stand for columns here).
  std::vector<Chunk> sums;
  for (size_t i = 0; i < n_layers; ++i) {
    const Layer& l = layers[i];
    if (l.num_chunks < 2) continue;
    const int64_t k = l.shape.cols();
    const int64_t cols_per_task = std::max<int64_t>(1, kGrain / (l.num_chunks - 1));
    for (int64_t j = 0; j < k; j += cols_per_task) {
      sums.push_back({static_cast<int32_t>(i), j, std::min(k, j + cols_per_task)});
    }
  }
  const int64_t n_sums = static_cast<int64_t>(sums.size());
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  const int64_t n_transposed = static_cast<int64_t>(transposed.size());
  // A model of tiny layers runs on the calling thread: forking for it costs
  // more than the work.
  const bool small = elements <= kGrain;

  const auto sweep_w_v = [&] {
    at::parallel_for(0, n_chunks, small ? n_chunks : 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const Layer& l = layers[chunks[c].layer];
        dispatch(l.weight, [&](auto zero) {
          rows_times_v<decltype(zero)>(l, chunks[c].row_begin, chunks[c].row_end);
        });
      }
    });
  };

  std::vector<double> sigmas(n_layers, 0.0);
  if (n_iter == 0) {
    // Evaluation: sigma = u^T (W v) for the stored u and v.
    sweep_w_v();
    for (size_t i = 0; i < n_layers; ++i) {
      const Layer& l = layers[i];
      double s = 0;
      for (int64_t h = 0; h < l.shape.h; ++h) s += l.u_used[h] * l.u_raw[h];
      sigmas[i] = s;
    }
  }
  for (int64_t it = 0; it < n_iter; ++it) {
    at::parallel_for(0, n_transposed, small ? n_transposed : 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const Layer& l = layers[transposed[c].layer];
        double* partial = l.partials + (c - l.first_chunk) * l.shape.cols();
        dispatch(l.weight, [&](auto zero) {
          rows_power_step<decltype(zero)>(l, transposed[c].row_begin, transposed[c].row_end, partial);
        });
      }
    });
    // v_raw of every layer, its chunks' partials summed column by column in
    // chunk order into the first partial: one parallel sweep over all layers.
    at::parallel_for(0, n_sums, small ? n_sums : 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const Layer& l = layers[sums[t].layer];
        const int64_t k = l.shape.cols();
        double* v_raw = l.partials;
        for (int64_t c = 1; c < l.num_chunks; ++c) {
          const double* p = l.partials + c * k;
          for (int64_t j = sums[t].row_begin; j < sums[t].row_end; ++j) v_raw[j] += p[j];
        }
      }
    });
    for (size_t i = 0; i < n_layers; ++i) {
      Layer& l = layers[i];
      const int64_t k = l.shape.cols();
      double* v_raw = l.partials;
      if (l.num_chunks == 0) {
        v_raw = l.v_used;  // K > 0 with H == 0 (or K == 0): W^T u is zero
        std::fill(v_raw, v_raw + k, 0.0);
      }
      dispatch(l.weight, [&](auto zero) {
        using T = decltype(zero);
        // u = W v / max(|W v|, eps), and v_raw = W^T u from the step's sum.
        const double u_denom = normalize_into<T>(l.u_raw, l.shape.h, eps, l.u.data_ptr<T>(), l.u_used).denom;
        for (int64_t j = 0; j < k; ++j) v_raw[j] /= u_denom;
        sigmas[i] = normalize_into<T>(v_raw, k, eps, l.v.data_ptr<T>(), l.v_used).dot;
      });
    }
  }

  for (size_t i = 0; i < n_layers; ++i) {
    Layer& l = layers[i];
    if (n_iter > 0) {
      if (!l.u.is_same(us[i])) us[i].copy_(l.u);
      if (!l.v.is_same(vs[i])) vs[i].copy_(l.v);
    }
    // sigma as the weight's dtype holds it, so W / sigma divides as torch's would.
    dispatch(l.weight, [&](auto zero) {
      using T = decltype(zero);
      st[i] = static_cast<double>(static_cast<T>(sigmas[i]));
    });
  }
  return state;
}

// W / sigma over [begin, end), in the weight's compute type.
template <typename T>
FASTGAN_ALWAYS_INLINE inline void divide_span_generic(
    const T* __restrict__ in, T* __restrict__ out, int64_t n, at::opmath_type<T> s) {
  using acc_t = at::opmath_type<T>;
  FASTGAN_UNROLL
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(static_cast<acc_t>(in[i]) / s);
  }
}
FASTGAN_CPU_CLONES void divide_span(const float* in, float* out, int64_t n, float s) {
  divide_span_generic(in, out, n, s);
}
FASTGAN_CPU_CLONES void divide_span(const double* in, double* out, int64_t n, double s) {
  divide_span_generic(in, out, n, s);
}
template <typename T>
void divide_span(const T* in, T* out, int64_t n, at::opmath_type<T> s) {
  divide_span_generic(in, out, n, s);
}

// out[j] = g[j] / sigma - cu * v[j] for one row (float64 arithmetic).
template <typename T>
FASTGAN_ALWAYS_INLINE inline void scale_backward_row_generic(
    const T* __restrict__ g, const double* __restrict__ v, T* __restrict__ out, int64_t n, double inv,
    double cu) {
  FASTGAN_UNROLL
  for (int64_t j = 0; j < n; ++j) {
    out[j] = static_cast<T>(static_cast<double>(g[j]) * inv - cu * v[j]);
  }
}
// float32: in float arithmetic against a float copy of v, as torch's
// float32 autograd computes this gradient (eight lanes per instruction).
FASTGAN_CPU_CLONES void scale_backward_row_f32(
    const float* __restrict__ g, const float* __restrict__ v, float* __restrict__ out, int64_t n, float inv,
    float cu) {
  FASTGAN_UNROLL
  for (int64_t j = 0; j < n; ++j) {
    out[j] = g[j] * inv - cu * v[j];
  }
}
FASTGAN_CPU_CLONES void scale_backward_row(
    const double* g, const double* v, double* out, int64_t n, double inv, double cu) {
  scale_backward_row_generic(g, v, out, n, inv, cu);
}
template <typename T>
void scale_backward_row(const T* g, const double* v, T* out, int64_t n, double inv, double cu) {
  scale_backward_row_generic(g, v, out, n, inv, cu);
}

// <g, w> over n elements, in float64 (float32: float lanes over pieces of
// kDotPiece elements, each widened once).
constexpr int64_t kDotPiece = 1024;
double block_dot(const float* g, const float* w, int64_t n) {
  double sum = 0;
  for (int64_t lo = 0; lo < n; lo += kDotPiece) {
    sum += dot_f32(g + lo, w + lo, std::min(kDotPiece, n - lo));
  }
  return sum;
}
double block_dot(const double* g, const double* w, int64_t n) {
  return dot_f64(g, w, n);
}
template <typename T>
double block_dot(const T* g, const T* w, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(g[i]) * static_cast<double>(w[i]);
  return sum;
}

// out[a, h, b] = g / sigma - coef * u[h] * v[a * B + b], rows in parallel.
template <typename T>
void scale_backward_rows(
    const T* g, const double* v, const double* u, T* out, const MatrixShape& s, double inv, double coef) {
  const int64_t rows = s.a * s.h;
  const int64_t rows_per_task = std::max<int64_t>(1, kGrain / std::max<int64_t>(s.b, 1));
  // row(r, offset of its slab of v, coef * u_h).
  const auto each_row = [&](const auto& row) {
    at::parallel_for(0, rows, rows_per_task, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        row(r, (r / s.h) * s.b, coef * u[r % s.h]);
      }
    });
  };
  if constexpr (std::is_same_v<T, float>) {
    const std::vector<float> vf(v, v + s.cols());
    each_row([&](int64_t r, int64_t vo, double cu) {
      scale_backward_row_f32(
          g + r * s.b, vf.data() + vo, out + r * s.b, s.b, static_cast<float>(inv), static_cast<float>(cu));
    });
  } else {
    each_row([&](int64_t r, int64_t vo, double cu) {
      scale_backward_row(g + r * s.b, v + vo, out + r * s.b, s.b, inv, cu);
    });
  }
}

at::Tensor scale(
    const at::Tensor& weight, const at::Tensor& state, int64_t index, int64_t offset,
    int64_t dim) {
  spectral_norm::check_scale(weight, state, index, offset, dim, spectral_norm::kScale);
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(w.sizes(), w.options());
  const double sigma = state.const_data_ptr<double>()[index];
  const int64_t n = w.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), spectral_norm::kScale, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto s = static_cast<acc_t>(static_cast<scalar_t>(sigma));
    const scalar_t* in = w.const_data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      divide_span(in + begin, o + begin, end - begin, s);
    });
  });
  return out;
}

at::Tensor scale_backward(
    const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& state, int64_t index,
    int64_t offset, int64_t dim) {
  const MatrixShape s = spectral_norm::check_scale(
      weight, state, index, offset, dim, spectral_norm::kScaleBackward);
  spectral_norm::check_grad(grad, weight, spectral_norm::kScaleBackward);
  const at::Tensor g = grad.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(w.sizes(), w.options());
  const int64_t n = w.numel();
  if (n == 0) {
    return out;
  }
  const double* st = state.const_data_ptr<double>();
  const double* u = st + offset;
  const double* v = st + offset + s.h;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, w.scalar_type(), spectral_norm::kScaleBackward, [&] {
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* wp = w.const_data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        // <grad, W>, in fixed-size blocks summed in order (deterministic).
        const int64_t n_blocks = (n + kGrain - 1) / kGrain;
        std::vector<double> block_dots(n_blocks, 0.0);
        at::parallel_for(0, n_blocks, 1, [&](int64_t begin, int64_t end) {
          for (int64_t bk = begin; bk < end; ++bk) {
            const int64_t lo = bk * kGrain;
            block_dots[bk] = block_dot(gp + lo, wp + lo, std::min(n, lo + kGrain) - lo);
          }
        });
        double gw = 0;
        for (double d : block_dots) gw += d;
        const double sigma = st[index];
        const double coef = gw / (sigma * sigma);
        const double inv = 1.0 / sigma;
        scale_backward_rows(gp, v, u, o, s, inv, coef);
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("spectral_norm_power_iteration", &power_iteration);
  m.impl("spectral_norm_scale", &scale);
  m.impl("spectral_norm_scale_backward", &scale_backward);
}

}  // namespace fastgan::cpu
