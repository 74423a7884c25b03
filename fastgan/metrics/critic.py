"""How well a WGAN critic estimates the Wasserstein-1 distance, and how Lipschitz it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, TypedDict

import torch
from torch import Tensor

from fastgan._checks import float_tensor

__all__ = ["CriticEstimate", "critic_estimate"]


class CriticEstimate(TypedDict, total=False):
    """What :func:`critic_estimate` returns (all floats)."""

    #: E[D(real)] - E[D(fake)] over the batches.
    estimate: float
    #: Largest and mean gradient norm ||grad D|| on the interpolates.
    grad_norm_max: float
    grad_norm_mean: float
    #: Largest |D(real_i) - D(fake_i)| / ||real_i - fake_i|| over the pairs.
    pair_slope_max: float
    #: Only with ``w1``: the W_1 it returned, and w1 - estimate.
    w1: float
    w1_gap: float


def critic_estimate(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    w1: Optional[Callable[[Tensor, Tensor], float] | str] = None,
    generator: Optional[torch.Generator] = None,
) -> CriticEstimate:
    r"""Compares a critic's Wasserstein estimate with its Lipschitz behaviour (and W_1).

    By Kantorovich-Rubinstein duality,
    :math:`W_1(P_r, P_g) = \sup_{\|D\|_L \le 1} E_{P_r}[D] - E_{P_g}[D]`, so for a
    1-Lipschitz critic ``estimate`` = E[D(real)] - E[D(fake)] is at most the W_1 between
    the two empirical distributions, and a critic whose Lipschitz constant is L > 1 can
    overshoot by up to a factor L. Measured here:

    * ``estimate``: the critic's W_1 estimate on these batches;
    * ``grad_norm_max`` / ``grad_norm_mean``: :math:`\|\nabla_x D(\hat x)\|_2` on the
      interpolates :math:`\hat x = \epsilon x_r + (1 - \epsilon) x_g`,
      :math:`\epsilon \sim U[0, 1]` per pair (the points WGAN-GP penalises): the
      Lipschitz constant the critic actually has there;
    * ``pair_slope_max``: :math:`\max_i |D(x_{r,i}) - D(x_{g,i})| / \|x_{r,i} - x_{g,i}\|`,
      a lower bound on the global Lipschitz constant from finite differences;
    * with ``w1="exact"`` (fastgan's exact optimal transport between the two batches,
      :func:`fastgan.metrics.wasserstein_distance`) or a callable
      ``w1(real, fake) -> float``: ``w1`` and ``w1_gap = w1 - estimate`` (>= 0 up to
      the Lipschitz excess).

    ``critic`` maps (N, ...) inputs to N outputs (shape (N,) or (N, 1)) and must treat
    samples independently (no batch normalisation in training mode) for the gradient
    norms to be per-sample. ``real`` and ``fake`` have the same shape (N, ...).
    Parameter gradients (``.grad``) are left untouched, and so is the critic's mode.
    """
    if not callable(critic):
        raise TypeError(f"`critic` must be callable, got {type(critic).__name__}")
    real = float_tensor(real, "real", min_dims=1)
    fake = float_tensor(fake, "fake", min_dims=1)
    if real.shape != fake.shape:
        raise ValueError(f"`real` {tuple(real.shape)} and `fake` {tuple(fake.shape)} must have the same shape")
    n = real.shape[0]
    if n == 0:
        raise ValueError("`real` and `fake` are empty")
    if w1 == "exact":
        from fastgan.metrics.distances import wasserstein_distance

        w1 = wasserstein_distance
    elif w1 is not None and not callable(w1):
        raise TypeError(f"`w1` must be 'exact' or a callable, got {w1!r}")

    def outputs(x: Tensor, name: str) -> Tensor:
        out = critic(x)
        if not isinstance(out, Tensor) or out.numel() != n:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"`critic` must return one output per sample ({n}); got {shape} on `{name}`")
        return out.reshape(n)

    with torch.no_grad():
        d_real = outputs(real, "real").double()
        d_fake = outputs(fake, "fake").double()
    eps_shape = (n,) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, dtype=torch.float64).to(real.device, real.dtype)
    with torch.enable_grad():
        x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(outputs(x_hat, "interpolates").sum(), x_hat)
    grad_norm = grad.reshape(n, -1).double().norm(dim=1)
    step = (real - fake).reshape(n, -1).double().norm(dim=1)
    moved = step > 0
    slopes = (d_real - d_fake).abs()[moved] / step[moved]

    result = CriticEstimate(
        estimate=float(d_real.mean() - d_fake.mean()),
        grad_norm_max=float(grad_norm.max()),
        grad_norm_mean=float(grad_norm.mean()),
        pair_slope_max=float(slopes.max()) if slopes.numel() else 0.0,
    )
    if w1 is not None:
        value = float(w1(real.detach(), fake.detach()))
        result["w1"] = value
        result["w1_gap"] = value - result["estimate"]
    return result

