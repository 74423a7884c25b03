r"""The Sinkhorn divergence between point clouds: GeomLoss's :math:`S_\varepsilon`.

:func:`sinkhorn_divergence` is GeomLoss's ``SamplesLoss("sinkhorn", ...)``:
the cost :math:`C(x, y) = \|x - y\|^p / p` recomputed from the points
inside fastgan's kernels (memory :math:`O((n + m) d)`), GeomLoss's
:math:`\varepsilon`-scaling schedule (:func:`epsilon_schedule`), the
debiased divergence

.. math:: S_\varepsilon(a, b) = \mathrm{OT}_\varepsilon(a, b)
    - \tfrac12 \mathrm{OT}_\varepsilon(a, a) - \tfrac12 \mathrm{OT}_\varepsilon(b, b),

unbalanced OT with ``reach``, and gradients from the final potentials
(the envelope theorem; registered in :mod:`fastgan.ot._sinkhorn_ops`),
never by backpropagating through the iterations. Points far outside unit
scale are rescaled by fastgan.ot's one rule
(:func:`~fastgan.ot._checks.power_of_two_scale`).
"""

from __future__ import annotations

import math

import torch

from fastgan import _library
from fastgan._tensors import positive, positive_int
from fastgan.ot import _sinkhorn_ops  # noqa: F401  (the ops' fake impls and autograd)
from fastgan.ot._checks import check_finite, check_weights, float_tensor, power_of_two_scale, weights_or_uniform

__all__ = ["epsilon_schedule", "sinkhorn_divergence"]

BACKENDS = ("auto", "reference")


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
    if t.shape[-1] == 0:
        raise ValueError(f"`{name}` must have at least one feature, got shape {tuple(t.shape)}")
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
    a3 = weights_or_uniform(a, x3.shape[1], batch, x, "a")
    b3 = weights_or_uniform(b, y3.shape[1], batch, x, "b")
    if squeeze:
        a3, b3 = a3.unsqueeze(0), b3.unsqueeze(0)
    check_finite(x3.detach(), "x")
    check_finite(y3.detach(), "y")
    check_weights(a3, b3, ("a", "b"), same_mass=rho is None)
    # S is homogeneous: S(s x, s y; eps s^p, rho s^p) = s^p S(x, y; eps, rho).
    # The rescaling rule, of degree p (the cost |x - y|^p / p), one scale
    # for the batch (the schedule is shared): the whole solve, the diameter
    # and the schedule included, runs in units of s; the cost comes back times s^p.
    unit = float(power_of_two_scale(x3, y3, degree=p, dims=(0, 1, 2))) if x3.numel() else 1.0
    if diameter is None:  # GeomLoss's: the diagonal of the bounding box of all points of the batch
        pts = torch.cat((x3.detach().reshape(-1, x3.shape[-1]), y3.detach().reshape(-1, x3.shape[-1])))
        # in float64 (the float32 norm of a box of side 1e20 overflows), in units of s
        side = (pts.amax(0) - pts.amin(0)).double() / unit if pts.numel() else pts.new_zeros(0)
        diameter_u = float(torch.linalg.vector_norm(side))
        diameter_u = diameter_u if diameter_u > 0 else blur / unit
    else:
        diameter_u = positive(diameter, "diameter") / unit
    blur_u = blur / unit
    in_range = all(0 < v < math.inf for v in (diameter_u, blur_u))
    eps_list = epsilon_schedule(p, diameter_u, blur_u, scaling) if in_range else [math.inf]
    if max_iter < len(eps_list):
        raise ValueError(f"`max_iter` ({max_iter}) is shorter than the eps schedule ({len(eps_list)} steps)")
    if unit != 1.0:
        x3, y3 = x3 / unit, y3 / unit
        rho = None if rho is None else _in_units(rho, 1 / unit, p)
        tol_value = _in_units(tol_value, 1 / unit, p) if tol_value >= 0 else tol_value
    info = torch.finfo(x.dtype)
    if min(eps_list) < info.tiny or max(eps_list) > info.max:
        raise ValueError(
            f"`blur`^p = {blur**p:.3g} against the points' diameter^p = {(diameter_u * unit) ** p:.3g} leaves the "
            f"range of {x.dtype} (eps from {_in_units(max(eps_list), unit, p):.3g} to {_in_units(min(eps_list), unit, p):.3g}); "
            "pass a larger `blur`, or float64 points"
        )
    if backend == "reference":
        from fastgan import reference

        cost = reference.sinkhorn_points(x3, y3, a3, b3, p, eps_list, debias, tol_value, max_iter, rho)
    else:
        _library.require_kernel("sinkhorn_points", x.device)
        cost = torch.ops.fastgan.sinkhorn_points.default(
            x3, y3, a3, b3, p, eps_list, debias, tol_value, max_iter, rho
        )[0]
    if unit != 1.0:
        cost = _in_units(cost, unit, p)
        if not bool(torch.isfinite(cost.detach()).all()):
            raise ValueError(
                f"the divergence of `x` and `y` (points up to {unit:.3g}) exceeds the range of {x.dtype}; "
                "pass float64 points"
            )
    return cost[0] if squeeze else cost


def _in_units(value, factor: float, p: int):
    """value * factor^p as p exact multiplications by the power of two ``factor``:
    a product beyond the float range becomes inf (not a Python OverflowError)."""
    for _ in range(p):
        value = value * factor
    return value
