r"""Entropic optimal transport: log-domain Sinkhorn, POT's and GeomLoss's conventions.

For weights :math:`a \in \mathbb{R}^n_+`, :math:`b \in \mathbb{R}^m_+` of
equal mass and a cost :math:`C`, the entropic problem

.. math:: \mathrm{OT}_\varepsilon(a, b) = \min_{\pi \ge 0,\ \pi 1 = a,\ \pi^\top 1 = b}
    \langle \pi, C \rangle + \varepsilon\, \mathrm{KL}(\pi \,\|\, a \otimes b)

has the dual potentials :math:`f, g` at which
:math:`\pi_{ij} = a_i b_j \exp((f_i + g_j - C_{ij}) / \varepsilon)`.
Sinkhorn's iterations in the log domain are softmins,
:math:`f_i \leftarrow -\varepsilon \log \sum_j b_j \exp((g_j - C_{ij}) / \varepsilon)`,
which fastgan's kernels stream over tiles of columns with a running maximum
(no overflow at any :math:`\varepsilon`) and, between point clouds, with
the cost recomputed from the points: memory stays :math:`O((n + m) d)`.

- :func:`sinkhorn` / :func:`sinkhorn2`: POT's ``ot.sinkhorn`` /
  ``ot.sinkhorn2`` with ``method="sinkhorn_log"`` (``reg`` is
  :math:`\varepsilon`, the cost is :math:`\langle \pi, M \rangle`), batched.
- :func:`sinkhorn_divergence`: GeomLoss's ``SamplesLoss("sinkhorn", ...)``
  between point clouds: :math:`\varepsilon`-scaling, the debiased
  divergence :math:`S_\varepsilon = \mathrm{OT}_\varepsilon(a, b) -
  \tfrac12 \mathrm{OT}_\varepsilon(a, a) - \tfrac12 \mathrm{OT}_\varepsilon(b, b)`,
  and gradients from the final potentials (envelope theorem), never by
  backpropagating through the iterations; ``reach`` for unbalanced OT.
"""

from __future__ import annotations

import math
import warnings

import torch

from fastgan import _library
from fastgan._tensors import positive, positive_int
from fastgan.ot._checks import check_finite, check_weights, float_tensor

__all__ = ["SinkhornLog", "sinkhorn", "sinkhorn2", "sinkhorn_divergence"]

BACKENDS = ("auto", "reference")


class SinkhornLog(dict):
    """``log=True`` extras: ``log_u``, ``log_v`` (POT's log-scalings: the
    potentials are ``reg * log_u``, ``reg * log_v``), ``niter`` (POT's
    index of the last iteration), ``err`` (last column-marginal error),
    ``converged`` (bool)."""


def _weights(w, count: int, batch: tuple[int, ...], like: torch.Tensor, name: str) -> torch.Tensor:
    """POT accepts an empty list / None for uniform weights."""
    if w is None or (not isinstance(w, torch.Tensor) and len(w) == 0) or (
        isinstance(w, torch.Tensor) and w.numel() == 0 and count > 0
    ):
        return torch.full((*batch, count), 1.0 / count, dtype=like.dtype, device=like.device)
    w = float_tensor(w, name)
    if w.dtype != like.dtype or w.device != like.device:
        raise TypeError(f"`{name}` must have the dtype and device of the cost ({like.dtype}, {like.device})")
    if tuple(w.shape) != (*batch, count):
        raise ValueError(f"`{name}` must have shape {(*batch, count)}, got {tuple(w.shape)}")
    return w


