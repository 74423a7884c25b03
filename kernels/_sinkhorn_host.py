r"""Host-side (PyTorch) helpers of the Sinkhorn kernels: log weights, damping, the cost from the potentials.

What :mod:`fastgan.kernels.sinkhorn` computes around its Triton launches,
as csrc/cpu/sinkhorn.cpp does in C++: GeomLoss's log weights, the
unbalanced damping :math:`\rho / (\rho + \varepsilon)` of a softmin, and
the op's cost (with its autograd at fixed potentials) from the returned
potentials. :mod:`fastgan.reference.sinkhorn` keeps its own copies: the
oracle shares no code with the kernels it judges.
"""

from __future__ import annotations

import torch

__all__ = ["damping", "log_weights", "points_cost"]


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
