// fastgan::emd on the CPU: exact optimal transport with general weights.
//
// Each problem min <Gamma, M> s.t. Gamma 1 = a, Gamma^T 1 = b, Gamma >= 0 is
// a transportation problem, solved by the primal network simplex on the
// bipartite graph rows -> columns (every arc uncapacitated), in float64:
//
// - Start: a star. An artificial root is joined to every node by an arc of
//   cost ART that carries its whole supply; ART exceeds the cost of any
//   alternating path, so the optimum moves every unit onto real arcs.
// - Pricing: block search (Grigoriadis), as in LEMON: scan blocks of
//   sqrt(n m) arcs from where the last scan stopped and enter the most
//   negative reduced cost c_ij + pi_i - pi_j of the first block holding one.
// - Ratio test with the strongly feasible tree rule (the last blocking arc
//   met going round the cycle from the apex), which rules out cycling on
//   the many degenerate pivots of transport problems.
// - The tree: parent pointers, depths and doubly linked child lists. A pivot
//   cuts the subtree under the leaving arc, re-roots it at the entering
//   arc's end (reversing the stem) and recomputes its depths and potentials
//   from the parents in one traversal, so potentials never drift over many
//   pivots.
//
// Zero weights are dropped before solving (their rows and columns carry no
// mass); their duals are then set to the largest feasible value, so that
// they are the one-sided derivatives of the cost. Returned duals are
// centred as POT centres them (sum a u = sum b v), and b is scaled to a's
// mass (POT's convention; the Python API rejects masses that differ by
// more than rounding). Problems of a batch are solved in parallel.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "../common/checks.h"
#include "vectorize.h"

namespace fastgan::cpu {
namespace {

constexpr const char* kOp = "fastgan::emd";

// Status codes: POT's ProblemType values.
constexpr int32_t kInfeasible = 0;
constexpr int32_t kOptimal = 1;
constexpr int32_t kMaxIterReached = 3;

constexpr int8_t kUp = 1;     // the arc to the parent leaves the node
constexpr int8_t kDown = -1;  // the arc to the parent enters the node

// min_k c_k + pi_row - pi_cols_k over a row segment: the pricing pass's
// inner loop, most of the solver's time on assignment-like problems. GCC
// leaves the scalar min-reduction unvectorised, so it is written with
// vector types (4 doubles: one AVX2 register, two SSE2 ones); the argmin is
// searched afterwards, only in the rare segments that beat the block's best.
#if defined(__GNUC__)
typedef double Double4 __attribute__((vector_size(32)));
#endif

FASTGAN_CPU_CLONES double min_reduced_cost(const double* c, double pi_row, const double* pi_cols, int64_t len) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double lowest = kInf;
  int64_t k = 0;
#if defined(__GNUC__)
  Double4 m = {kInf, kInf, kInf, kInf};
  const Double4 row = {pi_row, pi_row, pi_row, pi_row};
  for (; k + 4 <= len; k += 4) {
    Double4 ck, pk;
    std::memcpy(&ck, c + k, sizeof(ck));
    std::memcpy(&pk, pi_cols + k, sizeof(pk));
    const Double4 r = ck + row - pk;
    m = r < m ? r : m;
  }
  lowest = std::min(std::min(m[0], m[1]), std::min(m[2], m[3]));
#endif
  for (; k < len; ++k) {
    const double r = c[k] + pi_row - pi_cols[k];
    lowest = r < lowest ? r : lowest;
  }
  return lowest;
}

// One transportation problem with strictly positive supplies (rows) and
// demands (columns) of equal mass and a dense cost (n x m, row-major, >= 0).
class TransportSimplex {
 public:
  TransportSimplex(int64_t n, int64_t m, const double* cost, const double* supply, const double* demand, double max_cost)
      : n_(n), m_(m), nm_(n * m), root_(n + m), cost_(cost) {
    const int64_t nodes = n + m + 1;
    parent_.assign(nodes, -1);
    pred_.assign(nodes, -1);
    dir_.assign(nodes, kUp);
    depth_.assign(nodes, 0);
    first_child_.assign(nodes, -1);
    next_sib_.assign(nodes, -1);
    prev_sib_.assign(nodes, -1);
    pi_.assign(nodes, 0.0);
    flow_.assign(nodes, 0.0);
    pred_cost_.assign(nodes, 0.0);
    in_tree_.assign(nm_, 0);
    // Any alternating path costs less than (n + m) max_cost.
    art_ = static_cast<double>(nodes) * (max_cost > 0 ? max_cost : 1.0);
    // Potentials are O(ART) and carry a few ulps of it per tree level: an
    // arc enters only if its reduced cost is clearly negative at that scale.
    tol_ = 64 * DBL_EPSILON * art_;
    block_ = std::max<int64_t>(static_cast<int64_t>(std::sqrt(static_cast<double>(nm_))), 10);
    for (int64_t u = 0; u < n + m; ++u) {
      parent_[u] = root_;
      pred_[u] = nm_ + u;
      pred_cost_[u] = art_;
      depth_[u] = 1;
      attach(u, root_);
      if (u < n) {  // row -> root
        dir_[u] = kUp;
        flow_[u] = supply[u];
        pi_[u] = -art_;
      } else {  // root -> column
        dir_[u] = kDown;
        flow_[u] = demand[u - n];
        pi_[u] = art_;
      }
    }
  }

