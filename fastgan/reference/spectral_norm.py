r"""Spectral normalisation in plain PyTorch: the twin of :mod:`fastgan.nn.spectral_norm`.

The same parametrization (buffers ``_u`` and ``_v``, the same state_dict
keys), computed one layer at a time with ``torch.mv`` and
``F.normalize``: :math:`u \leftarrow \mathrm{normalize}(W v)`,
:math:`v \leftarrow \mathrm{normalize}(W^\top u)`, then
:math:`W / \sigma` with :math:`\sigma = u^\top W v` and :math:`u, v` held
constant for the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from fastgan._tensors import spectral_norm_args

#: The layer types :func:`spectral_norm_all` normalises: every convolution
#: (``_ConvNd`` covers Conv1d/2d/3d and ConvTranspose1d/2d/3d), Linear,
#: Bilinear and Embedding.
NORMALISED_TYPES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding)


def weight_matrix(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """``weight`` as the matrix whose rows run along ``dim`` (a view when possible)."""
    return weight.movedim(dim, 0).flatten(1)


@torch.no_grad()
def spectral_norm_power_iteration(
    weights: list[torch.Tensor],
    us: list[torch.Tensor],
    vs: list[torch.Tensor],
    dims: list[int],
    n_iter: int,
    eps: float,
) -> list[torch.Tensor]:
    """Updates ``us`` and ``vs`` in place by ``n_iter`` power-iteration steps; returns each sigma (0-dim)."""
    sigmas = []
    for w, u, v, dim in zip(weights, us, vs, dims):
        mat = weight_matrix(w, dim)
        for _ in range(n_iter):
            u.copy_(F.normalize(torch.mv(mat, v), dim=0, eps=eps))
            v.copy_(F.normalize(torch.mv(mat.H, u), dim=0, eps=eps))
        sigmas.append(torch.vdot(u, torch.mv(mat, v)))
    return sigmas


class ReferenceSpectralNorm(nn.Module):
    """The parametrization ``W -> W / sigma(W)``, one layer, in torch ops."""

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__()
        self.dim = dim % weight.ndim
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        if weight.ndim > 1:
            mat = weight_matrix(weight.detach(), self.dim)
            u = mat.new_empty(mat.shape[0]).normal_(0, 1)
            v = mat.new_empty(mat.shape[1]).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
            spectral_norm_power_iteration([weight.detach()], [self._u], [self._v], [self.dim], 15, eps)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        if self.training:
            spectral_norm_power_iteration(
                [weight.detach()], [self._u], [self._v], [self.dim], self.n_power_iterations, self.eps
            )
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        sigma = torch.vdot(u, torch.mv(weight_matrix(weight, self.dim), v))
        return weight / sigma

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value


def spectral_norm(
    module: nn.Module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
) -> nn.Module:
    """:func:`fastgan.nn.spectral_norm` in torch ops (same arguments, buffers and numbers)."""
    weight, n_power_iterations, eps, dim = spectral_norm_args(module, name, n_power_iterations, eps, dim)
    parametrize.register_parametrization(
        module, name, ReferenceSpectralNorm(weight, n_power_iterations, dim, eps)
    )
    return module


def spectral_norm_all(
    model: nn.Module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
) -> nn.Module:
    """:func:`fastgan.nn.spectral_norm_all` in torch ops: one parametrization per layer.

    The layers: every submodule of ``model`` (itself included) of
    :data:`NORMALISED_TYPES` whose ``name`` is a real floating-point tensor of
    2 or more dimensions, not parametrized yet; nothing is batched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    layers = [
        m
        for m in model.modules()
        if isinstance(m, NORMALISED_TYPES)
        and not parametrize.is_parametrized(m, name)
        and isinstance(getattr(m, name, None), torch.Tensor)
        and getattr(m, name).is_floating_point()
        and getattr(m, name).dim() >= 2
    ]
    if not layers:
        raise ValueError(f"`model` has no layer with a parameter {name!r} to normalise")
    for layer in layers:
        spectral_norm(layer, name, n_power_iterations, eps, dim)
    return model
