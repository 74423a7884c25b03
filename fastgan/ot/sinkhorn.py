r"""Entropic optimal transport with POT's plan / cost API: :func:`sinkhorn`, :func:`sinkhorn2`, :func:`sinkhorn_log`.

For weights :math:`a \in \mathbb{R}^n_+`, :math:`b \in \mathbb{R}^m_+` of
equal mass and a cost :math:`C`, the entropic problem

.. math:: \mathrm{OT}_\varepsilon(a, b) = \min_{\pi \ge 0,\ \pi 1 = a,\ \pi^\top 1 = b}
    \langle \pi, C \rangle + \varepsilon\, \mathrm{KL}(\pi \,\|\, a \otimes b)

has the dual potentials :math:`f, g` at which
:math:`\pi_{ij} = a_i b_j \exp((f_i + g_j - C_{ij}) / \varepsilon)`.
Sinkhorn's iterations in the log domain are softmins,
:math:`f_i \leftarrow -\varepsilon \log \sum_j b_j \exp((g_j - C_{ij}) / \varepsilon)`,
which fastgan's kernels stream over tiles of columns with a running maximum
(no overflow at any :math:`\varepsilon`).

- :func:`sinkhorn` / :func:`sinkhorn2` / :func:`sinkhorn_log`: POT's
  ``ot.sinkhorn`` / ``ot.sinkhorn2`` / ``ot.bregman.sinkhorn_log`` (every
  ``method`` runs the log-domain iteration, :mod:`fastgan.ot._methods`),
  batched; ``reg`` is :math:`\varepsilon`, the cost :math:`\langle \pi, M \rangle`.
- :class:`_SinkhornCost` and :func:`cost_adjoint`: the implicit derivative
  of that cost (derived in :func:`sinkhorn2`'s docstring).

The problem depends on M and reg only through M / reg, so no rescaling is
needed; where the range of M / reg is so large that the potentials would
cancel against it, the cost is reduced by its row and column minima
(:func:`_reduce_cost`: a shift, which leaves the plan unchanged, not a
rescale). :func:`sinkhorn_divergence` and :func:`epsilon_schedule` (the
point-cloud divergence, :mod:`fastgan.ot.sinkhorn_points`) are importable
from here too.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.autograd.function import once_differentiable

from fastgan import _library
from fastgan._tensors import positive, positive_int
from fastgan.ot import _sinkhorn_ops  # noqa: F401  (the ops' fake impls and autograd)
from fastgan.ot._checks import check_finite, check_weights, float_tensor, weights_or_uniform
from fastgan.ot._compat import ArrayLike, ConvergenceWarning, array_io, external_stacklevel
from fastgan.ot._methods import LOG_SOLVER, resolve_method, warm_potentials
from fastgan.ot.sinkhorn_points import epsilon_schedule, sinkhorn_divergence  # re-exported: fastgan.ot.sinkhorn's names

__all__ = ["SinkhornLog", "sinkhorn", "sinkhorn2", "sinkhorn_divergence", "sinkhorn_log"]

BACKENDS = ("auto", "reference")


class SinkhornLog(dict):
    r"""``log=True`` extras, under POT's keys: ``u``, ``v`` (the scalings,
    :math:`\pi = \operatorname{diag}(u) e^{-M/\text{reg}} \operatorname{diag}(v)`,
    as the chosen method's iteration has them: with ``method="sinkhorn"``
    POT's Sinkhorn-Knopp scalings, u / n and v * n of the log domain's),
    ``log_u``, ``log_v`` (the log domain's scalings, as POT's
    ``"sinkhorn_log"`` reports them: the potentials are ``reg * log_u``,
    ``reg * log_v``), ``niter`` (the index of the last iteration, as POT
    counts), ``err`` (a one-element list: the last column-marginal error;
    POT lists every check's), and fastgan's ``converged`` (bool) and
    ``solver`` (the solver that ran: ``"sinkhorn_log"`` for every method)."""


def several_histograms(a, b, M):
    """POT's several targets: ``b`` (m, k) with ``M`` (n, m) become k problems
    ``a`` (k, n), ``b`` (k, m), ``M`` (k, n, m); else the inputs unchanged.
    Returns (a, b, M, k or None)."""
    if not (isinstance(M, torch.Tensor) and M.dim() == 2 and isinstance(b, torch.Tensor) and b.dim() == 2):
        return a, b, M, None
    n, m = M.shape
    if b.shape[0] != m:
        raise ValueError(f"`b` must have shape ({m},), or ({m}, k) for k target histograms, got {tuple(b.shape)}")
    k = b.shape[1]
    if isinstance(a, torch.Tensor) and a.numel():
        if a.shape != (n,):
            raise ValueError(f"`a` must have shape ({n},) with several target histograms, got {tuple(a.shape)}")
        a = a.expand(k, n)
    else:
        a = None if a is None or not isinstance(a, torch.Tensor) else a
    return a, b.T, M.expand(k, n, m), k


def _solve(a, b, M, reg, method, max_iter, tol, warn, backend, options, warmstart=None):
    """Checks the POT-style arguments and runs the solver: (squeeze, M3, a3, b3, reg, results)."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    M = float_tensor(M, "M")
    if M.dim() not in (2, 3):
        raise ValueError(f"`M` must have shape (n, m) or (B, n, m), got {tuple(M.shape)}")
    if M.shape[-1] == 0 or M.shape[-2] == 0:
        raise ValueError(f"`M` must have n, m >= 1, got {tuple(M.shape)}")
    reg = positive(reg, "reg")
    max_iter = resolve_method(method, positive_int(max_iter, "numItermax"), options)
    tol = positive(tol, "stopThr", allow_zero=True)
    squeeze = M.dim() == 2
    M3 = M.unsqueeze(0) if squeeze else M
    batch = tuple(M3.shape[:1])
    a3 = weights_or_uniform(a, M3.shape[1], batch if not squeeze else (), M, "a")
    b3 = weights_or_uniform(b, M3.shape[2], batch if not squeeze else (), M, "b")
    if squeeze:
        a3, b3 = a3.unsqueeze(0), b3.unsqueeze(0)
    check_weights(a3, b3, ("a", "b"))
    # float32 cannot resolve a marginal error much below its rounding of
    # the mass: a tighter tol would only spin to max_iter.
    mass = float(b3.detach().sum(-1).max()) if b3.numel() else 1.0
    tol = max(tol, 64 * torch.finfo(M.dtype).eps * mass) if M.dtype == torch.float32 else tol
    with torch.no_grad():
        a_in, b_in, M_in = a3.detach(), b3.detach(), M3.detach().contiguous()
        if backend == "reference":
            check_finite(M_in, "M")
        warm = warm_potentials(warmstart, M_in)
        M_w = M_in if warm is None else M_in - reg * (warm[0].unsqueeze(2) + warm[1].unsqueeze(1))
        reduced = _reduce_cost(M_w, reg)
        if warm is not None:  # the shift is undone as the reduction's is
            r, c = reg * warm[0], reg * warm[1]
            reduced = (M_w, r, c) if reduced is None else (reduced[0], reduced[1] + r, reduced[2] + c)
        run_on = M_in if reduced is None else reduced[0]
        if backend == "reference":
            from fastgan import reference

            out = reference.sinkhorn_log(a_in, b_in, run_on, reg, max_iter, tol)
        else:
            _library.require_kernel("sinkhorn_log", M.device)
            out = torch.ops.fastgan.sinkhorn_log.default(a_in, b_in, run_on, reg, max_iter, tol)
        stable = (M_in, out[0], out[1])
        if reduced is not None:
            out, stable = _unreduce(out, M_in, a_in, reduced, reg, tol)
    converged = out[5]
    if warn and converged.numel() and not bool(converged.all()):
        bad = int((~converged).sum())
        warnings.warn(
            f"Sinkhorn did not converge: {bad} of {converged.numel()} problems kept a marginal "
            f"error above stopThr={tol:.3g} after {max_iter} iterations of {LOG_SOLVER}; increase "
            "`numItermax` or `reg`",
            ConvergenceWarning,
            stacklevel=external_stacklevel(),
        )
    return squeeze, M3, a3, b3, reg, out, stable


#: The rounding error, in units of the dtype's eps, of (cost range) / reg
#: above which the log-domain iteration loses the plan to cancellation
#: (the potentials grow as large as M / reg while the plan's logs are O(1)).
_REDUCE_ABOVE = 1e-3


def _reduce_cost(M: torch.Tensor, reg: float):
    r"""Where (range of M) / reg is large enough for the dual potentials to cancel
    catastrophically against M / reg, the reduced cost M' = M - r 1^T - 1 c^T
    (r the row minima, c the column minima of M - r 1^T), which has the same
    entropic plan and a zero in every row and column; None elsewhere.
    Returns (M', r, c).

    This is a shift, not a rescale (fastgan.ot's one rescaling rule is
    :func:`~fastgan.ot._checks.power_of_two_scale`): the plan
    :math:`e^{(f_i + g_j - M_{ij}) / \varepsilon}` is unchanged when
    :math:`r_i, c_j` move from M into f, g, whatever M's magnitude; what
    it removes is the spread of M / reg within each row and column, which
    no scaling of M and reg together changes.
    """
    if M.numel() == 0:
        return None
    spread = float((M.amax(dim=(1, 2)) - M.amin(dim=(1, 2))).max())
    if not spread / reg * torch.finfo(M.dtype).eps > _REDUCE_ABOVE:
        return None
    r = M.amin(dim=2, keepdim=True)
    shifted = M - r
    c = shifted.amin(dim=1, keepdim=True)
    return shifted - c, r.squeeze(2), c.squeeze(1)


def _unreduce(out, M, a, reduced, reg: float, tol: float):
    """The solver's results on the reduced cost, stated for M: the log
    scalings shifted back (POT's log_u, log_v), the cost <pi, M> and both
    marginals' errors from the plan in float64. Returns (results, (M', u', v'))
    where exp(u' + v' - M'/reg) is the plan without cancellation."""
    Mr, r, c = reduced
    u, v, _cost, n_iter, err, converged = out
    plan = torch.exp(u.double().unsqueeze(2) + v.double().unsqueeze(1) - Mr.double() / reg)
    cost = (plan * M.double()).sum((1, 2)).to(M.dtype)
    row_err = (plan.sum(2) - a.double()).norm(dim=1)
    converged = converged & (row_err <= max(tol, 16 * torch.finfo(M.dtype).eps * float(a.sum(-1).max())))
    log_u, log_v = u + r / reg, v + c / reg
    return (log_u, log_v, cost, n_iter, err, converged), (Mr, u, v)


def _log_dict(squeeze: bool, histograms: int | None, out, method: str, warm: bool = False) -> SinkhornLog:
    log_u, log_v, _cost, n_iter, err, converged = out
    # POT's Sinkhorn-Knopp starts from u = 1/n (or the warm start) where the log
    # domain starts from log u = 0 (or the same): the scalings differ by that factor.
    shift = math.log(log_u.shape[-1]) if method.lower() == "sinkhorn" and not warm else 0.0
    if squeeze:
        log_u, log_v, n_iter, err, converged = log_u[0], log_v[0], n_iter[0], err[0], converged[0]
    elif histograms is not None:  # POT's layout: (n, k) and (m, k)
        log_u, log_v = log_u.T, log_v.T
    return SinkhornLog(
        u=(log_u - shift).exp(), v=(log_v + shift).exp(), log_u=log_u, log_v=log_v,
        niter=n_iter, err=[err], converged=converged, solver=LOG_SOLVER,
    )


def _verbose(out) -> None:
    n_iter, err = out[3], out[4]
    for k in range(n_iter.numel()):
        print(f"{LOG_SOLVER} problem {k}: {int(n_iter[k])} iterations, marginal error {float(err[k]):.6e}")


def _resolve_aliases(numItermax: int, stopThr: float, max_iter: int | None, tol: float | None):
    """fastgan's earlier names ``max_iter`` / ``tol`` for POT's ``numItermax`` / ``stopThr``."""
    if max_iter is not None:
        numItermax = positive_int(max_iter, "max_iter")
    if tol is not None:
        stopThr = positive(tol, "tol", allow_zero=True)
    return numItermax, stopThr


@array_io("M", "a", "b")
def sinkhorn(
    a: ArrayLike | None,
    b: ArrayLike | None,
    M: ArrayLike,
    reg: float,
    method: str = "sinkhorn",
    numItermax: int = 1000,
    stopThr: float = 1e-9,
    verbose: bool = False,
    log: bool = False,
    warn: bool = True,
    warmstart: tuple[ArrayLike, ArrayLike] | None = None,
    *,
    max_iter: int | None = None,
    tol: float | None = None,
    backend: str = "auto",
    **options: float,
):
    r"""The entropic transport plan, POT's ``ot.sinkhorn`` (numpy or torch, batched).

    .. math:: \pi = \operatorname{diag}(u)\, e^{-M / \text{reg}} \operatorname{diag}(v),
        \quad \log v \leftarrow \log b - \mathrm{LSE}_i(\log u_i - M_{ij}/\text{reg}),
        \quad \log u \leftarrow \log a - \mathrm{LSE}_j(\log v_j - M_{ij}/\text{reg})

    POT's iteration order and stopping rule: after iterations 0, 10, 20, ...
    stop once :math:`\|\pi^\top 1 - b\|_2 <` ``stopThr``; each problem of a
    batch stops on its own.

    Args:
        a: ``(n,)`` or ``(B, n)`` non-negative weights; None or ``[]`` for uniform.
        b: ``(m,)`` or ``(B, m)``, the same mass as ``a`` (else ValueError);
            or, with a 2-D ``M``, ``(m, k)``: k target histograms, as POT, and
            the result is then the k costs (POT's ``ot.sinkhorn`` does the same).
        M: cost ``(n, m)`` or ``(B, n, m)``, float32 or float64, finite.
            numpy arrays and lists give numpy results; tensors give tensors.
        reg: the entropic regularisation :math:`\varepsilon > 0` (``reg=0``
            is refused: the exact problem is :func:`fastgan.ot.emd`).
        method: ``"sinkhorn"`` (POT's default), ``"sinkhorn_log"`` or
            fastgan's ``"log"``: the same iteration, run in the log domain.
            ``"sinkhorn_stabilized"``, ``"sinkhorn_epsilon_scaling"`` and
            ``"greenkhorn"`` solve the same problem: they run the log-domain
            solver too, with the caps of :mod:`fastgan.ot._methods` (the
            log's ``solver`` names it); ``"screenkhorn"`` raises
            :class:`UnsupportedMethodError` (a NotImplementedError).
        numItermax, stopThr: POT's iteration cap and tolerance (also under
            fastgan's names ``max_iter``, ``tol``). In float32 the tolerance is
            raised to 64 float32 epsilons of the mass (what float32 can
            resolve).
        verbose: print each problem's iteration count and final error.
        log: also return a :class:`SinkhornLog` (POT's keys).
        warn: a problem that reaches ``numItermax`` raises a
            :class:`ConvergenceWarning` (a UserWarning); ``warn=False``
            silences it. True by default in :func:`sinkhorn2` too, where POT
            0.9.7 defaults to False: a cost that did not converge is not
            reported silently.
        warmstart: None, or POT's initial log scalings ``(log u, log v)``
            (``(n,)``, ``(m,)``): the iteration starts there (same iterates as POT).
        options: POT's options of the chosen method (``tau``,
            ``print_period``, ``epsilon0``, ``numInnerItermax``), checked;
            only ``numInnerItermax`` changes the solve (its cap).
        backend: ``"auto"`` (fastgan's kernels: C++ on the CPU, Triton on CUDA) or
            ``"reference"`` (PyTorch).

    Returns:
        the plan ``(n, m)`` / ``(B, n, m)`` (and the log). The plan is not
        differentiable (inputs that require grad are an error, not a
        plan that silently drops their gradient); :func:`sinkhorn2` is.
    """
    numItermax, stopThr = _resolve_aliases(numItermax, stopThr, max_iter, tol)
    a, b, M, histograms = several_histograms(a, b, M)
    if histograms is not None:
        return sinkhorn2(a, b, M, reg, method, numItermax, stopThr, verbose, log, warn, warmstart, backend=backend, **options)
    if torch.is_grad_enabled():
        for t, name in ((M, "M"), (a, "a"), (b, "b")):
            if isinstance(t, torch.Tensor) and t.requires_grad:
                raise ValueError(
                    f"fastgan.ot.sinkhorn returns the plan without a gradient, and `{name}` requires "
                    "grad: detach it (or run under torch.no_grad()), or differentiate the cost "
                    "with fastgan.ot.sinkhorn2"
                )
    squeeze, M3, _a3, _b3, reg, out, stable = _solve(
        a, b, M, reg, method, numItermax, stopThr, warn, backend, options, warmstart
    )
    if verbose:
        _verbose(out)
    M_s, log_u, log_v = stable
    plan = torch.exp(log_u.unsqueeze(2) + log_v.unsqueeze(1) - M_s / reg)
    plan = plan[0] if squeeze else plan
    return (plan, _log_dict(squeeze, None, out, method, warmstart is not None)) if log else plan


@array_io("M", "a", "b")
def sinkhorn2(
    a: ArrayLike | None,
    b: ArrayLike | None,
    M: ArrayLike,
    reg: float,
    method: str = "sinkhorn",
    numItermax: int = 1000,
    stopThr: float = 1e-9,
    verbose: bool = False,
    log: bool = False,
    warn: bool = True,
    warmstart: tuple[ArrayLike, ArrayLike] | None = None,
    *,
    max_iter: int | None = None,
    tol: float | None = None,
    backend: str = "auto",
    **options: float,
):
    r"""The transport cost :math:`L = \langle \pi, M \rangle` of the entropic plan, POT's ``ot.sinkhorn2``.

    Same arguments as :func:`sinkhorn` (POT's value convention: the
    transport cost of the entropic plan, without the entropy term); ``b``
    of shape ``(m, k)`` gives k costs. The cost is summed in float64 while
    the plan is streamed.

    Differentiable once with respect to ``M`` (and through it to the points
    that built it), ``a`` and ``b``: the exact derivative of :math:`L` at
    the computed plan, which is what POT's torch backend obtains by
    backpropagating through its iterations once they have converged. With
    :math:`\pi = e^{(f \oplus g - M)/\varepsilon}`, the marginal
    constraints :math:`\pi 1 = a`, :math:`\pi^\top 1 = b` define
    :math:`f, g` implicitly; the adjoint :math:`(\lambda_f, \lambda_g)` solves

    .. math:: a \odot \lambda_f + \pi \lambda_g = -(\pi \odot M) 1, \qquad
        \pi^\top \lambda_f + b \odot \lambda_g = -(\pi \odot M)^\top 1

    (one (m, m) linear solve per problem, in float64), and

    .. math:: \frac{\partial L}{\partial M_{ij}} = \pi_{ij}
        \Big(1 - \frac{M_{ij} + \lambda_{f,i} + \lambda_{g,j}}{\varepsilon}\Big), \quad
        \frac{\partial L}{\partial a} = -\lambda_f + \overline{\lambda_f}, \quad
        \frac{\partial L}{\partial b} = -\lambda_g + \overline{\lambda_g}.

    The weights' gradients are centred, as for :func:`fastgan.ot.emd2`: only
    changes that keep the masses equal are meaningful. (The plan
    :math:`\pi` itself is the gradient of the entropic objective
    :math:`\langle \pi, M \rangle + \varepsilon \mathrm{KL}`, not of this cost.)
    Higher derivatives are not supported (an error, not zeros).

    Returns:
        ``()`` or ``(B,)`` (``(k,)`` for k histograms) in M's dtype (and the
        log with ``log=True``).
    """
    numItermax, stopThr = _resolve_aliases(numItermax, stopThr, max_iter, tol)
    a, b, M, histograms = several_histograms(a, b, M)
    squeeze, M3, a3, b3, reg, out, stable = _solve(
        a, b, M, reg, method, numItermax, stopThr, warn, backend, options, warmstart
    )
    if verbose:
        _verbose(out)
    cost = _SinkhornCost.apply(M3, a3, b3, stable, out[2], reg)
    cost = cost[0] if squeeze else cost
    return (cost, _log_dict(squeeze, histograms, out, method, warmstart is not None)) if log else cost


def sinkhorn_log(a, b, M, reg: float, numItermax: int = 1000, stopThr: float = 1e-9, verbose: bool = False,
                 log: bool = False, warn: bool = True, warmstart=None, **kwargs):
    """POT's ``ot.bregman.sinkhorn_log``: :func:`sinkhorn` with ``method="sinkhorn_log"``
    (the plan, and the log with ``log=True``); same arguments and results."""
    return sinkhorn(a, b, M, reg, "sinkhorn_log", numItermax, stopThr, verbose, log, warn, warmstart, **kwargs)


class _SinkhornCost(torch.autograd.Function):
    """Attaches the implicit derivatives of the cost (see :func:`sinkhorn2`) to a solved problem."""

    @staticmethod
    def forward(ctx, M, a, b, stable, cost, reg):
        ctx.reg = reg
        M_s, log_u, log_v = stable
        ctx.save_for_backward(M.detach(), b.detach(), M_s, log_u, log_v)
        return cost.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_cost):
        M, b, M_s, log_u, log_v = (t.double() for t in ctx.saved_tensors)
        grad_M, lam_f, lam_g = cost_adjoint(M, b, log_u, log_v, ctx.reg, M_s)
        g = grad_cost.double()
        dtype = grad_cost.dtype
        grads = [None] * 6
        if ctx.needs_input_grad[0]:
            grads[0] = (grad_M * g[:, None, None]).to(dtype)
        if ctx.needs_input_grad[1]:
            grads[1] = (-(lam_f - lam_f.mean(-1, keepdim=True)) * g[:, None]).to(dtype)
        if ctx.needs_input_grad[2]:
            grads[2] = (-(lam_g - lam_g.mean(-1, keepdim=True)) * g[:, None]).to(dtype)
        return tuple(grads)


