r"""``SamplesLoss``: GeomLoss's module interface to fastgan's losses between point clouds.

``loss = SamplesLoss("sinkhorn", p=2, blur=0.05)`` is called as
``loss(x, y)`` (uniform weights) or ``loss(a, x, b, y)``, on ``(n, d)``
clouds (a scalar) or batches ``(B, n, d)`` (a ``(B,)`` vector), as
GeomLoss's ``geomloss.SamplesLoss``.

- ``"sinkhorn"``: :func:`fastgan.ot.sinkhorn_divergence` (fastgan's
  streaming kernels; the same values and gradients as GeomLoss).
- ``"energy"``, ``"gaussian"``, ``"laplacian"``: the kernel norms
  :math:`\tfrac12 \|a - b\|_k^2 = \tfrac12 a^\top K_{xx} a + \tfrac12 b^\top K_{yy} b - a^\top K_{xy} b`
  with :math:`k(x, y) = -\|x - y\|`, :math:`e^{-\|x - y\|^2 / 2\sigma^2}`,
  :math:`e^{-\|x - y\| / \sigma}` (:math:`\sigma` = ``blur``; distances as
  :math:`\sqrt{\max(\|x - y\|^2, 10^{-8})}`), in PyTorch, differentiated by autograd.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fastgan._tensors import positive
from fastgan.ot._checks import float_tensor
from fastgan.ot.sinkhorn import sinkhorn_divergence

__all__ = ["SamplesLoss"]

KERNELS = ("energy", "gaussian", "laplacian")
#: GeomLoss's backends that compute the same values as fastgan's kernels.
SAME_VALUE_BACKENDS = ("auto", "tensorized", "online")

#: GeomLoss's p = 1 distance, sqrt(max(|x - y|^2, 1e-8)): smooth at x = y.
MIN_SQUARED_DISTANCE = 1e-8


def _refuse(condition: bool, what: str) -> None:
    if condition:
        raise NotImplementedError(f"SamplesLoss: {what}")


def _kernel_matrix(name: str, x: torch.Tensor, y: torch.Tensor, blur: float) -> torch.Tensor:
    from fastgan.metrics.mmd import _squared_distances

    if name == "energy":
        return -_squared_distances(x, y).clamp_min(MIN_SQUARED_DISTANCE).sqrt()
    sq = _squared_distances(x / blur, y / blur)
    if name == "gaussian":
        return torch.exp(-sq / 2)
    return torch.exp(-sq.clamp_min(MIN_SQUARED_DISTANCE).sqrt())


def kernel_norm(name: str, a: torch.Tensor, x: torch.Tensor, b: torch.Tensor, y: torch.Tensor, blur: float) -> torch.Tensor:
    r"""``(B,)`` :math:`\tfrac12 a^\top K_{xx} a + \tfrac12 b^\top K_{yy} b - a^\top K_{xy} b` for batched inputs."""

    def quad(u, p, v, q):
        return (u.unsqueeze(1) @ _kernel_matrix(name, p, q, blur) @ v.unsqueeze(2)).reshape(-1)

    return 0.5 * quad(a, x, a, x) + 0.5 * quad(b, y, b, y) - quad(a, x, b, y)


class SamplesLoss(nn.Module):
    r"""GeomLoss's ``SamplesLoss`` on fastgan: ``SamplesLoss(loss, p, blur, reach, diameter, scaling, ...)``.

    Args:
        loss: ``"sinkhorn"`` (the debiased Sinkhorn divergence, or
            :math:`\mathrm{OT}_\varepsilon` with ``debias=False``),
            ``"energy"``, ``"gaussian"`` or ``"laplacian"``. ``"hausdorff"`` is
            not offered (NotImplementedError).
        p: the cost :math:`\|x - y\|^p / p`, p = 1 or 2 (Sinkhorn only).
        blur: :math:`\varepsilon^{1/p}` for Sinkhorn, the kernel width
            :math:`\sigma` for the Gaussian and Laplacian kernels.
        reach: None (balanced) or the unbalanced Sinkhorn's reach.
        diameter: the start of the :math:`\varepsilon` schedule (None:
            computed from the points, as GeomLoss).
        scaling: the schedule's ratio, in (0, 1).
        truncate: accepted and unused (GeomLoss uses it only in its
            multiscale backend).
        cost, kernel: only None (custom cost or kernel functions are not offered).
        cluster_scale: only None (no multiscale backend).
        debias: the debiased divergence (Sinkhorn only).
        potentials: only False (the dual potentials are not returned).
        verbose: accepted; fastgan prints nothing.
        backend: GeomLoss's ``"auto"``, ``"tensorized"``, ``"online"`` (all
            run fastgan's kernels, with the same values), or fastgan's
            ``"reference"`` (PyTorch); ``"multiscale"`` (an approximation
            by clusters) is not offered.

    Calling the module: ``loss(x, y)`` or ``loss(a, x, b, y)`` with ``x``
    ``(n, d)`` / ``(B, n, d)``, weights ``(n,)`` (also ``(n, 1)``) / ``(B, n)``.
    Returns ``()`` / ``(B,)``, differentiable once with respect to the
    points and weights: GeomLoss's values and gradients (see
    :func:`fastgan.ot.sinkhorn_divergence`; the kernel losses by autograd),
    except with ``reach``: GeomLoss's autograd differentiates its value
    formula :math:`(\rho + \varepsilon/2) T`, while fastgan returns the
    derivative of the unbalanced cost, which carries
    :math:`(\rho + \varepsilon)` (and, with ``debias=False``, the
    :math:`-\varepsilon/2` of the mass terms in the weights' gradients):
    fastgan's gradients are GeomLoss's times
    :math:`(\rho + \varepsilon) / (\rho + \varepsilon/2)`.
    """

    def __init__(
        self,
        loss: str = "sinkhorn",
        p: int = 2,
        blur: float = 0.05,
        reach: float | None = None,
        diameter: float | None = None,
        scaling: float = 0.5,
        truncate: float | None = 5,
        cost: None = None,
        kernel: None = None,
        cluster_scale: None = None,
        debias: bool = True,
        potentials: bool = False,
        verbose: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if loss == "hausdorff":
            _refuse(True, "loss='hausdorff' is not offered; use 'sinkhorn' or a kernel loss")
        if loss != "sinkhorn" and loss not in KERNELS:
            raise ValueError(f"`loss` must be 'sinkhorn' or one of {KERNELS}, got {loss!r}")
        _refuse(cost is not None, "a custom `cost` is not offered (fastgan computes |x - y|^p / p, p = 1 or 2)")
        _refuse(kernel is not None, "a custom `kernel` is not offered")
        _refuse(cluster_scale is not None, "`cluster_scale` (the multiscale backend) is not offered")
        _refuse(bool(potentials), "potentials=True is not offered (the loss value only)")
        _refuse(backend == "multiscale", "backend='multiscale' is not offered; use 'auto'")
        if backend not in SAME_VALUE_BACKENDS + ("reference",):
            raise ValueError(f"`backend` must be one of {SAME_VALUE_BACKENDS + ('reference',)}, got {backend!r}")
        if loss == "sinkhorn" and (isinstance(p, bool) or p not in (1, 2)):
            raise ValueError(f"`p` must be 1 or 2, got {p!r}")
        self.loss = loss
        self.p = p
        self.blur = positive(blur, "blur")
        self.reach = reach
        self.diameter = diameter
        self.scaling = scaling
        self.truncate = truncate
        self.debias = debias
        self.verbose = verbose
        self.backend = "reference" if backend == "reference" else "auto"

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if len(args) == 2:
            (x, y), a, b = args, None, None
        elif len(args) == 4:
            a, x, b, y = args
        else:
            raise ValueError(f"SamplesLoss takes (x, y) or (a, x, b, y), got {len(args)} arguments")
        x, y = float_tensor(x, "x"), float_tensor(y, "y")
        a, b = self._column(a, x, "a"), self._column(b, y, "b")
        if self.loss == "sinkhorn":
            return sinkhorn_divergence(
                x, y, a, b, p=self.p, blur=self.blur, scaling=self.scaling, debias=self.debias,
                reach=self.reach, diameter=self.diameter, backend=self.backend,
            )
        return self._kernel(a, x, b, y)

    @staticmethod
    def _column(w: torch.Tensor | None, points: torch.Tensor, name: str) -> torch.Tensor | None:
        """GeomLoss also takes unbatched weights as an (n, 1) column."""
        if w is None:
            return None
        w = float_tensor(w, name)
        if points.dim() == 2 and w.dim() == 2 and w.shape[1] == 1:
            w = w.reshape(-1)
        return w

    def _kernel(self, a, x, b, y) -> torch.Tensor:
        for t, name in ((x, "x"), (y, "y")):
            if t.dim() not in (2, 3):
                raise ValueError(f"`{name}` must have shape (n, d) or (B, n, d), got {tuple(t.shape)}")
        if x.dim() != y.dim() or x.shape[:-2] != y.shape[:-2] or x.shape[-1] != y.shape[-1]:
            raise ValueError(f"`x` {tuple(x.shape)} and `y` {tuple(y.shape)} must share the batch and feature sizes")
        squeeze = x.dim() == 2
        x3, y3 = (x.unsqueeze(0), y.unsqueeze(0)) if squeeze else (x, y)

        def weights(w, pts, name):
            if w is None:
                return torch.full(pts.shape[:2], 1.0 / pts.shape[1], dtype=pts.dtype, device=pts.device)
            w3 = w.unsqueeze(0) if squeeze else w
            if w3.shape != pts.shape[:2]:
                raise ValueError(f"`{name}` must have shape {tuple(pts.shape[1 if squeeze else 0:2])}, got {tuple(w.shape)}")
            return w3

        value = kernel_norm(self.loss, weights(a, x3, "a"), x3, weights(b, y3, "b"), y3, self.blur)
        return value[0] if squeeze else value

    def extra_repr(self) -> str:
        reach = "None" if self.reach is None or math.isinf(self.reach) else f"{self.reach}"
        return f"loss={self.loss!r}, p={self.p}, blur={self.blur}, reach={reach}, scaling={self.scaling}, debias={self.debias}"