  // Pivots until optimal or `max_iter` pivots (<= 0: no cap).
  int32_t run(int64_t max_iter) {
    int64_t iterations = 0;
    int64_t in_arc = -1;
    while (find_entering(in_arc)) {
      if (max_iter > 0 && iterations >= max_iter) {
        return kMaxIterReached;
      }
      if (!pivot(in_arc)) {
        return kInfeasible;  // unbounded cycle: cannot happen with finite costs
      }
      ++iterations;
    }
    // Whatever the artificial arcs still carry was not transported.
    double stranded = 0.0, mass = 0.0;
    for (int64_t u = 0; u < n_ + m_; ++u) {
      if (pred_[u] >= nm_) {
        stranded += flow_[u];
      }
    }
    for (int64_t u = 0; u < n_ + m_; ++u) {
      if (pred_[u] < nm_) {
        mass += flow_[u];
      }
    }
    return stranded <= 1e-9 * (mass + stranded) ? kOptimal : kInfeasible;
  }

  // Calls f(i, j, flow) for every real arc of the tree carrying flow.
  template <typename F>
  void for_each_flow(F f) const {
    for (int64_t u = 0; u < n_ + m_; ++u) {
      const int64_t e = pred_[u];
      if (e < nm_ && flow_[u] > 0) {
        f(e / m_, e % m_, flow_[u]);
      }
    }
  }

  // Node potentials with pi_t - pi_s <= c_st on every arc (tight on the tree),
  // each tree component measured from its own attachment to the root so that
  // no rounding at the scale of ART enters (components differ by 0 or 2 ART).
  std::vector<double> potentials() const {
    std::vector<double> out(n_ + m_ + 1, 0.0);
    std::vector<int64_t> stack;
    double reference = std::numeric_limits<double>::quiet_NaN();
    for (int64_t c = first_child_[root_]; c >= 0; c = next_sib_[c]) {
      const double offset = pi_[c];  // exactly +-ART
      if (std::isnan(reference)) {
        reference = offset;
      }
      out[c] = offset - reference;
      for (int64_t g = first_child_[c]; g >= 0; g = next_sib_[g]) {
        stack.push_back(g);
      }
      while (!stack.empty()) {
        const int64_t x = stack.back();
        stack.pop_back();
        out[x] = out[parent_[x]] + dir_[x] * -pred_cost_[x];
        for (int64_t g = first_child_[x]; g >= 0; g = next_sib_[g]) {
          stack.push_back(g);
        }
      }
    }
    return out;
  }

 private:
  int64_t arc_source(int64_t e) const {
    if (e < nm_) {
      return e / m_;
    }
    const int64_t u = e - nm_;
    return u < n_ ? u : root_;
  }
  int64_t arc_target(int64_t e) const {
    if (e < nm_) {
      return n_ + e % m_;
    }
    const int64_t u = e - nm_;
    return u < n_ ? root_ : u;
  }
  double arc_cost(int64_t e) const {
    return e < nm_ ? cost_[e] : art_;
  }

