// fastgan::linear_sum_assignment on the CPU: exact minimum-cost assignment.
//
// For each (n, m) cost matrix with n <= m, every row gets a distinct column
// so that the total cost is minimal: shortest augmenting paths with dual
// potentials (Jonker-Volgenant's augmentation, Dijkstra on reduced costs,
// O(n^2 m) worst case), in float64. The duals u (n) and v (m) come out
// feasible, u_i + v_j <= C_ij, and tight on the assignment, so that
// sum(u) + sum(v over assigned columns) equals the optimal cost: the solver
// certifies its own optimality. Problems of a batch are solved in parallel.
//
// Each step of the search relaxes one whole row with four-lane vector code
// (reached columns are marked NaN, so no comparison selects them) and finds
// the next column in the same pass; square problems first go through
// Jonker-Volgenant's column reduction and a bounded augmenting row reduction.
// A single problem shares every row scan among the threads (at least 512
// columns each: m >= 1024 for two), with the same result as one thread.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "vectorize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <tuple>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastgan::cpu {
namespace {

constexpr const char* kOp = "fastgan::linear_sum_assignment";

// The four-lane helpers below are always inlined, so the vector ABI note
// GCC gives for 32-byte arguments does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// Four-lane vectors for the row scans (GCC/Clang vector extensions: AVX2 in
// the FASTGAN_CPU_CLONES avx2 clones, SSE2 pairs otherwise).
#if defined(__GNUC__)
#define FASTGAN_LSA_VECTOR 1
using vec4d = double __attribute__((vector_size(32)));
using vec4f = float __attribute__((vector_size(16)));
using vec4l = int64_t __attribute__((vector_size(32)));

FASTGAN_ALWAYS_INLINE inline vec4d load4(const double* p) {
  vec4d x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}
FASTGAN_ALWAYS_INLINE inline vec4d load4(const float* p) {
  vec4f x;
  std::memcpy(&x, p, sizeof(x));
  return __builtin_convertvector(x, vec4d);
}
FASTGAN_ALWAYS_INLINE inline void store4(double* p, vec4d x) {
  std::memcpy(p, &x, sizeof(x));
}
FASTGAN_ALWAYS_INLINE inline double min4(vec4d x) {
  const double a = x[0] < x[1] ? x[0] : x[1];
  const double b = x[2] < x[3] ? x[2] : x[3];
  return a < b ? a : b;
}
#endif

constexpr double kInf = std::numeric_limits<double>::infinity();

// Fewest columns per thread when one problem's row scans are shared.
constexpr int64_t kSplitColumns = 512;

// True if any entry is NaN or infinite.
template <typename scalar_t>
FASTGAN_ALWAYS_INLINE inline bool any_nonfinite(const scalar_t* p, int64_t count) {
  // x - x is 0 for finite x and NaN otherwise; the OR-reduction of the
  // comparisons vectorises (a sum would be a serial floating-point chain).
  int bad = 0;
  for (int64_t k = 0; k < count; ++k) {
    bad |= !(p[k] - p[k] == scalar_t(0));
  }
  return bad != 0;
}

// One relaxation of Dijkstra's search from row i: for every column still
// pending, shortest[j] = min(shortest[j], base + C_ij - v_j), recording row i
// as the predecessor. Reached columns hold NaN, which no comparison selects.
// Returns the smallest pending shortest[j], (in `best`) its first column and
// (in `tied`) whether another column shares that distance.
template <typename scalar_t>
FASTGAN_ALWAYS_INLINE inline double relax_row(
    const scalar_t* row, const double* v, double* shortest, int64_t* pred, double base,
    int64_t row_id, int64_t m, int64_t& best, bool& tied) {
  int64_t j = 0;
  double lowest = kInf;
  best = -1;
  tied = false;
#ifdef FASTGAN_LSA_VECTOR
  using mask4 = decltype(vec4d{} < vec4d{});
  vec4d low4 = {kInf, kInf, kInf, kInf};
  vec4d at4 = {-1.0, -1.0, -1.0, -1.0};
  mask4 tie4 = {0, 0, 0, 0};
  vec4d col4 = {0.0, 1.0, 2.0, 3.0};
  const vec4d four = {4.0, 4.0, 4.0, 4.0};
  const vec4d base4 = {base, base, base, base};
  const vec4l id4 = {row_id, row_id, row_id, row_id};
  for (; j + 4 <= m; j += 4) {
    const vec4d r = base4 + load4(row + j) - load4(v + j);
    vec4d s = load4(shortest + j);
    const auto better = r < s;
    s = better ? r : s;
    store4(shortest + j, s);
    vec4l p;
    std::memcpy(&p, pred + j, sizeof(p));
    p = better ? id4 : p;
    std::memcpy(pred + j, &p, sizeof(p));
    const auto lower = s < low4;
    tie4 = lower ? mask4{} : (tie4 | (s == low4));
    low4 = lower ? s : low4;
    at4 = lower ? col4 : at4;
    col4 += four;
  }
  for (int k = 0; k < 4; ++k) {
    const int64_t at = static_cast<int64_t>(at4[k]);
    if (low4[k] < lowest) {
      lowest = low4[k];
      best = at;
      tied = tie4[k] != 0;
    } else if (low4[k] == lowest) {
      tied = true;
      best = at < best ? at : best;
    }
  }
#endif
  for (; j < m; ++j) {
    const double r = base + static_cast<double>(row[j]) - v[j];
    if (r < shortest[j]) {
      shortest[j] = r;
      pred[j] = row_id;
    }
    if (shortest[j] < lowest) {
      lowest = shortest[j];
      best = j;
      tied = false;
    } else if (shortest[j] == lowest) {
      tied = true;
    }
  }
  return lowest;
}

// The two smallest reduced costs C_ij - v_j of a row and their columns.
template <typename scalar_t>
FASTGAN_ALWAYS_INLINE inline void two_smallest(
    const scalar_t* row, const double* v, int64_t m, double& u1, int64_t& j1, double& u2,
    int64_t& j2) {
  u1 = kInf;
  u2 = kInf;
  j1 = 0;
  j2 = m > 1 ? 1 : 0;
  for (int64_t j = 0; j < m; ++j) {
    const double h = static_cast<double>(row[j]) - v[j];
    if (h < u2) {
      if (h < u1) {
        u2 = u1;
        j2 = j1;
        u1 = h;
        j1 = j;
      } else {
        u2 = h;
        j2 = j;
      }
    }
  }
}

// A barrier for a team whose threads each hold their own core: the searches
// it separates take microseconds, far less than a sleeping thread takes to
// wake, so the threads spin (yielding the core after a while, in case it is
// shared).
class SpinBarrier {
 public:
  void wait(int team, bool& sense) {
    sense = !sense;
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      sense_.store(sense, std::memory_order_release);
      return;
    }
    for (int spins = 0; sense_.load(std::memory_order_acquire) != sense; ++spins) {
      pause(spins);
    }
  }

