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
(Nowozin et al., 2016), kept in :mod:`fastgan.f_divergences` (and importable from
here): for each divergence its generator function ``f``, the output activation
``g_f``, the Fenchel conjugate ``f*``, the optimal critic ``T*`` and the divergence
itself between discrete distributions.

Input checks are cheap (type, dtype, emptiness, device) and never synchronise with a
GPU; NaN in the critic outputs propagates to a NaN loss rather than being checked.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import ClassVar, Literal, Optional

import torch.nn.functional as F
from torch import Tensor

from fastgan._tensors import check_float_dtype
from fastgan.f_divergences import F_DIVERGENCES, FDivergence, f_divergence  # re-exported: fastgan.losses.<name>

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


# --------------------------------------------------------------------------- f-GAN


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
