"""Adversarial losses: discriminator/critic and generator objectives on critic outputs.

Every loss here is a pair of scalar objectives, both to be *minimised*:

* ``loss.critic(real_out, fake_out)`` for the discriminator / critic step;
* ``loss.generator(fake_out, real_out=None)`` for the generator step.

``real_out`` and ``fake_out`` are the raw outputs of the critic network (logits or
scores, any shape, any float dtype), on a batch of data and a batch of generated
samples. Every loss averages over all elements of each tensor, so the two batches may
differ in size. Nothing is passed through a sigmoid first: where a loss has a
probability ``D = sigmoid(v)`` inside a logarithm it is written with softplus, using

    log D(v)       = log sigmoid(v)  = -softplus(-v)
    log(1 - D(v))  = log sigmoid(-v) = -softplus(v)

which stays finite with finite gradients for |v| up to the dtype's range (a plain
``log(sigmoid(v))`` gives ``-inf`` for v below about -104 in float32, and NaN gradients).

Pick a loss by name with :func:`get` (``get("wgan")``, ``get("lsgan", a=-1, b=1, c=0)``,
``get("fgan", divergence="js")``); :func:`available` lists the names. The objects are
stateless and can be shared. :attr:`AdversarialLoss.generator_needs_real` says whether
the generator loss uses ``real_out`` (only the relativistic losses do); every other
loss accepts and ignores it, so a training loop can always pass both.

The f-GAN losses are built on the table of f-divergences in :data:`F_DIVERGENCES`
(Nowozin et al., 2016): for each divergence its generator function ``f``, the output
activation ``g_f``, the Fenchel conjugate ``f*``, the optimal critic ``T*`` and the
divergence itself between discrete distributions.

Input checks are cheap (type, dtype, emptiness, device) and never synchronise with a
GPU; NaN in the critic outputs propagates to a NaN loss rather than being checked.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgan._tensors import check_float_dtype

__all__ = [
    "AdversarialLoss",
    "Minimax",
    "NonSaturating",
    "Wasserstein",
    "Hinge",
    "LeastSquares",
    "RelativisticAverage",
    "FGAN",
    "FDivergence",
    "F_DIVERGENCES",
    "f_divergence",
    "get",
    "register",
    "available",
]

_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- checks


def _check_output(t: object, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"`{name}` must be a Tensor of critic outputs, got {type(t).__name__}")
    check_float_dtype(t, name)
    if t.numel() == 0:
        raise ValueError(f"`{name}` is empty; a loss is a mean over at least one critic output")
    return t


def _check_pair(real_out: object, fake_out: object) -> tuple[Tensor, Tensor]:
    real = _check_output(real_out, "real_out")
    fake = _check_output(fake_out, "fake_out")
    if real.device != fake.device:
        raise ValueError(
            f"`real_out` is on {real.device} and `fake_out` on {fake.device}; "
            "both must be on the same device"
        )
    return real, fake


# --------------------------------------------------------------------------- base class


class AdversarialLoss(abc.ABC):
    """A critic objective and a generator objective on critic outputs, both minimised.

    Subclasses implement :meth:`_critic` and :meth:`_generator` on already-checked
    tensors; the public :meth:`critic` and :meth:`generator` validate their arguments.
    """

    #: The name under which :func:`get` finds this loss.
    name: ClassVar[str] = ""
    #: Whether :meth:`generator` needs ``real_out`` (relativistic losses).
    generator_needs_real: ClassVar[bool] = False

    def critic(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """Critic / discriminator loss (0-dim tensor) on outputs for real and fake batches."""
        real, fake = _check_pair(real_out, fake_out)
        return self._critic(real, fake)

    def generator(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
        """Generator loss (0-dim tensor) on critic outputs for a fake batch.

        ``real_out`` is required when :attr:`generator_needs_real` is true and is
        otherwise ignored (it may be passed so that training loops need not special-case
        the relativistic losses).
        """
        if self.generator_needs_real:
            if real_out is None:
                raise ValueError(
                    f"the {self.name!r} generator loss needs `real_out`, the critic's "
                    "outputs on a real batch"
                )
            real, fake = _check_pair(real_out, fake_out)
            return self._generator(fake, real)
        return self._generator(_check_output(fake_out, "fake_out"), None)

    @abc.abstractmethod
    def _critic(self, real: Tensor, fake: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor: ...

    def _params(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._params()})"


# --------------------------------------------------------------------------- GAN losses


class Minimax(AdversarialLoss):
    r"""The original GAN game with the saturating generator loss.

    With ``D = sigmoid(v)`` the value is
    :math:`V(D, G) = E_{x\sim P_r}[\log D(x)] + E_{z}[\log(1 - D(G(z)))]`;
    the critic maximises it, the generator minimises it:

    * critic:    ``mean(softplus(-real_out)) + mean(softplus(fake_out))``  (= -V)
    * generator: ``-mean(softplus(fake_out))``  (= E log(1 - D(G(z))))

    The generator gradient vanishes when the discriminator rejects the fakes
    confidently (``fake_out`` very negative): the reason for :class:`NonSaturating`.
    At the optimal discriminator the critic loss equals ``log 4 - 2 JS(P_r, P_g)``.
    """

    name = "minimax"

    def _critic(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor:
        return -F.softplus(fake).mean()


class NonSaturating(Minimax):
    r"""The GAN game with the non-saturating generator heuristic.

    The critic loss is :class:`Minimax`'s; the generator maximises
    :math:`E_z[\log D(G(z))]` instead of minimising :math:`E_z[\log(1 - D(G(z)))]`:

    * generator: ``mean(softplus(-fake_out))``  (= -E log D(G(z)))

    Same fixed point, strong gradients early in training when D rejects the fakes.
    """

    name = "ns"

    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor:
        return F.softplus(-fake).mean()


class Wasserstein(AdversarialLoss):
    r"""WGAN losses (Arjovsky et al., 2017).

    The critic maximises :math:`E_{P_r}[D(x)] - E_{P_g}[D(x)]`, an estimate of the
    Wasserstein-1 distance by Kantorovich-Rubinstein duality when D is 1-Lipschitz
    (which this loss does not enforce: clip the weights, penalise the gradient or
    normalise the layers):

    * critic:    ``mean(fake_out) - mean(real_out)``
    * generator: ``-mean(fake_out)``
    """

    name = "wgan"

    def _critic(self, real: Tensor, fake: Tensor) -> Tensor:
        return fake.mean() - real.mean()

    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor:
        return -fake.mean()


class Hinge(AdversarialLoss):
    r"""Hinge losses (geometric GAN; the SN-GAN / SAGAN / BigGAN choice).

    * critic:    ``mean(relu(1 - real_out)) + mean(relu(1 + fake_out))``
    * generator: ``-mean(fake_out)``
    """

    name = "hinge"

    def _critic(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor:
        return -fake.mean()


class LeastSquares(AdversarialLoss):
    r"""Least-squares GAN (Mao et al., 2017) with targets ``a``, ``b``, ``c``.

    The critic output is used as is (no sigmoid). The critic pulls fake outputs to
    ``a`` and real outputs to ``b``; the generator pulls fake outputs to ``c``:

    * critic:    ``0.5 * mean((real_out - b)**2) + 0.5 * mean((fake_out - a)**2)``
    * generator: ``0.5 * mean((fake_out - c)**2)``

    Defaults ``a=0, b=1, c=1`` (the 0-1 coding). With ``b - c = 1`` and ``b - a = 2``
    (e.g. ``a=-1, b=1, c=0``) minimising the generator loss at the optimal critic
    minimises the Pearson chi^2 divergence between ``P_r + P_g`` and ``2 P_g``.
    """

    name = "lsgan"

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0) -> None:
        for arg, value in (("a", a), ("b", b), ("c", c)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{arg}` must be a real number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"`{arg}` must be finite, got {value}")
        if a == b:
            raise ValueError(f"`a` and `b` must differ (the fake and real targets), both are {a}")
        self.a, self.b, self.c = float(a), float(b), float(c)

    def _critic(self, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (real - self.b).square().mean() + 0.5 * (fake - self.a).square().mean()

    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor:
        return 0.5 * (fake - self.c).square().mean()

    def _params(self) -> str:
        return f"a={self.a}, b={self.b}, c={self.c}"


RelativisticVariant = Literal["sgan", "lsgan", "hinge"]


class RelativisticAverage(AdversarialLoss):
    r"""Relativistic average GANs (Jolicoeur-Martineau, 2019).

    The critic judges each sample relative to the average of the other batch:
    ``c_r = real_out - mean(fake_out)`` and ``c_f = fake_out - mean(real_out)``. The
    generator loss is the critic loss with the roles of real and fake swapped, so it
    needs ``real_out`` too (:attr:`generator_needs_real`).

    ``variant="sgan"`` (RaSGAN, the default)::

        critic    = mean(softplus(-c_r)) + mean(softplus(c_f))
        generator = mean(softplus(-c_f)) + mean(softplus(c_r))

    ``variant="lsgan"`` (RaLSGAN)::

        critic    = mean((c_r - 1)**2) + mean((c_f + 1)**2)
        generator = mean((c_f - 1)**2) + mean((c_r + 1)**2)

    ``variant="hinge"`` (RaHinge)::

        critic    = mean(relu(1 - c_r)) + mean(relu(1 + c_f))
        generator = mean(relu(1 - c_f)) + mean(relu(1 + c_r))
    """

    name = "relativistic"
    generator_needs_real = True

    def __init__(self, variant: RelativisticVariant = "sgan") -> None:
        if variant not in ("sgan", "lsgan", "hinge"):
            raise ValueError(f"`variant` must be 'sgan', 'lsgan' or 'hinge', got {variant!r}")
        self.variant = variant

    def _pair(self, pos: Tensor, neg: Tensor) -> Tensor:
        # Loss pushing `pos` up and `neg` down.
        if self.variant == "sgan":
            return F.softplus(-pos).mean() + F.softplus(neg).mean()
        if self.variant == "lsgan":
            return (pos - 1.0).square().mean() + (neg + 1.0).square().mean()
        return F.relu(1.0 - pos).mean() + F.relu(1.0 + neg).mean()

    def _critic(self, real: Tensor, fake: Tensor) -> Tensor:
        return self._pair(real - fake.mean(), fake - real.mean())

    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor:
        assert real is not None
        return self._pair(fake - real.mean(), real - fake.mean())

    def _params(self) -> str:
        return f"variant={self.variant!r}"


# --------------------------------------------------------------------------- f-divergences


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


class FGAN(AdversarialLoss):
    r"""f-GAN losses (Nowozin et al., 2016) for one of :data:`F_DIVERGENCES`.

    With ``T = g_f(v)`` the critic maximises the variational lower bound
    :math:`F = E_{P}[g_f(v)] - E_{Q}[f^*(g_f(v))]` on :math:`D_f(P_r \| P_g)`:

    * critic:    ``mean(f*(g_f(fake_out))) - mean(g_f(real_out))``  (= -F)

    The generator minimises F. ``saturating=True`` uses the generator's term of F as
    is; the default uses the heuristic of the f-GAN paper (section 3.2), which
    maximises ``E_Q[g_f(v)]`` and keeps strong gradients when the critic wins:

    * generator, ``saturating=True``:  ``-mean(f*(g_f(fake_out)))``
    * generator, ``saturating=False``: ``-mean(g_f(fake_out))``

    For ``divergence="gan"`` these are exactly :class:`Minimax` (saturating) and
    :class:`NonSaturating`. ``f*(g_f(v))`` is evaluated in closed form
    (``conjugate_of_activation``). For ``kl``, ``reverse_kl`` and ``hellinger`` the
    losses are exponential in the critic output by construction and overflow to
    ``inf`` (float32: once an exponent passes about 88), never to NaN; their critic
    loss stays finite while the critic scores real samples high and fakes low.
    ``js``, ``gan`` and ``pearson`` stay finite for any finite output.

    :meth:`estimate` returns F itself, the critic's current lower bound on the
    divergence.
    """

    name = "fgan"

    def __init__(self, divergence: str = "gan", *, saturating: bool = False) -> None:
        self.divergence = f_divergence(divergence)
        if not isinstance(saturating, bool):
            raise TypeError(f"`saturating` must be a bool, got {type(saturating).__name__}")
        self.saturating = saturating

    def estimate(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """The variational lower bound F on D_f(P_r||P_g) given by the current critic."""
        return -self.critic(real_out, fake_out)

    def _critic(self, real: Tensor, fake: Tensor) -> Tensor:
        d = self.divergence
        return d.conjugate_of_activation(fake).mean() - d.activation(real).mean()

    def _generator(self, fake: Tensor, real: Optional[Tensor]) -> Tensor:
        d = self.divergence
        if self.saturating:
            return -d.conjugate_of_activation(fake).mean()
        return -d.activation(fake).mean()

    def _params(self) -> str:
        return f"divergence={self.divergence.name!r}, saturating={self.saturating}"


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., AdversarialLoss]] = {}


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


def register(name: str, factory: Callable[..., AdversarialLoss], *, overwrite: bool = False) -> None:
    """Makes ``get(name, **kwargs)`` return ``factory(**kwargs)``.

    Names are case-insensitive and ``-`` equals ``_``. Registering a taken name raises
    ValueError unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"`factory` must be callable, got {type(factory).__name__}")
    key = _key(name)
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"a loss named {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[key] = factory