  // One wait of a spinning loop: a pause, or after many a yield of the core.
  static void pause(int spins) {
    if (spins >= kSpins) {
      std::this_thread::yield();
      return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

 private:
  static constexpr int kSpins = 1 << 14;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<bool> sense_{false};
};

// The team's barrier; nothing to wait for when a thread searches alone.
FASTGAN_ALWAYS_INLINE inline void wait(SpinBarrier* sync, int team, bool& sense) {
  if (team > 1) {
    sync->wait(team, sense);
  }
}

// One thread's nearest pending column after a search step, published with
// the step's number: the others wait for the number, not for a barrier, so a
// step costs one cache line's trip between the cores.
struct alignas(64) Nearest {
  double lowest = kInf;
  int64_t best = -1;
  std::atomic<int64_t> step{-1};
};

// What the threads searching one problem share: the column state of
// Dijkstra's search (each thread writes only its own slice of the columns),
// the rows of the current path and every thread's nearest column.
struct Search {
  Search(int64_t m, int team)
      : shortest(m), dist(m), pred(m), nearest(2 * static_cast<size_t>(team)) {}
  std::vector<double> shortest, dist;
  std::vector<int64_t> pred;
  std::vector<int64_t> seen_rows;
  std::vector<Nearest> nearest;  // two halves for alternate steps: a slot is
                                 // rewritten only after every thread read it
  bool found_all = true;
};

// Shortest augmenting paths (Dijkstra on reduced costs C_ij - u_i - v_j) for
// every free row, each search step one scan of a cost row; run by every
// thread t of a team of `team`. Each thread scans its own slice of the
// columns and publishes its nearest one; once all have, every thread takes
// the same next column (the nearest, a free one on ties, else the first).
// The choices and the arithmetic are those of one thread, so the result is
// the same bit for bit; a single large problem then gets every core's share
// of the memory bandwidth that a row scan needs.
template <typename scalar_t>
FASTGAN_ALWAYS_INLINE inline void augment_generic(
    const scalar_t* cost, int64_t n, int64_t m, int64_t* col4row, int64_t* row4col, double* u,
    double* v, Search& search, int t, int team, SpinBarrier* sync) {
  constexpr double kReached = std::numeric_limits<double>::quiet_NaN();
  double* shortest = search.shortest.data();
  double* dist = search.dist.data();
  int64_t* pred = search.pred.data();
  std::vector<int64_t>& seen_rows = search.seen_rows;
  Nearest* nearest = search.nearest.data();
  bool sense = false;
  int64_t step = 0;
  const int64_t lo = m * t / team, hi = m * (t + 1) / team;
  // This thread's free columns (ascending), and the columns it reached.
  std::vector<int64_t> free_cols, reached;
  for (int64_t j = lo; j < hi; ++j) {
    if (row4col[j] < 0) {
      free_cols.push_back(j);
    }
  }
  int parity = 0;  // which half of nearest[] this step uses
  bool ok = true;
  for (int64_t cur = 0; cur < n && ok; ++cur) {
    if (col4row[cur] >= 0) {
      continue;
    }
    std::fill(shortest + lo, shortest + hi, kInf);
    reached.clear();
    if (t == 0) {
      seen_rows.clear();
    }
    int64_t i = cur, sink = -1;
    double min_value = 0.0;
    while (sink < 0) {
      if (t == 0) {
        seen_rows.push_back(i);
      }
      int64_t best;
      bool tied;
      double lowest = relax_row(
          cost + i * m + lo, v + lo, shortest + lo, pred + lo, min_value - u[i],
          i, hi - lo, best, tied);
      if (best >= 0) {
        best += lo;
        // Among columns at the minimum distance prefer a free one: the path
        // ends sooner (this matters for costs with many ties).
        if (tied && row4col[best] >= 0) {
          for (const int64_t j : free_cols) {
            if (shortest[j] == lowest) {
              best = j;
              break;
            }
          }
        }
      }
      Nearest* slots = nearest + parity * team;
      slots[t].lowest = lowest;
      slots[t].best = best;
      slots[t].step.store(step, std::memory_order_release);
      for (int s = 0; s < team; ++s) {
        for (int spins = 0; slots[s].step.load(std::memory_order_acquire) != step; ++spins) {
          SpinBarrier::pause(spins);
        }
      }
      ++step;
      lowest = kInf;
      best = -1;
      bool best_free = false;
      for (int s = 0; s < team; ++s) {
        const Nearest& c = slots[s];
        if (c.best < 0) {
          continue;
        }
        const bool is_free = row4col[c.best] < 0;
        if (c.lowest < lowest || (c.lowest == lowest && is_free && !best_free)) {
          lowest = c.lowest;
          best = c.best;
          best_free = is_free;
        }
      }
      parity ^= 1;
      if (!(lowest < kInf)) {
        ok = false;
        break;
      }
      min_value = lowest;
      if (best >= lo && best < hi) {
        dist[best] = lowest;
        shortest[best] = kReached;
        reached.push_back(best);
      }
      if (row4col[best] < 0) {
        sink = best;
      } else {
        i = row4col[best];
      }
    }
    if (!ok) {
      break;
    }
    // Dual update over the reached columns and rows, then flip the path.
    for (const int64_t j : reached) {
      v[j] -= min_value - dist[j];
    }
    if (sink >= lo && sink < hi) {
      free_cols.erase(std::find(free_cols.begin(), free_cols.end(), sink));
    }
    wait(sync, team, sense);  // every reached column's distance is written
    if (t == 0) {
      u[cur] += min_value;
      for (const int64_t r : seen_rows) {
        if (r != cur) {
          u[r] += min_value - dist[col4row[r]];
        }
      }
      int64_t j = sink;
      while (true) {
        const int64_t r = pred[j];
        row4col[j] = r;
        std::swap(col4row[r], j);
        if (r == cur) {
          break;
        }
      }
    }
    wait(sync, team, sense);  // the flipped path and the row duals are visible
  }
  if (t == 0) {
    search.found_all = ok;
  }
}

FASTGAN_CPU_CLONES void augment(
    const float* cost, int64_t n, int64_t m, int64_t* col4row, int64_t* row4col, double* u,
    double* v, Search& search, int t, int team, SpinBarrier* sync) {
  augment_generic(cost, n, m, col4row, row4col, u, v, search, t, team, sync);
}
FASTGAN_CPU_CLONES void augment(
    const double* cost, int64_t n, int64_t m, int64_t* col4row, int64_t* row4col, double* u,
    double* v, Search& search, int t, int team, SpinBarrier* sync) {
  augment_generic(cost, n, m, col4row, row4col, u, v, search, t, team, sync);
}

// The start of the search: every row free and the duals zero, except that
// square problems start as Jonker-Volgenant's do: column reduction, then two
// rounds of augmenting row reduction (an auction-like pass: a free row takes
// its cheapest column, lowering that column's dual by the gap to its second
// cheapest, and evicts the previous owner) leave few rows for the shortest
// augmenting paths. Throughout, every assigned row's column is a minimum of
// its reduced costs C_ij - v_j, so u_i = C_i,col(i) - v_col(i) keeps the duals
// feasible and tight.
template <typename scalar_t>
FASTGAN_ALWAYS_INLINE inline void initialise(
    const scalar_t* cost, int64_t n, int64_t m, int64_t* col4row, int64_t* row4col, double* u,
    double* v) {
  for (int64_t j = 0; j < m; ++j) {
    row4col[j] = -1;
  }
  for (int64_t i = 0; i < n; ++i) {
    u[i] = 0.0;
    col4row[i] = -1;
  }
  for (int64_t j = 0; j < m; ++j) {
    v[j] = 0.0;
  }
  if (n == m && n > 0) {
    // Column reduction: v_j = min_i C_ij keeps the duals feasible with
    // u = 0, and each column's minimising row, if still free, takes it at
    // zero reduced cost. Rectangular problems skip it (and the row
    // reduction): there the duals of free columns must stay <= 0.
    std::vector<double> arg(m, 0.0);
    for (int64_t j = 0; j < m; ++j) {
      v[j] = static_cast<double>(cost[j]);
    }
    for (int64_t i = 1; i < n; ++i) {
      const scalar_t* row = cost + i * m;
      const double id = static_cast<double>(i);
      for (int64_t j = 0; j < m; ++j) {
        const double c = static_cast<double>(row[j]);
        const bool lower = c < v[j];
        v[j] = lower ? c : v[j];
        arg[j] = lower ? id : arg[j];
      }
    }
    for (int64_t j = m - 1; j >= 0; --j) {
      const int64_t i = static_cast<int64_t>(arg[j]);
      if (col4row[i] < 0) {
        col4row[i] = j;
        row4col[j] = i;
      }
    }
    std::vector<int64_t> free_rows, next;
    for (int64_t i = 0; i < n; ++i) {
      if (col4row[i] < 0) {
        free_rows.push_back(i);
      }
    }
    // Each step costs one row scan. On geometric costs (squared distances
    // of points) long chains of small dual decrements barely shrink the
    // free list, so the budget is one scan per row; stopping anywhere keeps
    // the invariant.
    int64_t budget = n;
    for (int round = 0; round < 2 && !free_rows.empty() && budget > 0; ++round) {
      next.clear();
      size_t k = 0;
      while (k < free_rows.size()) {
        if (--budget < 0) {
          next.insert(next.end(), free_rows.begin() + static_cast<std::ptrdiff_t>(k), free_rows.end());
          break;
        }
        const int64_t i = free_rows[k++];
        double u1, u2;
        int64_t j1, j2;
        two_smallest(cost + i * m, v, m, u1, j1, u2, j2);
        int64_t owner = row4col[j1];
        if (u1 < u2) {
          v[j1] -= u2 - u1;
        } else if (owner >= 0) {
          j1 = j2;
          owner = row4col[j2];
        }
        col4row[i] = j1;
        row4col[j1] = i;
        if (owner >= 0) {
          col4row[owner] = -1;
          if (u1 < u2) {
            free_rows[--k] = owner;  // evicted by a strict improvement: retry it at once
          } else {
            next.push_back(owner);
          }
        }
      }
      free_rows.swap(next);
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = col4row[i];
      u[i] = j >= 0 ? static_cast<double>(cost[i * m + j]) - v[j] : 0.0;
    }
  }
}

FASTGAN_CPU_CLONES void initialise(
    const float* cost, int64_t n, int64_t m, int64_t* col4row, int64_t* row4col, double* u,
    double* v) {
  initialise<float>(cost, n, m, col4row, row4col, u, v);
}
FASTGAN_CPU_CLONES void initialise(
    const double* cost, int64_t n, int64_t m, int64_t* col4row, int64_t* row4col, double* u,
    double* v) {
  initialise<double>(cost, n, m, col4row, row4col, u, v);
}

// Solves one problem with a team of `threads` (1: the calling thread alone);
// false if no finite assignment exists (cannot happen with finite costs, kept
// as a guard).
template <typename scalar_t>
bool solve(
    const scalar_t* cost, int64_t n, int64_t m, int64_t* col4row, double* u, double* v,
    int threads) {
  std::vector<int64_t> row4col(m);
  initialise(cost, n, m, col4row, row4col.data(), u, v);
#ifdef _OPENMP
  if (threads > 1) {
    Search search(m, threads);
    SpinBarrier sync;
#pragma omp parallel num_threads(threads)
    augment(cost, n, m, col4row, row4col.data(), u, v, search, omp_get_thread_num(),
            omp_get_num_threads(), &sync);
    return search.found_all;
  }
#endif
  Search search(m, 1);
  augment(cost, n, m, col4row, row4col.data(), u, v, search, 0, 1, nullptr);
  return search.found_all;
}

FASTGAN_CPU_CLONES bool has_nonfinite(const float* p, int64_t count) {
  return any_nonfinite(p, count);
}
FASTGAN_CPU_CLONES bool has_nonfinite(const double* p, int64_t count) {
  return any_nonfinite(p, count);
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
    // A single problem shares its row scans among the threads, each scanning
    // at least kSplitColumns columns; a batch runs its problems in parallel.
    const int threads = batch == 1 && !at::in_parallel_region()
        ? static_cast<int>(std::min<int64_t>(at::get_num_threads(), m / kSplitColumns))
        : 1;
    at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* problem = cp + b * n * m;
        if (has_nonfinite(problem, n * m)) {
          bad_values = b;
          continue;
        }
        if (!solve(problem, n, m, colp + b * n, up + b * n, vp + b * m, threads)) {
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
