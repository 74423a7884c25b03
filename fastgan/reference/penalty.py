"""The gradient penalty on given gradients, in plain PyTorch autograd."""

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