def available() -> tuple[str, ...]:
    """The registered loss names, sorted."""
    return tuple(sorted(_REGISTRY))


def get(name: str | AdversarialLoss, **kwargs: object) -> AdversarialLoss:
    """The loss registered as ``name``, built with ``kwargs``.

    ``get("wgan")``, ``get("lsgan", a=-1.0, b=1.0, c=0.0)``,
    ``get("relativistic", variant="hinge")``, ``get("fgan", divergence="kl")`` or its
    shorthand ``get("fgan_kl")``. An :class:`AdversarialLoss` instance is returned as
    is (``kwargs`` must then be empty), so APIs can accept either a name or a loss.
    """
    if isinstance(name, AdversarialLoss):
        if kwargs:
            raise TypeError("options cannot be passed together with a loss instance")
        return name
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a loss name or an AdversarialLoss, got {type(name).__name__}")
    key = _key(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown loss `name`={name!r}; available: {', '.join(available())}")
    return _REGISTRY[key](**kwargs)


for _cls in (Minimax, NonSaturating, Wasserstein, Hinge, LeastSquares, RelativisticAverage, FGAN):
    register(_cls.name, _cls)


def _fgan_factory(divergence: str) -> Callable[..., AdversarialLoss]:
    def factory(*, saturating: bool = False) -> AdversarialLoss:
        return FGAN(divergence, saturating=saturating)

    factory.__doc__ = f"f-GAN loss for the {F_DIVERGENCES[divergence].title} divergence."
    return factory


for _name in F_DIVERGENCES:
    register(f"fgan_{_name}", _fgan_factory(_name))
del _cls, _name
