r"""Exact optimal transport with general weights: POT's ``emd`` / ``emd2``, and exact W_p.

The Earth Mover's distance between weights :math:`a \in \mathbb{R}^n_+` and
:math:`b \in \mathbb{R}^m_+` of equal mass, under a cost :math:`M`, is the
linear program (seed 004)

.. math::

    \mathrm{EMD}(a, b, M) = \min_{\Gamma \ge 0,\ \Gamma 1_m = a,\ \Gamma^\top 1_n = b} \langle \Gamma, M \rangle
    = \max_{u_i + v_j \le M_{ij}} a^\top u + b^\top v .

fastgan solves it exactly: a network simplex in C++ (float64, the problems
of a batch in parallel; for CUDA tensors it runs on the host's cores and the
results come back to the GPU), and, when both weights are uniform and n = m (the
minibatch case of GAN training), the exact assignment solver of
:mod:`fastgan.ot.assignment`, whose plan is a permutation divided by n and
whose duals are the LP duals as they are (u_i + v_j <= M_ij is the same
constraint; the cost is the assignment cost times the common weight).

Derivatives (of the cost; the plan and the duals are treated as locally
constant, which they are for a non-degenerate problem):
:math:`\partial \mathrm{EMD} / \partial M = \Gamma`,
:math:`\partial \mathrm{EMD} / \partial a = u - \bar u`,
:math:`\partial \mathrm{EMD} / \partial b = v - \bar v` (POT's centring: only
mass-preserving changes of a or b are meaningful, and these are the
gradients along them).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import torch

from fastgan import _library
from fastgan._tensors import check_float_dtype, positive, positive_int
from fastgan.ot.assignment import NONFINITE, assign_finite
from fastgan.ot._checks import (
    UNIT_BAND, check_clouds, check_finite, float_tensor, mass_tolerance, power_of_two_scale, root, unit_scale,
)
from fastgan.ot._compat import (
    ArrayLike,
    ShapeMismatchError,
    UnequalMassError,
    array_io,
    check_threads,
    external_stacklevel,
)
from fastgan.ot._sparse import sparse_cost
from fastgan.ot.sinkhorn import several_histograms

__all__ = ["emd", "emd2", "wasserstein"]

BACKENDS = ("auto", "reference")

#: POT's result codes.
RESULT_CODES = {0: "infeasible", 1: "optimal", 2: "unbounded", 3: "max_iter_reached"}


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")


def _weights(w: torch.Tensor | None, name: str, batch: int | None, count: int, M: torch.Tensor) -> torch.Tensor | None:
    """``w`` as (B, count) in M's dtype, or None for uniform (None or empty)."""
    if w is None:
        return None
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"`{name}` must be a Tensor or None, got {type(w).__name__}")
    if w.numel() == 0:
        return None
    check_float_dtype(w, name)
    if w.device != M.device:
        raise ValueError(f"`{name}` is on {w.device} but `M` is on {M.device}")
    expected = (count,) if batch is None else f"({count},) or ({batch}, {count})"
    if batch is None:
        if w.shape != (count,):
            raise ShapeMismatchError(f"`{name}` must have shape {expected}, got {tuple(w.shape)}")
        w = w.unsqueeze(0)
    else:
        if w.shape == (count,):
            w = w.expand(batch, count)
        elif w.shape != (batch, count):
            raise ShapeMismatchError(f"`{name}` must have shape {expected}, got {tuple(w.shape)}")
    w = w.to(M.dtype)
    wd = w.detach()
    check_finite(wd, name)
    if bool((wd < 0).any()):
        raise ValueError(f"`{name}` has negative weights")
    return w


def _check_masses(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, count: int) -> None:
    mass_a, mass_b = a.detach().double().sum(-1), b.detach().double().sum(-1)
    if bool((mass_a <= 0).any()) or bool((mass_b <= 0).any()):
        raise ValueError("`a` or `b` has zero total mass")
    gap = ((mass_a - mass_b).abs() / torch.maximum(mass_a, mass_b)).max()
    if float(gap) > mass_tolerance(dtype, count):
        raise UnequalMassError(
            f"`a` and `b` have unequal mass: relative difference {float(gap):.3g} "
            f"(tolerance {mass_tolerance(dtype, count):.3g} for {dtype})"
        )