def _solve(a, b, M, reg, method, max_iter, tol, backend):
    """Checks the POT-style arguments and runs the solver: (squeeze, results)."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if method not in ("log", "sinkhorn_log"):
        raise ValueError(f"`method` must be 'log' (POT's 'sinkhorn_log'), got {method!r}")
    M = float_tensor(M, "M")
    if M.dim() not in (2, 3):
        raise ValueError(f"`M` must have shape (n, m) or (B, n, m), got {tuple(M.shape)}")
    if M.shape[-1] == 0 or M.shape[-2] == 0:
        raise ValueError(f"`M` must have n, m >= 1, got {tuple(M.shape)}")
    reg = positive(reg, "reg")
    max_iter = positive_int(max_iter, "max_iter")
    tol = positive(tol, "tol", allow_zero=True)
    squeeze = M.dim() == 2
    M3 = M.unsqueeze(0) if squeeze else M
    batch = tuple(M3.shape[:1])
    a3 = _weights(a, M3.shape[1], batch if not squeeze else (), M, "a")
    b3 = _weights(b, M3.shape[2], batch if not squeeze else (), M, "b")
    if squeeze:
        a3, b3 = a3.unsqueeze(0), b3.unsqueeze(0)
    check_weights(a3, b3, ("a", "b"))
    # float32 cannot resolve a marginal error much below its rounding of
    # the mass: a tighter tol would only spin to max_iter.
    mass = float(b3.detach().sum(-1).max()) if b3.numel() else 1.0
    tol = max(tol, 64 * torch.finfo(M.dtype).eps * mass) if M.dtype == torch.float32 else tol
    if backend == "reference":
        from fastgan import reference

        check_finite(M3, "M")
        out = reference.sinkhorn_log(a3, b3, M3, reg, max_iter, tol)
    else:
        _library.require_kernel("sinkhorn_log", M.device)
        out = torch.ops.fastgan.sinkhorn_log.default(a3, b3, M3, reg, max_iter, tol)
    log_u, log_v, cost, n_iter, err, converged = out
    if converged.numel() and not bool(converged.all()):
        bad = int((~converged).sum())
        warnings.warn(
            f"sinkhorn did not converge: {bad} of {converged.numel()} problems kept a marginal "
            f"error above tol={tol:.3g} after max_iter={max_iter} iterations; increase "
            "`max_iter` or `reg`",
            RuntimeWarning,
            stacklevel=3,
        )
    return squeeze, M3, reg, out


def _log_dict(squeeze: bool, out) -> SinkhornLog:
    log_u, log_v, _cost, n_iter, err, converged = out
    pick = (lambda t: t[0]) if squeeze else (lambda t: t)
    return SinkhornLog(
        log_u=pick(log_u), log_v=pick(log_v), niter=pick(n_iter), err=pick(err), converged=pick(converged)
    )


def sinkhorn(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    reg: float,
    *,
    method: str = "log",
    max_iter: int = 1000,
    tol: float = 1e-9,
    log: bool = False,
    backend: str = "auto",
):
    r"""The entropic transport plan, POT's ``ot.sinkhorn(a, b, M, reg, method="sinkhorn_log")``.

    .. math:: \pi = \operatorname{diag}(u)\, e^{-M / \text{reg}} \operatorname{diag}(v),
        \quad \log v \leftarrow \log b - \mathrm{LSE}_i(\log u_i - M_{ij}/\text{reg}),
        \quad \log u \leftarrow \log a - \mathrm{LSE}_j(\log v_j - M_{ij}/\text{reg})

    POT's iteration order and stopping rule: after iterations 0, 10, 20, ...
    stop once :math:`\|\pi^\top 1 - b\|_2 <` ``tol``; each problem of a
    batch stops on its own.

    Args:
        a: ``(n,)`` or ``(B, n)`` non-negative weights; None (or empty) for uniform.
        b: ``(m,)`` or ``(B, m)``, the same mass as ``a`` (else ValueError).
        M: cost ``(n, m)`` or ``(B, n, m)``, float32 or float64, finite.
        reg: the entropic regularisation :math:`\varepsilon > 0`.
        method: ``"log"`` (also accepted: POT's name ``"sinkhorn_log"``).
        max_iter, tol: POT's ``numItermax`` and ``stopThr``. In float32 tol
            is raised to 64 float32 epsilons of the mass (what float32 can
            resolve); a problem that does not converge raises a
            RuntimeWarning and has ``converged=False`` in the log.
        log: also return a :class:`SinkhornLog`.
        backend: ``"auto"`` (fastgan's kernels: C++ on the CPU, Triton on CUDA) or
            ``"reference"`` (PyTorch).

    Returns:
        the plan ``(n, m)`` / ``(B, n, m)`` (and the log). Not differentiable:
        for gradients use :func:`sinkhorn_divergence`.
    """
    squeeze, M3, reg, out = _solve(a, b, M, reg, method, max_iter, tol, backend)
    log_u, log_v = out[0], out[1]
    plan = torch.exp(log_u.unsqueeze(2) + log_v.unsqueeze(1) - M3.detach() / reg)
    plan = plan[0] if squeeze else plan
    return (plan, _log_dict(squeeze, out)) if log else plan


def sinkhorn2(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    reg: float,
    *,
    method: str = "log",
    max_iter: int = 1000,
    tol: float = 1e-9,
    log: bool = False,
    backend: str = "auto",
):
    r"""The cost :math:`\langle \pi, M \rangle` at the entropic optimum, POT's ``ot.sinkhorn2``.

    Same arguments as :func:`sinkhorn` (POT's value convention: the
    transport cost of the entropic plan, without the entropy term). The cost
    is summed in float64 while the plan is streamed, never stored.

    Returns:
        ``()`` or ``(B,)`` in M's dtype (and the log with ``log=True``). Not
        differentiable (use :func:`sinkhorn_divergence` for gradients).
    """
    squeeze, _M3, _reg, out = _solve(a, b, M, reg, method, max_iter, tol, backend)
    cost = out[2][0] if squeeze else out[2]
    return (cost, _log_dict(squeeze, out)) if log else cost


def epsilon_schedule(p: int, diameter: float, blur: float, scaling: float) -> list[float]:
    r"""GeomLoss's :math:`\varepsilon`-scaling: diameter^p, then geometric steps of
    scaling^p from there down to (excluded) blur^p, then blur^p."""
    start, stop, step = p * math.log(diameter), p * math.log(blur), p * math.log(scaling)
    count = max(0, math.ceil((stop - start) / step))
    return [diameter**p] + [math.exp(start + k * step) for k in range(count)] + [blur**p]


def _points(t: object, name: str) -> torch.Tensor:
    t = float_tensor(t, name)
    if t.dim() not in (2, 3):
        raise ValueError(f"`{name}` must have shape (n, d) or (B, n, d), got {tuple(t.shape)}")
    return t


def sinkhorn_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    p: int = 2,
    blur: float = 0.05,
    scaling: float = 0.5,
    debias: bool = True,
    reach: float | None = None,
    diameter: float | None = None,
    tol: float | None = None,
    max_iter: int = 1000,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Sinkhorn divergence between point clouds, GeomLoss's ``SamplesLoss("sinkhorn", ...)``.

    Cost :math:`C(x, y) = \|x - y\|^p / p` (p = 1: computed as
    :math:`\sqrt{\max(\|x-y\|^2, 10^{-8})}`, GeomLoss's smoothing),
    :math:`\varepsilon = \text{blur}^p`. With ``debias``,

    .. math:: S_\varepsilon(a, b) = \mathrm{OT}_\varepsilon(a, b)
        - \tfrac12 \mathrm{OT}_\varepsilon(a, a) - \tfrac12 \mathrm{OT}_\varepsilon(b, b)
        = \langle a, f_{ab} - f_{aa} \rangle + \langle b, g_{ab} - g_{bb} \rangle,

    else :math:`\mathrm{OT}_\varepsilon(a, b) = \langle a, f \rangle + \langle b, g \rangle`.
    With ``reach`` (unbalanced OT: the marginal constraints become a KL
    penalty of strength :math:`\rho = \text{reach}^p`, so mass far from the
    other cloud may be created or destroyed instead of transported), every
    softmin is damped by :math:`\rho / (\rho + \varepsilon)` and

    .. math:: S_{\varepsilon,\rho} = (\rho + \tfrac{\varepsilon}{2})
        \big(\langle a, e^{-f_{aa}/\rho} - e^{-f_{ab}/\rho} \rangle
        + \langle b, e^{-g_{bb}/\rho} - e^{-g_{ab}/\rho} \rangle\big)

    (without ``debias``, :math:`e^{-f_{aa}/\rho}` and :math:`e^{-g_{bb}/\rho}`
    are 1): GeomLoss's formula (Séjourné et al. 2019). The masses of a and b
    may then differ.
    The symmetric updates run over GeomLoss's schedule: :math:`\varepsilon`
    from diameter^p down to blur^p by factors scaling^p, one iteration per
    value, then the potentials are extrapolated once more at blur^p (so the
    value equals GeomLoss's, not a more converged one). With ``tol``, the
    iterations continue at blur^p until the potentials of each problem move
    by at most ``tol`` (up to ``max_iter`` in all).

    Gradients (first order): from the final potentials in one streaming
    pass, :math:`\nabla_{x_i} S = a_i \sum_j \pi_{ij}/a_i\, \nabla_x C(x_i, y_j)
    - a_i \sum_k \pi^{aa}_{ik}/a_i\, \nabla_x C(x_i, x_k)`, and
    :math:`\partial S / \partial a_i = f_{ab,i} - f_{aa,i}` (likewise for y,
    b): GeomLoss's gradients, never backpropagated through iterations.

    Args:
        x: ``(n, d)`` or ``(B, n, d)``, float32 or float64, finite.
        y: ``(m, d)`` or ``(B, m, d)``.
        a, b: weights ``(n,)`` / ``(B, n)`` and ``(m,)`` / ``(B, m)``, non-negative
            and of equal mass (any positive masses with ``reach``); None for
            uniform (1/n, 1/m).
        p: 1 or 2. blur, scaling: GeomLoss's (scaling in (0, 1)).
        debias: the debiased divergence (True) or OT_eps (False).
        reach: None (balanced OT) or a finite length > 0: unbalanced OT
            with :math:`\rho = \text{reach}^p`; transport over distances
            well beyond reach is replaced by creating or destroying mass.
        diameter: the schedule's start; None computes GeomLoss's (the
            diagonal of the bounding box of all points of the batch).
        tol, max_iter: optional convergence at the final eps (see above).
        backend: ``"auto"`` (fastgan's kernels) or ``"reference"`` (PyTorch, stores n x m).

    Returns:
        ``()`` or ``(B,)``, differentiable once with respect to x, y, a, b.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"`p` must be 1 or 2, got {p!r}")
    p = int(p)
    rho = None if reach is None else positive(reach, "reach") ** p
    if rho is not None and math.isinf(rho):  # reach^p beyond float range: balanced
        rho = None
    blur = positive(blur, "blur")
    scaling = positive(scaling, "scaling")
    if scaling >= 1:
        raise ValueError(f"`scaling` must be in (0, 1), got {scaling}")
    max_iter = positive_int(max_iter, "max_iter")
    tol_value = -1.0 if tol is None else positive(tol, "tol", allow_zero=True)
    x, y = _points(x, "x"), _points(y, "y")
    if x.dim() != y.dim() or x.shape[:-2] != y.shape[:-2] or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"`x` {tuple(x.shape)} and `y` {tuple(y.shape)} must share the batch and feature sizes"
        )
    if y.dtype != x.dtype or y.device != x.device:
        raise TypeError(f"`y` has {y.dtype} on {y.device} but `x` has {x.dtype} on {x.device}")
    if x.shape[-2] == 0 or y.shape[-2] == 0:
        raise ValueError(f"`x` and `y` need at least one point each, got {tuple(x.shape)} and {tuple(y.shape)}")
    squeeze = x.dim() == 2
    x3, y3 = (x.unsqueeze(0), y.unsqueeze(0)) if squeeze else (x, y)
    batch = () if squeeze else (x3.shape[0],)
    a3 = _weights(a, x3.shape[1], batch, x, "a")
    b3 = _weights(b, y3.shape[1], batch, x, "b")
    if squeeze:
        a3, b3 = a3.unsqueeze(0), b3.unsqueeze(0)
    check_finite(x3.detach(), "x")
    check_finite(y3.detach(), "y")
    check_weights(a3, b3, ("a", "b"), same_mass=rho is None)
    if diameter is None:
        pts = torch.cat((x3.detach().reshape(-1, x3.shape[-1]), y3.detach().reshape(-1, x3.shape[-1])))
        diameter = float(torch.linalg.vector_norm(pts.max(0).values - pts.min(0).values)) if pts.numel() else 0.0
        diameter = diameter if diameter > 0 else blur
    else:
        diameter = positive(diameter, "diameter")
    eps_list = epsilon_schedule(p, diameter, blur, scaling)
    if max_iter < len(eps_list):
        raise ValueError(f"`max_iter` ({max_iter}) is shorter than the eps schedule ({len(eps_list)} steps)")
    if backend == "reference":
        from fastgan import reference

        cost = reference.sinkhorn_points(x3, y3, a3, b3, p, eps_list, debias, tol_value, max_iter, rho)
    else:
        _library.require_kernel("sinkhorn_points", x.device)
        cost = torch.ops.fastgan.sinkhorn_points.default(
            x3, y3, a3, b3, p, eps_list, debias, tol_value, max_iter, rho
        )[0]
    return cost[0] if squeeze else cost


# ------------------------------------------------------------------ fake impls and autograd


def _sinkhorn_log_fake(a, b, M, reg, max_iter, tol):
    batch, n, m = M.shape
    return (
        M.new_empty((batch, n)),
        M.new_empty((batch, m)),
        M.new_empty((batch,)),
        M.new_empty((batch,), dtype=torch.int64),
        M.new_empty((batch,)),
        M.new_empty((batch,), dtype=torch.bool),
    )


def _sinkhorn_log_setup(ctx, inputs, output) -> None:
    ctx.mark_non_differentiable(*output)


def _sinkhorn_log_backward(ctx, *grads):
    raise RuntimeError(
        "fastgan.ot.sinkhorn / sinkhorn2 are not differentiable; use "
        "fastgan.ot.sinkhorn_divergence for gradients"
    )


def _softmin_fake(x, y, h, eps, p):
    return x.new_empty(x.shape[:2])


def _points_fake(x, y, a, b, p, eps_list, debias, tol, max_iter, rho=None):
    batch, n, _ = x.shape
    m = y.shape[1]
    pots = (
        x.new_empty((2, batch, n)),
        x.new_empty((2, batch, m)),
        x.new_empty((2, batch, n)) if debias else x.new_empty((0,)),
        x.new_empty((2, batch, m)) if debias else x.new_empty((0,)),
    )
    return x.new_empty((batch,)), *pots, x.new_empty((batch,), dtype=torch.int64)


def _points_backward_fake(grad_cost, x, y, a, b, f, g, faa, gbb, p, eps, rho=None):
    return x.new_empty(x.shape), y.new_empty(y.shape)


def _points_setup(ctx, inputs, output) -> None:
    x, y, a, b, p, eps_list, debias, tol, max_iter = inputs[:9]
    cost, f, g, faa, gbb, n_iter = output
    ctx.p, ctx.eps = p, eps_list[-1]
    ctx.rho = inputs[9] if len(inputs) > 9 else None
    ctx.save_for_backward(x, y, a, b, f, g, faa, gbb)
    ctx.mark_non_differentiable(f, g, faa, gbb, n_iter)


def _points_backward(ctx, grad_cost, *_):
    if torch.is_grad_enabled():
        raise RuntimeError("fastgan.ot.sinkhorn_divergence is differentiable once; create_graph=True is not supported")
    x, y, a, b, f, g, faa, gbb = ctx.saved_tensors
    grad_cost = grad_cost.contiguous()
    gx = gy = ga = gb = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        gx, gy = torch.ops.fastgan.sinkhorn_points_backward.default(
            grad_cost, x, y, a, b, f, g, faa, gbb, ctx.p, ctx.eps, ctx.rho
        )
    if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
        # d cost / d a_i: the term of a_i in the cost (the softmins' log
        # weights are held constant, as in GeomLoss).
        ga = grad_cost.unsqueeze(1) * _weight_gradient(f[0], faa[0] if faa.numel() else None, ctx.rho, ctx.eps)
        gb = grad_cost.unsqueeze(1) * _weight_gradient(g[0], gbb[0] if gbb.numel() else None, ctx.rho, ctx.eps)
    return gx, gy, ga, gb, None, None, None, None, None, None


def _weight_gradient(pot: torch.Tensor, self_pot: torch.Tensor | None, rho: float | None, eps: float) -> torch.Tensor:
    """d cost / d weight_i at fixed potentials (the envelope theorem).

    Balanced: f - f_aa (f without debias). Unbalanced: (rho + eps)(e^{-f_aa / rho}
    - e^{-f / rho}) with debias, (rho + eps)(1 - e^{-f / rho}) - eps / 2
    without (the derivative of the cost as defined, mass terms included).
    """
    if rho is None or math.isinf(rho):
        return pot - self_pot if self_pot is not None else pot
    if self_pot is None:
        return (rho + eps) * (1.0 - torch.exp(-pot / rho)) - 0.5 * eps
    return (rho + eps) * (torch.exp(-self_pot / rho) - torch.exp(-pot / rho))


if _library.LOADED:
    torch.library.register_fake("fastgan::sinkhorn_log")(_sinkhorn_log_fake)
    torch.library.register_autograd(
        "fastgan::sinkhorn_log", _sinkhorn_log_backward, setup_context=_sinkhorn_log_setup
    )
    torch.library.register_fake("fastgan::sinkhorn_softmin")(_softmin_fake)
    torch.library.register_fake("fastgan::sinkhorn_points")(_points_fake)
    torch.library.register_autograd("fastgan::sinkhorn_points", _points_backward, setup_context=_points_setup)
    torch.library.register_fake("fastgan::sinkhorn_points_backward")(_points_backward_fake)
    _library.register_triton("sinkhorn_log", "sinkhorn", "sinkhorn_log")
    _library.register_triton("sinkhorn_softmin", "sinkhorn", "sinkhorn_softmin")
    _library.register_triton("sinkhorn_points", "sinkhorn", "sinkhorn_points")
    _library.register_triton("sinkhorn_points_backward", "sinkhorn", "sinkhorn_points_backward")
