r"""Sparse costs for :func:`fastgan.ot.emd` / :func:`fastgan.ot.emd2`, as POT reads them.

A sparse ``M`` (a SciPy sparse matrix or array, or a torch sparse COO
tensor) lists the edges that may carry mass; a missing entry is an absent
edge, not a zero cost. fastgan solves the same linear program on the dense
cost where every absent edge costs

.. math:: \text{big} = \max M + (n + m)(\max M - \min M + 1),

and checks the plan: an optimal plan of the dense problem that puts no mass
(at most a few rounding errors of the total mass, which are dropped) on an absent edge is feasible for the sparse problem and costs no more than
any plan that is, so it is optimal there. If it does use an absent edge,
``big`` is raised (x 2^20, twice) and the problem solved again; a plan that
still needs one means that no plan avoids the absent edges (ValueError).
The plan comes back sparse, in the input's kind (SciPy ``coo_array`` or
torch sparse COO, the plan's nonzero entries); the gradient of
:func:`emd2`'s cost with respect to a torch sparse ``M`` is the plan on
``M``'s entries.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from fastgan.ot._compat import is_sparse

__all__ = ["solve_sparse", "sparse_cost"]

F = TypeVar("F", bound=Callable[..., Any])

RETRIES = 2
RAISE = 2.0**20


def _dense_with_big(M: Any, factor: float) -> tuple[Any, Any]:
    """(the dense cost with absent edges at ``big * factor``, the mask of present edges)."""
    if isinstance(M, torch.Tensor):
        M = M.coalesce() if M.layout == torch.sparse_coo else M.to_sparse_coo().coalesce()
        if M.dim() != 2:
            raise ValueError(f"`M` must be a 2-D sparse matrix, got shape {tuple(M.shape)}")
        present = torch.sparse_coo_tensor(M.indices(), torch.ones_like(M.values()), M.shape).to_dense() > 0
        values = M.values().detach()
        hi, lo = (values.max(), values.min()) if values.numel() else (values.new_zeros(()), values.new_zeros(()))
        big = (hi + sum(M.shape) * (hi - lo + 1)) * factor
        return M.to_dense() + (~present) * big, present
    coo = M.tocoo()
    if coo.ndim != 2:
        raise ValueError(f"`M` must be a 2-D sparse matrix, got shape {coo.shape}")
    coo.sum_duplicates()
    present = np.zeros(coo.shape, dtype=bool)
    present[coo.row, coo.col] = True
    data = np.asarray(coo.data, dtype=np.float64)
    hi, lo = (data.max(), data.min()) if data.size else (0.0, 0.0)
    big = (hi + sum(coo.shape) * (hi - lo + 1)) * factor
    dense = np.full(coo.shape, big, dtype=np.float64)
    dense[coo.row, coo.col] = data
    return dense, present


def _to_sparse_plan(plan: Any, like: Any) -> Any:
    """The plan's nonzero entries as a sparse matrix of ``like``'s kind."""
    if isinstance(like, torch.Tensor):
        return plan.detach().to_sparse_coo()
    import scipy.sparse

    return scipy.sparse.coo_array(np.asarray(plan))


def solve_sparse(solve: Callable[[Any], tuple[Any, Any]], M: Any, want_plan: bool) -> tuple[Any, Any]:
    """Runs ``solve(dense M) -> (result, dense plan)`` on a sparse ``M`` (see the module).

    Returns (result, the sparse plan or None)."""
    for attempt in range(RETRIES + 1):
        dense, present = _dense_with_big(M, RAISE**attempt)
        result, plan = solve(dense)
        plan_d = plan.detach() if isinstance(plan, torch.Tensor) else np.asarray(plan)
        # Rounding of the masses (1/n against 1/m) may leave a few ulps of the
        # total mass on any edge; more than that on an absent edge is real.
        total = float(plan_d.sum())
        tol = 16 * float(np.finfo(np.float64).eps) * sum(plan_d.shape) * total
        if not (plan_d[~present] > tol).any():
            plan_d = plan_d * present
            return result, (_to_sparse_plan(plan_d, M) if want_plan else None)
    raise ValueError(
        "`M` is sparse and no transport plan between `a` and `b` uses only its entries "
        "(absent entries are absent edges): the problem is infeasible"
    )


def sparse_cost(returns_plan: bool) -> Callable[[F], F]:
    """Decorator for ``emd`` (``returns_plan``) and ``emd2``: a sparse ``M`` is solved
    by :func:`solve_sparse`; the plan (``emd``'s result, ``G`` / ``plan`` in a
    log) comes back sparse. Dense ``M`` goes straight through."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            M = bound.arguments.get("M")
            if not is_sparse(M):
                return fn(*args, **kwargs)
            b = bound.arguments.get("b")
            if b is not None and getattr(b, "ndim", 1) > 1:
                raise ValueError("`b` with several target histograms needs a dense `M`")
            want_log = bool(bound.arguments.get("log", False))
            bound.arguments["log"] = True

            def solve(dense: Any) -> tuple[Any, Any]:
                bound.arguments["M"] = dense
                out, info = fn(*bound.args, **bound.kwargs)
                return (out, info), (out if returns_plan else info["plan"])

            (out, info), sparse_plan = solve_sparse(solve, M, want_plan=returns_plan or want_log)
            if want_log:
                for key in ("G", "plan"):
                    if key in info:
                        info[key] = sparse_plan
            if returns_plan:
                out = sparse_plan
            return (out, info) if want_log else out

        return inner  # type: ignore[return-value]

    return wrap