def _is_uniform(w: torch.Tensor | None) -> bool:
    return w is None or bool((w.detach() == w.detach()[:, :1]).all())


class _Solution(NamedTuple):
    """Solved problems: a dense plan, or assignment columns with their common weight."""

    plan: torch.Tensor | None  #: (B, n, m) in M's dtype, or None on the assignment path
    cols: torch.Tensor | None  #: (B, n) int64: the column of each row (assignment path)
    weight: torch.Tensor | None  #: (B,) float64: the mass of each pair (assignment path)
    u: torch.Tensor  #: (B, n) float64, centred
    v: torch.Tensor  #: (B, m) float64, centred
    cost: torch.Tensor  #: (B,) float64
    status: torch.Tensor  #: (B,) int32, POT's codes

    def dense_plan(self, M: torch.Tensor) -> torch.Tensor:
        if self.plan is not None:
            return self.plan
        batch, n, _ = M.shape
        plan = torch.zeros_like(M)
        return plan.scatter_(2, self.cols.unsqueeze(2), self.weight.to(M.dtype)[:, None, None].expand(batch, n, 1))


def _solve(a, b, M, uniform: bool, max_iter: int, backend: str, bounded: bool = False) -> _Solution:
    """Solves detached (B, n), (B, m), (B, n, m) problems (weights materialised, in M's dtype).

    ``uniform`` (both sides uniform) with n = m takes the assignment solver;
    callers pass False where they need the network simplex's duals. Costs
    far outside unit scale (near the dtype's maximum they would overflow the
    solvers' sums) are rescaled by fastgan.ot's one rule
    (:func:`~fastgan.ot._checks.unit_scale`, degree 1, one scale for
    the batch): solved on M / s (the same plan), the potentials and the
    cost multiplied by s, exactly. One pass finds both M's range and NaN /
    Inf (the kernels also refuse NaN / Inf as they read M); ``bounded``: the
    caller built M finite and far below the dtype's limit from points the
    rule has already rescaled (:func:`wasserstein`), so that pass is skipped."""
    scale = _cost_scale(M) if backend != "reference" and not bounded else 1.0
    if scale == 1.0:
        return _solve_at_scale(a, b, M, uniform, max_iter, backend)
    sol = _solve_at_scale(a, b, M / scale, uniform, max_iter, backend)
    return sol._replace(u=sol.u * scale, v=sol.v * scale, cost=sol.cost * scale)


def _solve_at_scale(a, b, M, uniform: bool, max_iter: int, backend: str) -> _Solution:
    batch, n, m = M.shape
    ok = torch.ones(batch, dtype=torch.int32, device=M.device)
    if backend == "reference":
        from fastgan import reference

        plan, u, v, cost = reference.emd_solve(a, b, M)
        return _Solution(plan, None, None, u, v, cost, ok)
    if uniform and n == m and batch > 0:
        # Exact assignment: plan = permutation * (mass / n). Its duals are
        # the transport LP's duals as they are (same constraint u_i + v_j <=
        # M_ij; objective (mass / n) (sum u + sum v) = cost); centred as POT does.
        _library.require_kernel("linear_sum_assignment", M.device)
        try:  # the kernel checks M's values as it reads them
            result = assign_finite(M)
        except ValueError as err:
            if NONFINITE in str(err):
                raise ValueError("`M` contains NaN or infinite values") from None
            raise
        weight = a.double().sum(-1) / n
        shift = (result.v.sum(-1) - result.u.sum(-1)) / (2 * n)
        u = result.u + shift[:, None]
        v = result.v - shift[:, None]
        return _Solution(None, result.col_ind, weight, u, v, result.cost * weight, ok)
    _library.require_kernel("emd", M.device)
    plan, u, v, cost, status = torch.ops.fastgan.emd.default(a, b, M, max_iter)
    return _Solution(plan, None, None, u, v, cost, status)


