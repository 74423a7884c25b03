r"""The f-divergences of the f-GAN tables (Nowozin et al., 2016, Tables 1 and 2).

:data:`F_DIVERGENCES` maps each name (``kl``, ``reverse_kl``, ``pearson``,
``hellinger``, ``js``, ``gan``, ...) to an :class:`FDivergence`: its generator
function :math:`f`, the output activation :math:`g_f`, the Fenchel conjugate
:math:`f^*`, the optimal critic :math:`T^* = f'(p/q)` and the divergence
:math:`D_f(P\|Q) = \sum_x q(x) f(p(x)/q(x))` itself between discrete
distributions. :class:`fastgan.losses.FGAN` builds its losses on them;
:mod:`fastgan.divergences` has the checked divergences between histograms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FDivergence", "F_DIVERGENCES", "f_divergence"]

_LOG2 = math.log(2.0)


def _xlogx(u: Tensor) -> Tensor:
    return torch.special.xlogy(u, u)


def _pearson_value(p: Tensor, q: Tensor) -> Tensor:
    safe_q = torch.where(q > 0, q, torch.ones_like(q))
    finite = (p - q).square() / safe_q
    return torch.where(q > 0, finite, torch.where(p > 0, torch.inf, 0.0).to(p.dtype))


@dataclass(frozen=True)
class FDivergence:
    r"""One row of the f-GAN tables (Nowozin et al., 2016, Tables 1 and 2).

    An f-divergence between distributions P (data) and Q (model) with densities p, q is
    :math:`D_f(P\|Q) = \int q(x) f(p(x)/q(x))\,dx` for a convex f with f(1) = 0 (the
    GAN row has f(1) = -log 4 instead). With the
    Fenchel conjugate :math:`f^*(t) = \sup_u \{ut - f(u)\}` every critic T with values
    in dom f* gives the variational lower bound

    .. math:: D_f(P\|Q) \ge E_{x\sim P}[T(x)] - E_{x\sim Q}[f^*(T(x))],

    tight at :math:`T^*(x) = f'(p(x)/q(x))`. A network with unconstrained output v is
    mapped into dom f* by the output activation: :math:`T = g_f(v)`.

    All callables act elementwise on tensors.
    """

    #: Short name, as accepted by :func:`f_divergence` and ``get("fgan", divergence=...)``.
    name: str
    #: Human-readable name.
    title: str
    #: The generator function f(u), u = p/q >= 0.
    f: Callable[[Tensor], Tensor]
    #: Output activation g_f: R -> dom f*.
    activation: Callable[[Tensor], Tensor]
    #: Inverse of the activation: the raw output v with g_f(v) = t, for t in dom f*.
    activation_inverse: Callable[[Tensor], Tensor]
    #: Fenchel conjugate f*(t) on dom f*.
    conjugate: Callable[[Tensor], Tensor]
    #: f*(g_f(v)), written so that it is exact for large |v| (no inf - inf, no 0 * inf).
    conjugate_of_activation: Callable[[Tensor], Tensor]
    #: Whether t lies in dom f* (boolean tensor).
    in_domain: Callable[[Tensor], Tensor]
    #: Optimal critic T*(p, q) = f'(p/q) for densities p, q > 0.
    optimal_critic: Callable[[Tensor, Tensor], Tensor]
    #: Pointwise integrand q f(p/q), extended to q = 0 and p = 0 by continuity.
    integrand: Callable[[Tensor, Tensor], Tensor]
    #: f'(1): the critic level at which P and Q are indistinguishable.
    threshold: float

    def divergence(self, p: Tensor, q: Tensor, dim: int = -1) -> Tensor:
        """D_f(P||Q) between discrete distributions (histograms) along ``dim``.

        Values are not validated here; see :mod:`fastgan.divergences` for checked
        functions. Infinite where the divergence is (e.g. KL with q = 0 < p).
        """
        return self.integrand(p, q).sum(dim)

    def bound(self, t_on_p: Tensor, t_on_q: Tensor) -> Tensor:
        """The variational bound E_P[T] - E_Q[f*(T)] from critic values T (in dom f*)."""
        return t_on_p.mean() - self.conjugate(t_on_q).mean()


def _js_activation_inverse(t: Tensor) -> Tensor:
    # g(v) = log 2 + log sigmoid(v) = t  <=>  sigmoid(v) = e^t / 2  <=>  v = t - log(2 - e^t)
    return t - torch.log(2.0 - torch.exp(t))


def _gan_activation_inverse(t: Tensor) -> Tensor:
    # g(v) = log sigmoid(v) = t  <=>  v = logit(e^t) = t - log(1 - e^t)
    return t - torch.log(-torch.expm1(t))


_TABLE = (
    FDivergence(
        name="kl",
        title="Kullback-Leibler",
        f=_xlogx,
        activation=lambda v: v,
        activation_inverse=lambda t: t,
        conjugate=lambda t: torch.exp(t - 1.0),
        conjugate_of_activation=lambda v: torch.exp(v - 1.0),
        in_domain=lambda t: torch.isfinite(t),
        optimal_critic=lambda p, q: 1.0 + torch.log(p / q),
        integrand=lambda p, q: _xlogx(p) - torch.special.xlogy(p, q),
        threshold=1.0,
    ),
    FDivergence(
        name="reverse_kl",
        title="reverse Kullback-Leibler",
        f=lambda u: -torch.log(u),
        activation=lambda v: -torch.exp(-v),
        activation_inverse=lambda t: -torch.log(-t),
        conjugate=lambda t: -1.0 - torch.log(-t),
        # f*(-e^{-v}) = -1 + v
        conjugate_of_activation=lambda v: v - 1.0,
        in_domain=lambda t: t < 0,
        optimal_critic=lambda p, q: -q / p,
        integrand=lambda p, q: _xlogx(q) - torch.special.xlogy(q, p),
        threshold=-1.0,
    ),
    FDivergence(
        name="pearson",
        title="Pearson chi^2",
        f=lambda u: (u - 1.0).square(),
        activation=lambda v: v,
        activation_inverse=lambda t: t,
        conjugate=lambda t: 0.25 * t.square() + t,
        conjugate_of_activation=lambda v: 0.25 * v.square() + v,
        in_domain=lambda t: torch.isfinite(t),
        optimal_critic=lambda p, q: 2.0 * (p / q - 1.0),
        integrand=_pearson_value,
        threshold=0.0,
    ),
    FDivergence(
        name="hellinger",
        title="squared Hellinger",
        f=lambda u: (torch.sqrt(u) - 1.0).square(),
        activation=lambda v: -torch.expm1(-v),
        activation_inverse=lambda t: -torch.log1p(-t),
        conjugate=lambda t: t / (1.0 - t),
        # t = 1 - e^{-v}: t / (1 - t) = e^{v} - 1
        conjugate_of_activation=torch.expm1,
        in_domain=lambda t: t < 1,
        optimal_critic=lambda p, q: 1.0 - torch.sqrt(q / p),
        integrand=lambda p, q: (torch.sqrt(p) - torch.sqrt(q)).square(),
        threshold=0.0,
    ),
    FDivergence(
        name="js",
        title="Jensen-Shannon (unhalved: 2 JS)",
        f=lambda u: _xlogx(u) - torch.special.xlogy(u + 1.0, (u + 1.0) / 2.0),
        activation=lambda v: _LOG2 + F.logsigmoid(v),
        activation_inverse=_js_activation_inverse,
        conjugate=lambda t: -torch.log(2.0 - torch.exp(t)),
        # e^{g(v)} = 2 sigmoid(v): -log(2 sigmoid(-v)) = softplus(v) - log 2
        conjugate_of_activation=lambda v: F.softplus(v) - _LOG2,
        in_domain=lambda t: t < _LOG2,
        optimal_critic=lambda p, q: torch.log(2.0 * p / (p + q)),
        integrand=lambda p, q: _xlogx(p) + _xlogx(q) - _xlogx(p + q) + _LOG2 * (p + q),
        threshold=0.0,
    ),
    FDivergence(
        name="gan",
        title="GAN (2 JS - log 4)",
        f=lambda u: _xlogx(u) - _xlogx(u + 1.0),
        activation=F.logsigmoid,
        activation_inverse=_gan_activation_inverse,
        conjugate=lambda t: -torch.log(-torch.expm1(t)),
        # e^{g(v)} = sigmoid(v): -log(1 - sigmoid(v)) = softplus(v)
        conjugate_of_activation=F.softplus,
        in_domain=lambda t: t < 0,
        optimal_critic=lambda p, q: torch.log(p / (p + q)),
        integrand=lambda p, q: _xlogx(p) + _xlogx(q) - _xlogx(p + q),
        threshold=-_LOG2,
    ),
)

#: The six f-divergences of the f-GAN tables, by name. Conventions, for P = data and
#: Q = model:
#:
#: ========== =============================== ======================== ==================
#: name       D_f(P||Q)                       g_f(v)                   f*(t)
#: ========== =============================== ======================== ==================
#: kl         sum p log(p/q)                  v                        exp(t - 1)
#: reverse_kl sum q log(q/p)                  -exp(-v)                 -1 - log(-t)
#: pearson    sum (p - q)^2 / q               v                        t^2/4 + t
#: hellinger  sum (sqrt p - sqrt q)^2         1 - exp(-v)              t / (1 - t)
#: js         2 JS(P, Q)  (<= 2 log 2)        log 2 - softplus(-v)     -log(2 - exp(t))
#: gan        2 JS(P, Q) - log 4              -softplus(-v)            -log(1 - exp(t))
#: ========== =============================== ======================== ==================
#:
#: Two conventions differ from the printed Table 1 of the f-GAN paper, whose f and T*
#: columns these follow exactly: with f(u) = (u - 1)^2 the Pearson divergence is
#: sum (p - q)^2 / q (the table prints the roles of p and q swapped), and with its
#: f(u) = u log u - (u + 1) log((1 + u)/2) the "Jensen-Shannon" row is the unhalved
#: sum KL(P||M) + KL(Q||M) = 2 JS, not the standard JS = (KL(P||M) + KL(Q||M)) / 2.
#: The Pearson conjugate t^2/4 + t is that of (u - 1)^2 over all real u; over u >= 0
#: it would be -1 for t < -2. It is never smaller, so the bound stays valid, and T*
#: >= -2 keeps it tight. Every f has f(1) = 0 except the GAN row's, f(1) = -log 4: its "divergence" is
#: -log 4 between equal distributions.
F_DIVERGENCES: Mapping[str, FDivergence] = MappingProxyType({d.name: d for d in _TABLE})


def f_divergence(name: str) -> FDivergence:
    """The :class:`FDivergence` called ``name`` (see :data:`F_DIVERGENCES`)."""
    if not isinstance(name, str):
        raise TypeError(f"`divergence` must be a name, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    if key not in F_DIVERGENCES:
        raise ValueError(
            f"unknown f-divergence `divergence`={name!r}; known: {', '.join(F_DIVERGENCES)}"
        )
    return F_DIVERGENCES[key]