  void attach(int64_t c, int64_t p) {
    prev_sib_[c] = -1;
    next_sib_[c] = first_child_[p];
    if (first_child_[p] >= 0) {
      prev_sib_[first_child_[p]] = c;
    }
    first_child_[p] = c;
  }
  void detach(int64_t c) {
    if (prev_sib_[c] >= 0) {
      next_sib_[prev_sib_[c]] = next_sib_[c];
    } else {
      first_child_[parent_[c]] = next_sib_[c];
    }
    if (next_sib_[c] >= 0) {
      prev_sib_[next_sib_[c]] = prev_sib_[c];
    }
  }

  // Block search over the real arcs (artificial arcs never re-enter).
  bool find_entering(int64_t& in_arc) {
    double best = -tol_;
    in_arc = -1;
    int64_t e = next_arc_, remaining = nm_, count = block_;
    const double* pi_cols = pi_.data() + n_;
    while (remaining > 0) {
      const int64_t i = e / m_, j0 = e - i * m_;
      const int64_t len = std::min({m_ - j0, count, remaining});
      const double* c = cost_ + e;
      const double* pj = pi_cols + j0;
      const double pi_i = pi_[i];
      const double lowest = min_reduced_cost(c, pi_i, pj, len);
      if (lowest < best) {
        // The same expression finds the same value again. A tree arc's
        // reduced cost is 0 up to an ulp of the potentials, far above -tol,
        // so the minimum is a non-tree arc; the check is a guard.
        int64_t k = 0;
        while (k < len && c[k] + pi_i - pj[k] != lowest) {
          ++k;
        }
        if (k < len && !in_tree_[e + k]) {
          best = lowest;
          in_arc = e + k;
        } else {
          for (k = 0; k < len; ++k) {
            const double r = c[k] + pi_i - pj[k];
            if (r < best && !in_tree_[e + k]) {
              best = r;
              in_arc = e + k;
            }
          }
        }
      }
      e += len;
      if (e == nm_) {
        e = 0;
      }
      remaining -= len;
      count -= len;
      if (count == 0) {
        if (in_arc >= 0) {
          break;
        }
        count = block_;
      }
    }
    next_arc_ = e;
    return in_arc >= 0;
  }

