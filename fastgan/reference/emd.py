r"""Exact optimal transport with general weights, by a general-purpose LP solver.

The reference of :func:`fastgan.ot.emd` / :func:`fastgan.ot.emd2` is the
transport linear program handed as it is to SciPy's ``linprog`` with HiGHS's
dual simplex (``method="highs-ds"``), one problem at a time: an exact LP
solver that shares no code with fastgan's network simplex or assignment
solver. Its duals are HiGHS's equality-constraint marginals. The
conventions that make duals unique where the LP leaves them free are
applied in the same documented way as fastgan's kernel: zero-weight rows,
then columns, get the largest feasible dual, and the duals are centred so
that a.u = b.v (POT's centring). Slow (dense constraint matrix of n + m
rows and n m columns); needs SciPy.
"""

from __future__ import annotations

import numpy as np
import torch


def _linprog():
    try:
        from scipy.optimize import linprog
        from scipy.sparse import eye, kron, vstack
    except ImportError as err:  # pragma: no cover - SciPy is a test dependency
        raise ImportError(f"fastgan.reference.emd needs SciPy ({err}); pip install scipy") from err
    return linprog, eye, kron, vstack


def _solve_one(a: np.ndarray, b: np.ndarray, M: np.ndarray):
    linprog, eye, kron, vstack = _linprog()
    n, m = M.shape
    b = b * (a.sum() / b.sum())  # POT's convention: b at a's mass
    rows = kron(eye(n), np.ones((1, m)))  # sum_j G_ij = a_i
    cols = kron(np.ones((1, n)), eye(m))  # sum_i G_ij = b_j
    res = linprog(
        M.ravel(),
        A_eq=vstack([rows, cols]).tocsr(),
        b_eq=np.concatenate([a, b]),
        bounds=(0, None),
        method="highs-ds",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if res.status != 0:
        raise RuntimeError(f"fastgan.reference.emd: linprog failed ({res.message})")
    plan = np.maximum(res.x.reshape(n, m), 0.0)
    u = np.array(res.eqlin.marginals[:n], dtype=np.float64)
    v = np.array(res.eqlin.marginals[n:], dtype=np.float64)
    # Zero weights: the largest feasible dual (rows against the columns with mass, then columns).
    zero_a, zero_b = a == 0, b == 0
    for i in np.flatnonzero(zero_a):
        u[i] = np.min(M[i, ~zero_b] - v[~zero_b])
    for j in np.flatnonzero(zero_b):
        v[j] = np.min(M[:, j] - u)
    shift = (b @ v - a @ u) / (2 * a.sum())
    return plan, u + shift, v - shift, float((plan * M).sum())


def emd_solve(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor):
    """Batched: a (B, n), b (B, m), M (B, n, m) -> plan in M's dtype, float64 u, v and cost."""
    batch, n, m = M.shape
    plans = np.zeros((batch, n, m))
    us, vs, costs = np.zeros((batch, n)), np.zeros((batch, m)), np.zeros(batch)
    an, bn, Mn = (t.detach().cpu().double().numpy() for t in (a, b, M))
    for k in range(batch):
        plans[k], us[k], vs[k], costs[k] = _solve_one(an[k], bn[k], Mn[k])
    to = dict(device=M.device)
    return (
        torch.from_numpy(plans).to(dtype=M.dtype, **to),
        torch.from_numpy(us).to(**to),
        torch.from_numpy(vs).to(**to),
        torch.from_numpy(costs).to(**to),
    )


def _batched(a, b, M):
    batched = M.dim() == 3
    Mb = M if batched else M.unsqueeze(0)
    B, n, m = Mb.shape
    a = torch.full((B, n), 1.0 / n, dtype=torch.float64) if a is None or a.numel() == 0 else a.expand(B, n)
    b = torch.full((B, m), 1.0 / m, dtype=torch.float64) if b is None or b.numel() == 0 else b.expand(B, m)
    return a, b, Mb, batched


def emd(a: torch.Tensor | None, b: torch.Tensor | None, M: torch.Tensor) -> torch.Tensor:
    r"""An optimal plan :math:`\arg\min_{\Gamma 1 = a, \Gamma^\top 1 = b, \Gamma \ge 0} \langle \Gamma, M \rangle`; (n, m) or batched."""
    a, b, Mb, batched = _batched(a, b, M)
    plan = emd_solve(a, b, Mb)[0]
    return plan if batched else plan[0]


def emd2(a: torch.Tensor | None, b: torch.Tensor | None, M: torch.Tensor) -> torch.Tensor:
    r"""The optimal cost :math:`\langle \Gamma^\star, M \rangle` in float64; () or (B,)."""
    a, b, Mb, batched = _batched(a, b, M)
    cost = emd_solve(a, b, Mb)[3]
    return cost if batched else cost[0]
