// fastgan::linear_sum_assignment on the CPU: exact minimum-cost assignment.
//
// For each (n, m) cost matrix with n <= m, every row gets a distinct column
// so that the total cost is minimal: shortest augmenting paths with dual
// potentials (Jonker-Volgenant's augmentation, Dijkstra on reduced costs,
// O(n^2 m) worst case), in float64. The duals u (n) and v (m) come out
// feasible, u_i + v_j <= C_ij, and tight on the assignment, so that
// sum(u) + sum(v over assigned columns) equals the optimal cost: the solver
// certifies its own optimality. Problems of a batch are solved in parallel.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace fastgan::cpu {
namespace {

constexpr const char* kOp = "fastgan::linear_sum_assignment";

// Solves one problem; false if no finite assignment exists (cannot happen
// with finite costs, kept as a guard).
template <typename scalar_t>
bool solve(const scalar_t* cost, int64_t n, int64_t m, int64_t* col4row, double* u, double* v) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<int64_t> row4col(m, -1), path(m, -1), remaining(m);
  std::vector<double> shortest(m);
  std::vector<char> row_seen(n), col_seen(m);
  for (int64_t i = 0; i < n; ++i) {
    u[i] = 0.0;
    col4row[i] = -1;
  }
  for (int64_t j = 0; j < m; ++j) {
    v[j] = 0.0;
  }
  if (n == m) {
    // Column reduction (Jonker-Volgenant's first phase): v_j = min_i C_ij
    // keeps the duals feasible with u = 0, and each column's minimising row,
    // if still free, takes it at zero reduced cost. Rectangular problems
    // skip it: there the duals of free columns must stay <= 0.
    std::vector<int64_t> arg(m, 0);
    for (int64_t j = 0; j < m; ++j) {
      v[j] = static_cast<double>(cost[j]);
    }
    for (int64_t i = 1; i < n; ++i) {
      const scalar_t* row = cost + i * m;
      for (int64_t j = 0; j < m; ++j) {
        const double c = static_cast<double>(row[j]);
        if (c < v[j]) {
          v[j] = c;
          arg[j] = i;
        }
      }
    }
    for (int64_t j = m - 1; j >= 0; --j) {
      if (col4row[arg[j]] < 0) {
        col4row[arg[j]] = j;
        row4col[j] = arg[j];
      }
    }
  }
  for (int64_t cur = 0; cur < n; ++cur) {
    if (col4row[cur] >= 0) {
      continue;
    }
    std::fill(shortest.begin(), shortest.end(), kInf);
    std::fill(row_seen.begin(), row_seen.end(), 0);
    std::fill(col_seen.begin(), col_seen.end(), 0);
    // Columns not yet reached; the first `left` entries of `remaining`.
    for (int64_t j = 0; j < m; ++j) {
      remaining[j] = m - 1 - j;
    }
    int64_t left = m;
    int64_t i = cur, sink = -1;
    double min_value = 0.0;
    while (sink < 0) {
      row_seen[i] = 1;
      const scalar_t* row = cost + i * m;
      const double ui = u[i];
      int64_t best = -1;
      double lowest = kInf;
      for (int64_t k = 0; k < left; ++k) {
        const int64_t j = remaining[k];
        const double r = min_value + static_cast<double>(row[j]) - ui - v[j];
        if (r < shortest[j]) {
          path[j] = i;
          shortest[j] = r;
        }
        // Ties go to a free column: the path ends sooner.
        if (shortest[j] < lowest || (shortest[j] == lowest && row4col[j] < 0)) {
          lowest = shortest[j];
          best = k;
        }
      }
      if (!(lowest < kInf)) {
        return false;
      }
      min_value = lowest;
      const int64_t j = remaining[best];
      col_seen[j] = 1;
      remaining[best] = remaining[--left];
      if (row4col[j] < 0) {
        sink = j;
      } else {
        i = row4col[j];
      }
    }
    // Dual update, then flip the path.
    u[cur] += min_value;
    for (int64_t r = 0; r < n; ++r) {
      if (row_seen[r] && r != cur) {
        u[r] += min_value - shortest[col4row[r]];
      }
    }
    for (int64_t j = 0; j < m; ++j) {
      if (col_seen[j]) {
        v[j] -= min_value - shortest[j];
      }
    }
    int64_t j = sink;
    while (true) {
      const int64_t r = path[j];
      row4col[j] = r;
      std::swap(col4row[r], j);
      if (r == cur) {
        break;
      }
    }
  }
  return true;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_sum_assignment(const at::Tensor& cost) {
  TORCH_CHECK_TYPE(
      cost.scalar_type() == at::kFloat || cost.scalar_type() == at::kDouble, kOp,
      ": `cost` has dtype ", cost.scalar_type(), "; expected float32 or float64");
  TORCH_CHECK_VALUE(
      cost.dim() == 3 && cost.size(1) <= cost.size(2), kOp,
      ": `cost` must have shape (B, n, m) with n <= m, got ", cost.sizes());
  const at::Tensor c = cost.contiguous();
  const int64_t batch = c.size(0), n = c.size(1), m = c.size(2);
  const auto f64 = c.options().dtype(at::kDouble);
  at::Tensor cols = at::empty({batch, n}, c.options().dtype(at::kLong));
  at::Tensor u = at::empty({batch, n}, f64);
  at::Tensor v = at::empty({batch, m}, f64);
  std::atomic<int64_t> bad_values{-1}, infeasible{-1};
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), kOp, [&] {
    const scalar_t* cp = c.const_data_ptr<scalar_t>();
    int64_t* colp = cols.data_ptr<int64_t>();
    double* up = u.data_ptr<double>();
    double* vp = v.data_ptr<double>();
    // About n * m * n operations per problem: one problem per task unless tiny.
    const int64_t grain = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(n * n * m, 1));
    at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* problem = cp + b * n * m;
        double total = 0.0;
        for (int64_t k = 0; k < n * m; ++k) {
          total += static_cast<double>(problem[k]) * 0.0;  // NaN or Inf stays NaN
        }
        if (std::isnan(total)) {
          bad_values = b;
          continue;
        }
        if (!solve(problem, n, m, colp + b * n, up + b * n, vp + b * m)) {
          infeasible = b;
        }
      }
    });
  });
  TORCH_CHECK_VALUE(
      bad_values.load() < 0, kOp, ": `cost` of problem ", bad_values.load(),
      " contains NaN or infinite values");
  TORCH_CHECK(infeasible.load() < 0, kOp, ": problem ", infeasible.load(), " has no finite assignment");
  return {cols, u, v};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("linear_sum_assignment", &linear_sum_assignment);
}

}  // namespace fastgan::cpu