  bool pivot(int64_t in_arc) {
    const int64_t s = arc_source(in_arc), t = arc_target(in_arc);
    int64_t a = s, b = t;
    while (a != b) {
      if (depth_[a] >= depth_[b]) {
        a = parent_[a];
      } else {
        b = parent_[b];
      }
    }
    const int64_t join = a;
    // Flow is pushed s -> t, then up from t to the apex and down to s: arcs
    // pointing up on s's side and down on t's side lose flow. Ties go to the
    // last one met from the apex: first on s's side (<), last on t's (<=).
    double delta = std::numeric_limits<double>::infinity();
    int64_t u_out = -1;
    bool out_on_source_side = false;
    for (int64_t x = s; x != join; x = parent_[x]) {
      if (dir_[x] == kUp && flow_[x] < delta) {
        delta = flow_[x];
        u_out = x;
        out_on_source_side = true;
      }
    }
    for (int64_t x = t; x != join; x = parent_[x]) {
      if (dir_[x] == kDown && flow_[x] <= delta) {
        delta = flow_[x];
        u_out = x;
        out_on_source_side = false;
      }
    }
    if (u_out < 0) {
      return false;
    }
    if (delta > 0) {
      for (int64_t x = s; x != join; x = parent_[x]) {
        flow_[x] -= dir_[x] * delta;
      }
      for (int64_t x = t; x != join; x = parent_[x]) {
        flow_[x] += dir_[x] * delta;
      }
    }
    flow_[u_out] = 0.0;
    if (pred_[u_out] < nm_) {
      in_tree_[pred_[u_out]] = 0;
    }
    in_tree_[in_arc] = 1;
    const int64_t u_in = out_on_source_side ? s : t;
    const int64_t v_in = out_on_source_side ? t : s;

    // Re-root the cut subtree at u_in: the stem u_in .. u_out flips.
    detach(u_out);
    int64_t c = u_in, new_parent = v_in, new_arc = in_arc;
    int8_t new_dir = u_in == s ? kUp : kDown;
    double new_flow = delta, new_cost = arc_cost(in_arc);
    while (true) {
      const int64_t old_parent = parent_[c], old_arc = pred_[c];
      const int8_t old_dir = dir_[c];
      const double old_flow = flow_[c], old_cost = pred_cost_[c];
      if (c != u_out) {
        detach(c);
      }
      parent_[c] = new_parent;
      pred_[c] = new_arc;
      dir_[c] = new_dir;
      flow_[c] = new_flow;
      pred_cost_[c] = new_cost;
      attach(c, new_parent);
      if (c == u_out) {
        break;
      }
      new_parent = c;
      new_arc = old_arc;
      new_dir = static_cast<int8_t>(-old_dir);
      new_flow = old_flow;
      new_cost = old_cost;
      c = old_parent;
    }
    // Depths and potentials of the moved subtree, from their parents.
    stack_.clear();
    stack_.push_back(u_in);
    while (!stack_.empty()) {
      const int64_t x = stack_.back();
      stack_.pop_back();
      const int64_t p = parent_[x];
      depth_[x] = depth_[p] + 1;
      const double w = pred_cost_[x];
      pi_[x] = dir_[x] == kUp ? pi_[p] - w : pi_[p] + w;
      for (int64_t g = first_child_[x]; g >= 0; g = next_sib_[g]) {
        stack_.push_back(g);
      }
    }
    return true;
  }

  const int64_t n_, m_, nm_, root_;
  const double* cost_;
  double art_ = 0, tol_ = 0;
  int64_t block_ = 10, next_arc_ = 0;
  std::vector<int64_t> parent_, pred_, depth_, first_child_, next_sib_, prev_sib_, stack_;
  std::vector<int8_t> dir_;
  // Per node, its arc to the parent: flow and cost (the cost kept here so
  // that re-rooting a subtree never reads the n x m cost matrix).
  std::vector<double> pi_, flow_, pred_cost_;
  std::vector<uint8_t> in_tree_;
};

// Tolerance on the relative difference of the two masses: the Python API's.
double mass_tolerance(at::ScalarType dtype, int64_t count) {
  const double eps = dtype == at::kDouble ? DBL_EPSILON : FLT_EPSILON;
  return std::max(1e-6, 4 * eps * std::sqrt(static_cast<double>(count)));
}

enum class Bad : int { kNone = 0, kNegativeA, kNegativeB, kNonFiniteM, kZeroMass, kMassMismatch };

// Sums the weights w[0..count) into `mass` and lists the positive ones in
// `support`; false at the first negative, NaN or infinite weight.
template <typename scalar_t>
bool scan_weights(const scalar_t* w, int64_t count, double& mass, std::vector<int64_t>& support) {
  for (int64_t i = 0; i < count; ++i) {
    const double x = static_cast<double>(w[i]);
    if (!(x >= 0) || std::isinf(x)) {
      return false;
    }
    mass += x;
    if (x > 0) {
      support.push_back(i);
    }
  }
  return true;
}

// Solves problem `p` of the batch into plan (n x m, zero on entry), u, v, cost.
template <typename scalar_t>
Bad solve_problem(
    const scalar_t* a, const scalar_t* b, const scalar_t* M, int64_t n, int64_t m, int64_t max_iter,
    double tolerance, scalar_t* plan, double* u, double* v, double* cost, int32_t* status) {
  double mass_a = 0.0, mass_b = 0.0;
  std::vector<int64_t> rows, cols;
  if (!scan_weights(a, n, mass_a, rows)) {
    return Bad::kNegativeA;
  }
  if (!scan_weights(b, m, mass_b, cols)) {
    return Bad::kNegativeB;
  }
  double check = 0.0;
  for (int64_t k = 0; k < n * m; ++k) {
    check += static_cast<double>(M[k]) * 0.0;  // NaN or Inf stays NaN
  }
  if (std::isnan(check)) {
    return Bad::kNonFiniteM;
  }
  if (!(mass_a > 0) || !(mass_b > 0)) {
    return Bad::kZeroMass;
  }
  if (std::abs(mass_a - mass_b) > tolerance * std::max(mass_a, mass_b)) {
    return Bad::kMassMismatch;
  }
  const int64_t nr = static_cast<int64_t>(rows.size()), nc = static_cast<int64_t>(cols.size());
  const double scale_b = mass_a / mass_b;
  std::vector<double> supply(nr), demand(nc), c(nr * nc);
  for (int64_t r = 0; r < nr; ++r) {
    supply[r] = static_cast<double>(a[rows[r]]);
  }
  for (int64_t k = 0; k < nc; ++k) {
    demand[k] = static_cast<double>(b[cols[k]]) * scale_b;
  }
  // Costs shifted to start at 0: the optimal plan is the same and the
  // artificial cost, hence the potentials' scale, stays as small as it can.
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int64_t r = 0; r < nr; ++r) {
    const scalar_t* row = M + rows[r] * m;
    double* crow = c.data() + r * nc;
    for (int64_t k = 0; k < nc; ++k) {
      crow[k] = static_cast<double>(row[cols[k]]);
      lo = std::min(lo, crow[k]);
      hi = std::max(hi, crow[k]);
    }
  }
  for (double& x : c) {
    x -= lo;
  }
  TransportSimplex simplex(nr, nc, c.data(), supply.data(), demand.data(), hi - lo);
  *status = simplex.run(max_iter);
  double total = 0.0;
  simplex.for_each_flow([&](int64_t r, int64_t k, double f) {
    const int64_t i = rows[r], j = cols[k];
    plan[i * m + j] = static_cast<scalar_t>(f);
    total += f * static_cast<double>(M[i * m + j]);
  });
  *cost = total;