def _cost_scale(M: torch.Tensor) -> float:
    """The rescaling rule's s for the cost M (:func:`~fastgan.ot._checks.unit_scale`,
    degree 1, one scale for the batch); a ValueError if M holds NaN or an
    infinity (the same pass: min and max). Float32 costs are solved in
    float64, whose range no float32 cost and its sums leave: they need no
    rescaling, and are not read here (the kernels refuse NaN / Inf as they read M)."""
    if M.numel() == 0 or M.dtype != torch.float64:
        return 1.0
    low, high = (float(v) for v in torch.aminmax(M.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("`M` contains NaN or infinite values")
    return unit_scale(max(-low, high))


class _EMDCost(torch.autograd.Function):
    """Attaches the gradients of the optimal cost to a solved problem.

    ``forward(M, a, b, solution)`` returns the solution's cost in M's dtype;
    its backward gives ``grad * plan`` to M and ``grad * (u - mean(u))``,
    ``grad * (v - mean(v))`` to a and b.
    """

    @staticmethod
    def forward(ctx, M, a, b, solution):
        ctx.solution = solution
        ctx.shape_dtype = (M.shape, M.dtype, M.device)
        return solution.cost.to(M.dtype)

    @staticmethod
    def backward(ctx, grad_cost):
        sol = ctx.solution
        grad_M = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            shape, dtype, device = ctx.shape_dtype
            plan = sol.dense_plan(torch.empty(shape, dtype=dtype, device=device))
            grad_M = plan * grad_cost[:, None, None].to(dtype)
        g = grad_cost[:, None].double()
        if ctx.needs_input_grad[1]:
            grad_a = ((sol.u - sol.u.mean(-1, keepdim=True)) * g).to(grad_cost.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = ((sol.v - sol.v.mean(-1, keepdim=True)) * g).to(grad_cost.dtype)
        return grad_M, grad_a, grad_b, None


def _prepare(a, b, M, numItermax, backend, check_marginals: bool = True):
    """Checked (B, n), (B, m), (B, n, m) inputs, whether batched, whether uniform.

    Without ``check_marginals``, b is scaled to a's mass (POT's
    ``check_marginals=False``) instead of unequal masses being refused."""
    _check_backend(backend)
    float_tensor(M, "M")
    if M.dim() not in (2, 3):
        raise ValueError(f"`M` must be (n, m) or (B, n, m), got shape {tuple(M.shape)}")
    positive_int(numItermax, "numItermax")  # the cap that guarantees the solver returns
    batched = M.dim() == 3
    n, m = M.shape[-2], M.shape[-1]
    if n == 0 or m == 0:
        raise ValueError(f"`M` is empty: shape {tuple(M.shape)}; both sides need at least one point")
    Mb = M if batched else M.unsqueeze(0)
    B = Mb.shape[0]
    wa = _weights(a, "a", B if batched else None, n, M)
    wb = _weights(b, "b", B if batched else None, m, M)
    uniform = _is_uniform(wa) and _is_uniform(wb)
    # Uniform sides take the other side's mass (1 when both are uniform).
    if wa is None and wb is None:
        wa = torch.full((B, n), 1.0 / n, dtype=M.dtype, device=M.device)
        wb = torch.full((B, m), 1.0 / m, dtype=M.dtype, device=M.device)
    elif wa is None:
        wa = wb.detach().sum(-1, keepdim=True) / n * torch.ones((B, n), dtype=M.dtype, device=M.device)
    elif wb is None:
        wb = wa.detach().sum(-1, keepdim=True) / m * torch.ones((B, m), dtype=M.dtype, device=M.device)
    if not check_marginals and B > 0:
        wb = wb * (wa.detach().sum(-1, keepdim=True) / wb.detach().sum(-1, keepdim=True))
    if B > 0:
        _check_masses(wa, wb, M.dtype, n + m)
    return wa, wb, Mb, batched, uniform


def _solve_and_attach(wa, wb, Mb, uniform, numItermax, backend, bounded: bool = False):
    """(cost with gradients, solution)."""
    with torch.no_grad():
        solution = _solve(wa.detach(), wb.detach(), Mb.detach(), uniform, numItermax, backend, bounded)
    return _EMDCost.apply(Mb, wa, wb, solution), solution


def _report(status: torch.Tensor) -> str | None:
    """Warns (at the user's call) unless every problem is optimal."""
    codes = sorted({int(c) for c in status.tolist()}) if status.numel() else [1]
    bad = [c for c in codes if c != 1]
    if not bad:
        return None
    if 3 in bad:
        message = "numItermax reached before optimality. Try to increase numItermax."
    else:
        message = f"the solver ended with status {[RESULT_CODES.get(c, c) for c in bad]}"
    warnings.warn(f"fastgan.ot.emd: {message}", UserWarning, stacklevel=external_stacklevel())
    return message


def _check_pot_options(center_dual: object, numThreads: object) -> None:
    check_threads(numThreads)
    if center_dual is not True:
        raise NotImplementedError(
            "`center_dual=False` is not offered: fastgan's duals are always centred as POT's "
            "default centres them (center_dual=True)"
        )


def _run(a, b, M, numItermax, backend, need_plan: bool, check_marginals: bool = True):
    wa, wb, Mb, batched, uniform = _prepare(a, b, M, numItermax, backend, check_marginals)
    cost, sol = _solve_and_attach(wa, wb, Mb, uniform, numItermax, backend)
    warning = _report(sol.status)
    plan = sol.dense_plan(Mb) if need_plan else None
    log = {"cost": cost, "u": sol.u.to(M.dtype), "v": sol.v.to(M.dtype), "warning": warning, "result_code": sol.status}
    if not batched:
        cost = cost.squeeze(0)
        plan = None if plan is None else plan.squeeze(0)
        log = {k: (t.squeeze(0) if isinstance(t, torch.Tensor) else t) for k, t in log.items()}
    return cost, plan, log


@sparse_cost(returns_plan=True)
@array_io("M", "a", "b")
def emd(
    a: ArrayLike | None,
    b: ArrayLike | None,
    M: ArrayLike,
    numItermax: int = 100000,
    log: bool = False,
    center_dual: bool = True,
    numThreads: int | str = 1,
    check_marginals: bool = True,
    potentials_init: tuple[ArrayLike, ArrayLike] | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
    r"""Optimal transport plan, POT's ``ot.emd`` (numpy or torch, batched).

    .. math:: \Gamma^\star = \arg\min_{\Gamma \ge 0,\ \Gamma 1 = a,\ \Gamma^\top 1 = b} \langle \Gamma, M \rangle

    Args:
        a: source weights ``(n,)``, or ``(B, n)`` for a batch (``(n,)`` is
            shared by every problem); None, ``[]`` or an empty tensor means
            uniform. Non-negative; zero weights are allowed.
        b: target weights ``(m,)`` / ``(B, m)``, same mass as ``a`` (relative
            difference at most 1e-6 in float64, about sqrt(n + m) ulps
            otherwise, else :class:`UnequalMassError`, a ValueError and an
            AssertionError as POT raises); b is scaled to a's mass, as POT does.
        M: cost ``(n, m)`` or ``(B, n, m)``, float32 or float64, finite.
            Weights are cast to M's dtype. numpy arrays and lists give numpy
            results, tensors give tensors (POT's rule). A sparse ``M``
            (SciPy, or torch sparse COO) lists the only edges that may carry
            mass, as in POT; the plan then comes back sparse of the same
            kind (see :mod:`fastgan.ot._sparse`).
        numItermax: network-simplex pivots per problem before giving up
            (POT's default); a ``UserWarning`` and result code 3 then say
            so, and the plan is the simplex's current one (mass it has not
            moved yet is missing from it).
        log: also return a dict with ``cost``, the dual potentials ``u``,
            ``v`` (u_i + v_j <= M_ij, equality on the plan's support, centred
            so that a.u = b.v as POT centres them), ``warning`` (None or a
            message) and
            ``result_code`` (POT's codes: 1 optimal).
        center_dual: only True (POT's default).
        numThreads: accepted for POT's signature (a positive int or "max");
            the problems of a batch share torch's thread pool.
        check_marginals: False scales b to a's mass without checking, as POT.
        potentials_init: accepted for POT's signature and unused (a warm
            start changes POT's running time, not its result).
        backend: ``"auto"``: the assignment solver for uniform weights with
            n = m, else fastgan's network
            simplex (C++, CPU); ``"reference"``: :func:`fastgan.reference.emd`
            (SciPy's HiGHS simplex, one problem at a time).

    Returns:
        The plan ``(n, m)`` / ``(B, n, m)`` in M's dtype (and the log dict).
        The plan is not differentiable (piecewise constant); differentiate
        :func:`emd2` for the cost.

    Duals: where the optimal duals are unique they are POT's. Where they are
    not (degenerate problems; always for uniform weights with n = m, an
    assignment) fastgan returns an optimal pair, centred as POT centres
    them, that may differ from POT's: the assignment solver's, or the
    network simplex's, whose pivoting differs from POT's on ties. Both are
    subgradients of the cost in (a, b) (it is convex and not differentiable
    there), so :func:`emd2`'s gradients in a and b may differ from POT's on
    such problems (its gradient in M, the plan, agrees wherever the plan is
    unique).

    Raises:
        ValueError: shapes that do not match, empty ``M``, negative or
            non-finite weights, unequal masses, NaN / Inf in ``M``.
        TypeError: non-floating or sparse inputs.
    """
    _check_pot_options(center_dual, numThreads)
    cost, plan, info = _run(a, b, M, numItermax, backend, need_plan=True, check_marginals=check_marginals)
    return (plan, info) if log else plan


@sparse_cost(returns_plan=False)
@array_io("M", "a", "b")
def emd2(
    a: ArrayLike | None,
    b: ArrayLike | None,
    M: ArrayLike,
    processes: int = 1,
    numItermax: int = 100000,
    log: bool = False,
    return_matrix: bool = False,
    center_dual: bool = True,
    numThreads: int | str = 1,
    check_marginals: bool = True,
    potentials_init: tuple[ArrayLike, ArrayLike] | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
    r"""Optimal transport cost :math:`\langle \Gamma^\star, M \rangle`, POT's ``ot.emd2`` (numpy or torch, batched).

    Arguments as :func:`emd`, in POT's order; ``processes`` is accepted and
    unused (as in POT), ``return_matrix`` returns the log with the plan as ``G``
    (POT's key; fastgan's log always has it as ``plan``). ``b`` of shape
    ``(m, k)`` with a 2-D ``M`` gives k costs, as POT (with a log: POT's list
    of k ``[cost, log]`` pairs). Returns the cost
    ``()`` / ``(B,)`` in M's dtype (computed in float64), and with
    ``log=True`` the dict of :func:`emd` plus ``plan``.

    Differentiable once (torch.autograd): :math:`\partial/\partial M = \Gamma^\star`,
    :math:`\partial/\partial a = u - \mathrm{mean}(u)`, :math:`\partial/\partial b = v -
    \mathrm{mean}(v)`, POT's gradients (with another optimal pair of duals
    on degenerate problems: see :func:`emd`). Higher derivatives are those of
    the cost with the plan and duals held fixed: zero, which is exact
    wherever the optimal basis is unique.
    """
    _check_pot_options(center_dual, numThreads)
    positive_int(processes, "processes")
    a, b, M, histograms = several_histograms(a, b, M)
    cost, plan, info = _run(a, b, M, numItermax, backend, need_plan=log or return_matrix, check_marginals=check_marginals)
    if not (log or return_matrix):
        return cost
    info["plan"] = plan
    if return_matrix:
        info["G"] = plan
    if histograms is not None:
        # POT's layout for several targets: a list of [cost, log] per histogram.
        return [[cost[k], {key: _pick(v, k) for key, v in info.items()}] for k in range(histograms)]
    return cost, info


def _pick(value: Any, k: int) -> Any:
    """Problem k of a batched log entry."""
    return value[k] if isinstance(value, torch.Tensor) and value.dim() > 0 else value


def _pair_costs(x, y, batch_idx, rows, cols, p: float) -> torch.Tensor:
    diff = x[batch_idx, rows] - y[batch_idx, cols]
    if p == 2.0:
        return diff.square().sum(-1)
    return torch.linalg.vector_norm(diff, dim=-1).pow(p)


def wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    p: float = 2.0,
    numItermax: int = 100000,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Exact Wasserstein distance between point clouds, :math:`W_p = (\min_\Gamma \sum_{ij} \Gamma_{ij} \|x_i - y_j\|^p)^{1/p}`.

    Args:
        x: ``(n, d)`` or ``(B, n, d)``; y: ``(m, d)`` / ``(B, m, d)``,
            float32 or float64, finite.
        a, b: weights as in :func:`emd` (None: uniform).
        p: ground-cost exponent, >= 1 (Euclidean distance to the p).
        backend: as in :func:`emd`; uniform weights with n = m run the
            exact assignment solver.

    Returns:
        ``()`` or ``(B,)`` in x's dtype. Differentiable once with respect to
        x and y (and a, b through :func:`emd2`'s duals): the optimal plan is
        held fixed and :math:`\sum \Gamma_{ij} \|x_i - y_j\|^p` is
        differentiated over the plan's support (at most n + m - 1 pairs),
        then chained through the 1/p power. Where W = 0 the gradient is 0.
    """
    p = positive(p, "p")
    if p < 1:
        raise ValueError(f"`p` must be >= 1, got {p}")
    check_clouds(x, y, ("x", "y"))
    check_finite(x.detach(), "x")
    check_finite(y.detach(), "y")
    batched = x.dim() == 3
    xb, yb = (x, y) if batched else (x.unsqueeze(0), y.unsqueeze(0))
    # W is homogeneous of degree 1 in the points, its cost |x - y|^p of
    # degree p: the rescaling rule (per problem) keeps that cost finite for
    # any finite points; W comes back times s.
    scale = power_of_two_scale(xb, yb, degree=p)
    xb, yb = xb / scale, yb / scale
    with torch.no_grad():
        dist = torch.cdist(xb, yb, compute_mode="donot_use_mm_for_euclid_dist")
        M = dist.square_() if p == 2.0 else dist.pow_(p)
    # After the rule, max |x|^p <= 2^max(20, p), so M = |x - y|^p < (2 sqrt(d))^p 2^max(20, p):
    # finite and far below the dtype's limit (no scan) unless p is huge; then
    # the solver's own checks (and the rule on M) run.
    top = p * math.log2(2 * math.sqrt(x.shape[-1])) + max(float(UNIT_BAND), p)
    bounded = top < math.log2(torch.finfo(M.dtype).max) - 40
    wa, wb, Mb, _, uniform = _prepare(a, b, M if batched else M[0], numItermax, backend)
    cost, sol = _solve_and_attach(wa, wb, Mb, uniform, numItermax, backend, bounded)
    _report(sol.status)
    if sol.cols is not None:
        # The assignment's support: (b, i, sigma(i)), weight mass / n each.
        B, n = sol.cols.shape
        batch_idx = torch.arange(B, device=x.device).repeat_interleave(n)
        rows = torch.arange(n, device=x.device).repeat(B)
        cols = sol.cols.reshape(-1)
        weights = sol.weight.repeat_interleave(n)
    else:
        batch_idx, rows, cols = sol.plan.nonzero(as_tuple=True)
        weights = sol.plan[batch_idx, rows, cols]
    B = Mb.shape[0]
    pair = _pair_costs(xb, yb, batch_idx, rows, cols, p) * weights.to(xb.dtype)
    total = torch.zeros(B, dtype=xb.dtype, device=xb.device).index_add(0, batch_idx, pair)
    if wa.requires_grad or wb.requires_grad:
        # Gradients of the weights come from the duals; the value from the pairs.
        total = total + (cost - cost.detach()).to(total.dtype)
    distance = root(total, p) * scale[:, 0, 0]
    return distance if batched else distance.squeeze(0)


if _library.LOADED:
    # General weights on CUDA tensors: the network simplex is one pivot after
    # another, so it runs on the host's cores and the plan comes back.
    _library.register_host_cuda("emd")

    @torch.library.register_fake("fastgan::emd")
    def _emd_fake(a, b, M, max_iter):
        batch, n, m = M.shape
        f64 = torch.float64
        return (
            M.new_empty((batch, n, m)),
            M.new_empty((batch, n), dtype=f64),
            M.new_empty((batch, m), dtype=f64),
            M.new_empty((batch,), dtype=f64),
            M.new_empty((batch,), dtype=torch.int32),
        )
