r"""Log-domain Sinkhorn in plain PyTorch: the oracle of ``fastgan.ot.sinkhorn*``.

Both functions store the full cost matrix (that is what the compiled
kernels avoid) and follow the same contracts as the ops
``fastgan::sinkhorn_log`` and ``fastgan::sinkhorn_points``.
"""

from __future__ import annotations

import torch

__all__ = ["damping", "log_weights", "point_cost", "points_cost", "sinkhorn_log", "sinkhorn_points"]

#: GeomLoss's p = 1 cost is sqrt(max(|x - y|^2, 1e-8)), smooth at x = y.
MIN_SQUARED_DISTANCE = 1e-8


def point_cost(x: torch.Tensor, y: torch.Tensor, p: int) -> torch.Tensor:
    r"""``C[b, i, j] = |x_i - y_j|^p / p`` for x ``(B, n, d)``, y ``(B, m, d)``, p = 1, 2."""
    sq = ((x.unsqueeze(2) - y.unsqueeze(1)) ** 2).sum(-1)
    if p == 2:
        return sq / 2
    return sq.clamp_min(MIN_SQUARED_DISTANCE).sqrt()


def sinkhorn_log(
    a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, reg: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, ...]:
    r"""POT's ``sinkhorn_log`` iterations on each problem of a batch.

    With :math:`M_r = -M / \text{reg}`:
    :math:`\log v = \log b - \mathrm{LSE}_i(M_r + \log u)`,
    :math:`\log u = \log a - \mathrm{LSE}_j(M_r + \log v)`; after
    iterations 0, 10, 20, ... stop once the column marginal error
    :math:`\|\pi^\top 1 - b\|_2 < \text{tol}`.

    Returns ``(log_u, log_v, cost, n_iter, err, converged)`` as the op does.
    """
    batch = M.shape[0]
    outs = [], [], [], [], [], []
    for k in range(batch):
        Mr = -M[k] / reg
        loga, logb = a[k].log(), b[k].log()
        u = torch.zeros_like(a[k])
        v = torch.zeros_like(b[k])
        err = torch.tensor(float("inf"), dtype=M.dtype)
        converged = False
        it = 0
        for it in range(max_iter):
            v = logb - torch.logsumexp(Mr + u[:, None], 0)
            u = loga - torch.logsumexp(Mr + v[None, :], 1)
            if it % 10 == 0:
                err = torch.linalg.vector_norm((Mr + u[:, None] + v[None, :]).exp().sum(0) - b[k])
                if err < tol:
                    converged = True
                    break
        plan = (Mr + u[:, None] + v[None, :]).exp()
        for out, value in zip(outs, (u, v, (plan * M[k]).sum(), it, err, converged)):
            out.append(torch.as_tensor(value))
    u, v, cost, n_iter, err, conv = (torch.stack(o) if o else None for o in outs)
    if batch == 0:
        n, m = M.shape[1:]
        return (M.new_zeros(0, n), M.new_zeros(0, m), M.new_zeros(0), torch.zeros(0, dtype=torch.int64),
                M.new_zeros(0), torch.zeros(0, dtype=torch.bool))
    return u, v, cost.to(M.dtype), n_iter.to(torch.int64), err.to(M.dtype), conv