def cost_adjoint(M, b, log_u, log_v, reg: float, M_stable=None):
    r"""The derivative of :math:`\langle \pi, M \rangle` in M and the adjoint (\lambda_f, \lambda_g).

    All (B, ...) float64. Works with the conditional plans
    :math:`Q = \pi / a` (rows) and :math:`R = \pi / b` (columns), softmaxes
    that stay defined for zero weights, so the adjoint system divided by the
    weights reads :math:`\lambda_f = -h - Q\lambda_g`,
    :math:`(I - R^\top Q)\lambda_g = R^\top h - c` with
    :math:`h = (Q \odot M) 1`, :math:`c = (R \odot M)^\top 1`. :math:`R^\top Q`
    is stochastic with stationary distribution b / sum(b); adding
    :math:`1 b^\top / \sum b` removes its null direction (the solution with
    :math:`b^\top \lambda_g = 0`; any other differs by a constant that the
    centring of the gradients removes). ``M_stable`` (default M) is the
    cost that log_u, log_v scale: M less row and column constants, which
    leave the plan unchanged.
    """
    scaled = (M if M_stable is None else M_stable) / reg
    plan = torch.exp(log_u.unsqueeze(2) + log_v.unsqueeze(1) - scaled)
    Q = torch.softmax(log_v.unsqueeze(1) - scaled, dim=2)
    R = torch.softmax(log_u.unsqueeze(2) - scaled, dim=1)
    h = (Q * M).sum(2)
    c = (R * M).sum(1)
    m = M.shape[2]
    pi = b / b.sum(-1, keepdim=True)
    system = torch.eye(m, dtype=M.dtype, device=M.device) - R.transpose(1, 2) @ Q + pi.unsqueeze(1)
    rhs = (R.transpose(1, 2) @ h.unsqueeze(2)).squeeze(2) - c
    lam_g = torch.linalg.solve(system, rhs)
    lam_f = -h - (Q @ lam_g.unsqueeze(2)).squeeze(2)
    grad_M = plan * (1 - (M + lam_f.unsqueeze(2) + lam_g.unsqueeze(1)) / reg)
    return grad_M, lam_f, lam_g