  // Duals: u_i = -pi_i (+ the shift), v_j = pi_j on the solved rows and columns.
  const std::vector<double> pi = simplex.potentials();
  std::vector<char> row_solved(n, 0), col_solved(m, 0);
  for (int64_t r = 0; r < nr; ++r) {
    u[rows[r]] = lo - pi[r];
    row_solved[rows[r]] = 1;
  }
  for (int64_t k = 0; k < nc; ++k) {
    v[cols[k]] = pi[nr + k];
    col_solved[cols[k]] = 1;
  }
  // Zero-weight rows, then columns: the largest feasible dual.
  for (int64_t i = 0; i < n; ++i) {
    if (row_solved[i]) {
      continue;
    }
    double best = std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < nc; ++k) {
      best = std::min(best, static_cast<double>(M[i * m + cols[k]]) - v[cols[k]]);
    }
    u[i] = best;
  }
  for (int64_t j = 0; j < m; ++j) {
    if (col_solved[j]) {
      continue;
    }
    double best = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      best = std::min(best, static_cast<double>(M[i * m + j]) - u[i]);
    }
    v[j] = best;
  }
  // POT's centring: shift u up and v down by one constant so that
  // sum_i a_i u_i = sum_j b_j v_j (b at a's mass).
  double au = 0.0, bv = 0.0;
  for (int64_t r = 0; r < nr; ++r) {
    au += supply[r] * u[rows[r]];
  }
  for (int64_t k = 0; k < nc; ++k) {
    bv += demand[k] * v[cols[k]];
  }
  const double shift = (bv - au) / (2 * mass_a);
  for (int64_t i = 0; i < n; ++i) {
    u[i] += shift;
  }
  for (int64_t j = 0; j < m; ++j) {
    v[j] -= shift;
  }
  return Bad::kNone;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> emd(
    const at::Tensor& a, const at::Tensor& b, const at::Tensor& M, int64_t max_iter) {
  const auto dtype = M.scalar_type();
  TORCH_CHECK_TYPE(
      dtype == at::kFloat || dtype == at::kDouble, kOp, ": `M` has dtype ", dtype,
      "; expected float32 or float64");
  TORCH_CHECK_TYPE(
      a.scalar_type() == dtype, kOp, ": `a` has dtype ", a.scalar_type(), " but `M` has ", dtype);
  TORCH_CHECK_TYPE(
      b.scalar_type() == dtype, kOp, ": `b` has dtype ", b.scalar_type(), " but `M` has ", dtype);
  TORCH_CHECK_VALUE(M.dim() == 3, kOp, ": `M` must have shape (B, n, m), got ", M.sizes());
  check_same_device(a, {"a"}, M, {"M"}, kOp);
  check_same_device(b, {"b"}, M, {"M"}, kOp);
  const int64_t batch = M.size(0), n = M.size(1), m = M.size(2);
  TORCH_CHECK_VALUE(
      a.dim() == 2 && a.size(0) == batch && a.size(1) == n, kOp, ": `a` must have shape (B, n) = (",
      batch, ", ", n, "), got ", a.sizes());
  TORCH_CHECK_VALUE(
      b.dim() == 2 && b.size(0) == batch && b.size(1) == m, kOp, ": `b` must have shape (B, m) = (",
      batch, ", ", m, "), got ", b.sizes());
  TORCH_CHECK_VALUE(
      batch == 0 || (n > 0 && m > 0), kOp, ": `M` must have at least one row and one column, got ",
      M.sizes());
  const at::Tensor ac = a.contiguous(), bc = b.contiguous(), Mc = M.contiguous();
  const auto f64 = Mc.options().dtype(at::kDouble);
  at::Tensor plan = at::zeros({batch, n, m}, Mc.options());
  at::Tensor u = at::empty({batch, n}, f64);
  at::Tensor v = at::empty({batch, m}, f64);
  at::Tensor cost = at::empty({batch}, f64);
  at::Tensor status = at::empty({batch}, Mc.options().dtype(at::kInt));
  const double tolerance = mass_tolerance(dtype, n + m);
  std::atomic<int64_t> bad_problem{-1};
  std::atomic<int> bad_kind{0};
  AT_DISPATCH_FLOATING_TYPES(dtype, kOp, [&] {
    const scalar_t* ap = ac.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.const_data_ptr<scalar_t>();
    const scalar_t* Mp = Mc.const_data_ptr<scalar_t>();
    scalar_t* planp = plan.data_ptr<scalar_t>();
    double* up = u.data_ptr<double>();
    double* vp = v.data_ptr<double>();
    double* costp = cost.data_ptr<double>();
    int32_t* statusp = status.data_ptr<int32_t>();
    // A problem is at least n m work: one per task unless tiny.
    const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(n * m, 1));
    at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const Bad bad = solve_problem(
            ap + p * n, bp + p * m, Mp + p * n * m, n, m, max_iter, tolerance, planp + p * n * m,
            up + p * n, vp + p * m, costp + p, statusp + p);
        if (bad != Bad::kNone) {
          bad_problem = p;
          bad_kind = static_cast<int>(bad);
        }
      }
    });
  });
  const int64_t p = bad_problem.load();
  switch (static_cast<Bad>(bad_kind.load())) {
    case Bad::kNone:
      break;
    case Bad::kNegativeA:
      TORCH_CHECK_VALUE(false, kOp, ": `a` of problem ", p, " has negative, NaN or infinite weights");
    case Bad::kNegativeB:
      TORCH_CHECK_VALUE(false, kOp, ": `b` of problem ", p, " has negative, NaN or infinite weights");
    case Bad::kNonFiniteM:
      TORCH_CHECK_VALUE(false, kOp, ": `M` of problem ", p, " contains NaN or infinite values");
    case Bad::kZeroMass:
      TORCH_CHECK_VALUE(false, kOp, ": `a` or `b` of problem ", p, " has zero total mass");
    case Bad::kMassMismatch:
      TORCH_CHECK_VALUE(
          false, kOp, ": `a` and `b` of problem ", p, " have unequal mass (relative difference > ",
          tolerance, ")");
  }
  return {plan, u, v, cost, status};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("emd", &emd);
}

}  // namespace fastgan::cpu
