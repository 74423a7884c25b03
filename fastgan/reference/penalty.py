"""The gradient penalty and the WGAN-GP critic loss, in plain PyTorch autograd."""

from __future__ import annotations

import torch


def penalty_from_gradients(
    grads: torch.Tensor, *, center: float = 1.0, one_sided: bool = False
) -> torch.Tensor:
    r"""``mean_i phi(||g_i||_2)`` with the norm over every non-batch dimension.

    :math:`\phi(n) = (n - c)^2`, or :math:`\max(0, n - c)^2` when
    ``one_sided``. Computed in float32 for float16 / bfloat16 gradients.
    Differentiable to any order through torch's own ops.
    """
    if grads.dtype in (torch.float16, torch.bfloat16):
        grads = grads.float()
    norms = torch.linalg.vector_norm(grads.flatten(1), dim=1)
    excess = norms - center
    if one_sided:
        excess = excess.clamp_min(0)
    return excess.square().mean()


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``eps_i * real_i + (1 - eps_i) * fake_i`` with ``eps`` of shape (B,)."""
    w = eps.reshape((-1,) + (1,) * (real.dim() - 1))
    return w * real + (1 - w) * fake


def gradient_penalty(
    critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    center: float = 1.0,
    one_sided: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP's penalty as its paper's code computes it (interpolates only).

    ``eps`` is drawn as ``torch.rand(B, generator=generator)`` on the
    generator's device, as :func:`fastgan.gradient_penalty` draws it.
    """
    device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], generator=generator, device=device).to(real.device, real.dtype)
    x_hat = interpolate(real.detach(), fake.detach(), eps).requires_grad_()
    scores = critic(x_hat)
    (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return weight * penalty_from_gradients(grads, center=center, one_sided=one_sided)


def wgan_gp_critic_loss(
    critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    center: float = 1.0,
    one_sided: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``D(fake).mean() - D(real).mean() + penalty``: three critic calls, seed-style."""
    real, fake = real.detach(), fake.detach()
    penalty = gradient_penalty(
        critic, real, fake, weight=weight, center=center, one_sided=one_sided, generator=generator
    )
    return critic(fake).mean() - critic(real).mean() + penalty