def _softmin(eps: float, C: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``-eps log sum_j exp(h_j - C_ij / eps)`` over the last dim, batched."""
    return -eps * torch.logsumexp(h.unsqueeze(1) - C / eps, dim=2)


def log_weights(w: torch.Tensor) -> torch.Tensor:
    """GeomLoss's log weights: log w, with log 0 taken as -1e5."""
    return torch.where(w > 0, w.clamp_min(torch.finfo(w.dtype).tiny).log(), torch.full_like(w, -100000.0))


def damping(eps: float, rho: float | None) -> float:
    r"""The unbalanced damping of a softmin, :math:`\rho / (\rho + \varepsilon)` (1 when balanced)."""
    return 1.0 if rho is None else rho / (rho + eps)


def points_cost(
    a: torch.Tensor,
    b: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    faa: torch.Tensor | None,
    gbb: torch.Tensor | None,
    eps: float,
    rho: float | None,
) -> torch.Tensor:
    r"""The cost ``(B,)`` from the returned potentials.

    Balanced: :math:`\langle a, f - f_{aa} \rangle + \langle b, g - g_{bb} \rangle`
    (self terms 0 without debias). Unbalanced (GeomLoss's value):
    :math:`(\rho + \varepsilon / 2)\,T` with :math:`T = \langle a, e^{-f_{aa}/\rho}
    - e^{-f/\rho} \rangle + \langle b, e^{-g_{bb}/\rho} - e^{-g/\rho} \rangle`
    (self terms 1 without debias). Its autograd is the derivative of the
    unbalanced cost at fixed dual potentials (Séjourné et al. 2019, Prop. 12):
    that of :math:`(\rho + \varepsilon)\,T`, less :math:`\varepsilon/2` per
    unit of mass without debias.
    """

    def side(w, pot, self_pot):
        if rho is None:
            return (w * (pot if self_pot is None else pot - self_pot)).sum(1)
        own = 1.0 if self_pot is None else torch.exp(-self_pot / rho)
        return (w * (own - torch.exp(-pot / rho))).sum(1)

    total = side(a, f, faa) + side(b, g, gbb)
    if rho is None:
        return total
    value = (rho + 0.5 * eps) * total
    slope = (rho + eps) * total
    if faa is None:
        slope = slope - 0.5 * eps * (a.sum(1) + b.sum(1))
    return value.detach() + (slope - slope.detach())


def sinkhorn_points(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    p: int,
    eps_list: list[float],
    debias: bool,
    tol: float,
    max_iter: int,
    rho: float | None = None,
) -> torch.Tensor:
    r"""Symmetric (GeomLoss-style) Sinkhorn between point clouds; the cost ``(B,)``.

    Iterations run without autograd; the last softmin from the state is
    differentiated with the state held constant (the envelope theorem), so
    gradients flow to x, y through the cost and to a, b through the final
    dot products only. ``rho`` (unbalanced OT) damps every softmin by
    :math:`\rho / (\rho + \varepsilon)` and changes the cost (:func:`points_cost`).
    """
    eps0, final_eps = eps_list[0], eps_list[-1]
    with torch.no_grad():
        la, lb = log_weights(a), log_weights(b)
        Cxy = point_cost(x, y, p)
        Cyx = Cxy.transpose(1, 2)
        Cxx = point_cost(x, x, p) if debias else None
        Cyy = point_cost(y, y, p) if debias else None

        def step(eps, f, g, faa, gbb):
            lam = damping(eps, rho)
            fn = lam * _softmin(eps, Cxy, lb + g / eps)
            gn = lam * _softmin(eps, Cyx, la + f / eps)
            if not debias:
                return fn, gn, None, None
            return fn, gn, lam * _softmin(eps, Cxx, la + faa / eps), lam * _softmin(eps, Cyy, lb + gbb / eps)

        zero_f, zero_g = torch.zeros_like(a), torch.zeros_like(b)
        state = step(eps0, zero_f, zero_g, zero_f, zero_g)
        it = 0
        while it < max_iter:
            eps = eps_list[it] if it < len(eps_list) else final_eps
            fresh = step(eps, *state)
            change = max(float((n - s).abs().max()) for n, s in zip(fresh, state) if n is not None)
            state = tuple(None if s is None else 0.5 * (s + n) for s, n in zip(state, fresh))
            it += 1
            if it >= len(eps_list) and (tol < 0 or change <= tol):
                break
        f, g, faa, gbb = state
    lam = damping(final_eps, rho)
    fn = lam * _softmin(final_eps, point_cost(x, y.detach(), p), lb + g / final_eps)
    gn = lam * _softmin(final_eps, point_cost(y, x.detach(), p), la + f / final_eps)
    faan = gbbn = None
    if debias:
        faan = lam * _softmin(final_eps, point_cost(x, x.detach(), p), la + faa / final_eps)
        gbbn = lam * _softmin(final_eps, point_cost(y, y.detach(), p), lb + gbb / final_eps)
    return points_cost(a, b, fn, gn, faan, gbbn, final_eps, rho)
