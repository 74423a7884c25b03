r"""Spectral normalisation (SN-GAN), a drop-in for ``torch.nn.utils.parametrizations.spectral_norm``.

Miyato et al. (2018) bound a critic's Lipschitz constant by the product of
its layers' spectral norms and divide every weight by its largest singular
value :math:`\sigma(W)`, estimated by power iteration on
:math:`W_{mat}` = the weight with ``dim`` moved first, flattened to a matrix:

.. math::
    u \leftarrow \frac{W v}{\max(\|W v\|, \epsilon)}, \qquad
    v \leftarrow \frac{W^\top u}{\max(\|W^\top u\|, \epsilon)}, \qquad
    \sigma = u^\top W v, \qquad \bar W = W / \sigma .

In training mode each access of the weight runs ``n_power_iterations``
steps (updating the ``_u`` and ``_v`` buffers) before normalising; in
evaluation mode the buffers are used as they are. The gradient treats
:math:`u, v` as constants: :math:`\partial\sigma/\partial W = u v^\top`, so
:math:`\partial L/\partial W = G/\sigma - (\langle G, W\rangle/\sigma^2)\,u v^\top`
for :math:`G = \partial L/\partial\bar W`, one fused pass.

:func:`spectral_norm` parametrizes one layer exactly as torch's does (same
buffers, state_dict keys and numbers). :func:`spectral_norm_all` does so for
every eligible layer of a model and runs the power iteration of all of them
in one op per forward of the model: each layer then divides by its sigma
from that op. A group's ``nn.Linear`` layers (normalised along dim 0) go
further and never form :math:`\bar W`: they compute
:math:`y = (x W^\top)/\sigma + b` in one op, whose weight gradient is the
plain one divided by :math:`\sigma` plus the rank-one term
:math:`-(\langle \partial L/\partial x, x\rangle/\sigma)\,u v^\top`
(since :math:`\langle G, W\rangle/\sigma^2 = \langle \partial L/\partial x, x\rangle/\sigma`),
added in place.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from fastgan import _library
from fastgan._tensors import check_same_device, spectral_norm_args as _check_args

__all__ = ["SpectralNorm", "SpectralNormGroup", "eligible_layers", "spectral_norm", "spectral_norm_all"]

BACKENDS = ("auto", "reference")

#: Layer types :func:`spectral_norm_all` normalises.
ELIGIBLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
)

_power_iteration = None
_scale = None
_linear = None
if _library.LOADED:
    _power_iteration = torch.ops.fastgan.spectral_norm_power_iteration.default
    _scale = torch.ops.fastgan.spectral_norm_scale.default
    _linear = torch.ops.fastgan.spectral_norm_linear.default


class SpectralNorm(nn.Module):
    r"""The parametrization :math:`W \mapsto W / \sigma(W)` on fastgan's kernels.

    Buffers ``_u`` (rows of :math:`W_{mat}`) and ``_v`` (columns), initialised
    from N(0, 1), normalised, then refined by 15 power-iteration steps, as
    torch's ``_SpectralNorm`` does; a 1-D weight is simply divided by its norm.
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__()
        self.dim = dim % max(weight.ndim, 1)
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        # (state, index, offset) of this forward of a SpectralNormGroup's model.
        self._group_state: tuple[torch.Tensor, int, int] | None = None
        if weight.ndim > 1:
            rows = weight.shape[self.dim]
            cols = _numel_without(weight, self.dim)
            u = weight.new_empty(rows).normal_(0, 1)
            v = weight.new_empty(cols).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
            _library.require_kernel("spectral_norm_power_iteration", weight.device)
            _power_iteration([weight.detach()], [self._u], [self._v], [self.dim], 15, eps)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        cached = self._group_state
        if cached is not None:
            state, index, offset = cached
        else:
            _library.require_kernel("spectral_norm_power_iteration", weight.device)
            n_iter = self.n_power_iterations if self.training else 0
            state = _power_iteration([weight], [self._u], [self._v], [self.dim], n_iter, self.eps)
            index, offset = 0, 1
        return _scale(weight, state, index, offset, self.dim)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_power_iterations={self.n_power_iterations}, eps={self.eps}"


def _numel_without(weight: torch.Tensor, dim: int) -> int:
    """Columns of the weight matrix: the product of every size but ``dim``'s (also when it is 0)."""
    return math.prod(size for d, size in enumerate(weight.shape) if d != dim)


def spectral_norm(
    module: nn.Module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
    *,
    backend: str = "auto",
) -> nn.Module:
    r"""Spectral normalisation of ``module.<name>``: a drop-in for torch's parametrization.

    Same signature, semantics, buffers (``parametrizations.<name>.0._u`` /
    ``._v``), state_dict keys and numbers as
    ``torch.nn.utils.parametrizations.spectral_norm``: a state_dict saved
    from either loads into the other. Each access of ``module.<name>`` runs
    fastgan's power-iteration op (training mode; none in eval mode) and its
    normalisation op, whose backward is one fused pass. Derivatives of any
    order (the second for a gradient penalty's double backward).

    As with torch, ``name`` may already be parametrized: the normalisation
    is stacked on top (of an earlier spectral norm, or of any other
    parametrization), as another entry of ``parametrizations.<name>``.
    Complex weights (which torch supports) are normalised by
    :class:`fastgan.reference.spectral_norm.ReferenceSpectralNorm`, the same
    algorithm in torch ops with conjugate transposes, because fastgan's
    kernels are real-only.

    Args:
        module: the layer (Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d,
            Embedding, or any module with a floating-point or complex tensor ``name``).
        name: the parameter to normalise.
        n_power_iterations: power-iteration steps per forward in training, >= 1.
        eps: > 0, the floor of every norm a vector is divided by.
        dim: the output dimension (the rows of :math:`W_{mat}`); default 1
            for ConvTranspose, 0 otherwise.
        backend: ``"auto"`` (fastgan's kernels) or ``"reference"``
            (:func:`fastgan.reference.spectral_norm`, plain torch ops).

    Returns:
        ``module``, parametrized.

    Raises:
        TypeError / ValueError: a bad argument (named) or a module without
            ``name``; IndexError: ``dim`` out of range.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    weight = getattr(module, name, None) if isinstance(module, nn.Module) and isinstance(name, str) else None
    if backend == "reference" or (isinstance(weight, torch.Tensor) and weight.is_complex()):
        from fastgan.reference.spectral_norm import spectral_norm as reference_spectral_norm

        return reference_spectral_norm(module, name, n_power_iterations, eps, dim)
    weight, n_power_iterations, eps, dim = _check_args(module, name, n_power_iterations, eps, dim)
    parametrize.register_parametrization(module, name, SpectralNorm(weight, n_power_iterations, dim, eps))
    return module


def eligible_layers(model: nn.Module, name: str = "weight") -> list[nn.Module]:
    """The submodules of ``model`` (itself included) :func:`spectral_norm_all` normalises.

    Layers of :data:`ELIGIBLE_TYPES` whose ``name`` is a floating-point
    tensor with at least 2 dimensions and not parametrized yet.
    """
    out = []
    for m in model.modules():
        if not isinstance(m, ELIGIBLE_TYPES) or parametrize.is_parametrized(m, name):
            continue
        w = getattr(m, name, None)
        if isinstance(w, torch.Tensor) and w.is_floating_point() and w.ndim >= 2:
            out.append(m)
    return out


class SpectralNormGroup:
    """Runs the power iteration of several :class:`SpectralNorm` layers at once.

    Installed by :func:`spectral_norm_all` as forward hooks of the model:
    before each forward of the model, one op updates every layer's u and v
    and computes every sigma; the layers then use those sigmas for the rest
    of that forward (and compute their own outside it, e.g. when the weight
    is read directly). Copied with the model by ``copy.deepcopy``.
    """

    def __init__(self, layers: Iterable[nn.Module], name: str):
        self.name = name
        self.lists = [layer.parametrizations[name] for layer in layers]
        self.handles: list = []

    def before_forward(self, model: nn.Module, args) -> None:
        # Layers sharing (n_iter, eps) share one op call: normally all of them.
        # The cached state goes into each layer's __dict__ directly
        # (nn.Module.__setattr__ costs microseconds per call).
        calls: dict[tuple[int, float], list] = {}
        for plist in self.lists:
            sn = plist._modules["0"]
            n_iter = sn.n_power_iterations if sn.training else 0
            calls.setdefault((n_iter, sn.eps), []).append((plist._parameters["original"], sn))
        for (n_iter, eps), members in calls.items():
            weights = [w for w, _ in members]
            if len(calls) == 1 and not _library.has_kernel("spectral_norm_power_iteration", weights[0].device.type):
                _library.require_kernel("spectral_norm_power_iteration", weights[0].device)
            state = _power_iteration(
                weights,
                [sn._buffers["_u"] for _, sn in members],
                [sn._buffers["_v"] for _, sn in members],
                [sn.dim for _, sn in members],
                n_iter,
                eps,
            )
            offset = len(members)
            for index, (w, sn) in enumerate(members):
                sn.__dict__["_group_state"] = (state, index, offset)
                rows = w.shape[sn.dim]
                offset += rows + (w.numel() // rows if rows else _numel_without(w, sn.dim))

    def after_forward(self, model: nn.Module, args, output) -> None:
        for plist in self.lists:
            plist._modules["0"].__dict__["_group_state"] = None


def _normalized_linear(layer: nn.Linear, input: torch.Tensor) -> torch.Tensor:
    r"""``nn.Linear.forward`` of a layer in a :class:`SpectralNormGroup`.

    Inside the group's forward, :math:`y = (x W^\top)/\sigma + b` in one
    ``fastgan::spectral_norm_linear`` op: :math:`W/\sigma` is never formed,
    and the weight's gradient is the plain one divided by :math:`\sigma`
    plus a rank-one correction in place. Elsewhere (the layer called on its
    own, under autocast, or its parametrization changed or removed) it is
    ``F.linear(input, layer.weight, layer.bias)``, through the parametrization.
    An input on another device than the weight (a meta input to a CPU model)
    is a ValueError naming both devices.
    """
    plists = layer._modules.get("parametrizations")
    plist = plists._modules.get("weight") if plists is not None else None
    if plist is not None and len(plist) == 1:
        sn = plist._modules["0"]
        cached = getattr(sn, "_group_state", None)
        if cached is not None:
            weight = plist._parameters["original"]
            if input.device != weight.device:
                check_same_device({"input": input, "weight": weight}, "a Linear layer under spectral_norm_all")
            if not torch.is_autocast_enabled(input.device.type):
                state, index, offset = cached
                return _linear(input, weight, layer.bias, state, index, offset)
    return F.linear(input, layer.weight, layer.bias)


def _fuse_linear(layer: nn.Module) -> None:
    """Gives a spectral-normalised ``nn.Linear`` (weight normalised along dim 0) the fused forward."""
    if not isinstance(layer, nn.Linear) or type(layer).forward is not nn.Linear.forward:
        return  # a subclass with its own forward keeps it
    sn = layer.parametrizations.weight[0]
    if isinstance(sn, SpectralNorm) and sn.dim == 0 and layer.parametrizations.weight.original.ndim == 2:
        layer.forward = functools.partial(_normalized_linear, layer)


def spectral_norm_all(
    model: nn.Module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
    *,
    backend: str = "auto",
) -> nn.Module:
    r"""Spectral normalisation of every eligible layer of ``model``, power iterations batched.

    Each layer of :data:`ELIGIBLE_TYPES` with a 2-D or larger ``name`` is
    parametrized as by :func:`spectral_norm` (same buffers and state_dict
    keys as torch's), and the layers form one group: one
    ``fastgan::spectral_norm_power_iteration`` call per forward of ``model``
    updates every layer's u and v (training mode) and computes every sigma.
    The numbers equal torch's when each layer runs once per forward of the
    model (the usual critic); a layer called k times in one forward is
    iterated once, not k times.

    Args:
        model: the critic (or any module).
        name, n_power_iterations, eps, dim: as in :func:`spectral_norm`,
            applied to every layer (``dim=None``: 1 for ConvTranspose, else 0).
        backend: ``"auto"`` or ``"reference"`` (one plain-torch
            parametrization per layer, nothing batched).

    Returns:
        ``model``, with its layers parametrized.

    Raises:
        TypeError / ValueError: as :func:`spectral_norm`; ValueError when
            ``model`` has no eligible layer.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    layers = eligible_layers(model, name)
    if not layers:
        raise ValueError(f"`model` has no layer with a parameter {name!r} to normalise")
    for layer in layers:
        spectral_norm(layer, name, n_power_iterations, eps, dim, backend=backend)
    if backend == "auto":
        group = SpectralNormGroup(layers, name)
        group.handles = [
            model.register_forward_pre_hook(group.before_forward),
            model.register_forward_hook(group.after_forward, always_call=True),
        ]
        if name == "weight":
            for layer in layers:
                _fuse_linear(layer)
    return model


if _library.LOADED:

    @torch.library.register_fake("fastgan::spectral_norm_power_iteration")
    def _power_iteration_fake(weights, us, vs, dims, n_iter, eps):
        total = len(weights) + sum(u.shape[0] + v.shape[0] for u, v in zip(us, vs))
        return weights[0].new_empty((total,), dtype=torch.float64)

    @torch.library.register_fake("fastgan::spectral_norm_scale")
    def _scale_fake(weight, state, index, offset, dim):
        return torch.empty_like(weight, memory_format=torch.contiguous_format)

    @torch.library.register_fake("fastgan::spectral_norm_linear")
    def _linear_fake(input, weight, bias, state, index, offset):
        return input.new_empty((*input.shape[:-1], weight.shape[0]))

    @torch.library.register_fake("fastgan::spectral_norm_scale_backward")
    def _scale_backward_fake(grad, weight, state, index, offset, dim):
        return torch.empty_like(weight, memory_format=torch.contiguous_format)
