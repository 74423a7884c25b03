r"""The gradient penalty (WGAN-GP, WGAN-LP, R1/R2) on gradients already computed.

WGAN-GP (Gulrajani et al., Algorithm 1) adds
:math:`\lambda\,\mathbb{E}_{\hat x}[(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2]` to
the critic loss, the norm taken per sample. :func:`penalty_from_gradients`
computes the expectation over a batch of gradients in one fused pass, and its
backward in another, instead of the chain of small ops (flatten, square, sum,
sqrt, subtract, square, mean) and their backwards that the usual code runs.
"""

from __future__ import annotations

import math

import torch

from fastgan import _library
from fastgan._tensors import check_float_dtype

__all__ = ["penalty_from_gradients"]

BACKENDS = ("auto", "reference")


def penalty_from_gradients(
    grads: torch.Tensor, *, center: float = 1.0, one_sided: bool = False, backend: str = "auto"
) -> torch.Tensor:
    r"""The gradient penalty :math:`\frac1B \sum_i \phi(\|g_i\|_2)`.

    .. math::
        \phi(n) = (n - c)^2 \quad\text{or, when one\_sided,}\quad \max(0, n - c)^2

    Args:
        grads: gradients of shape ``(B, ...)`` (any rank: points, images,
            sequences); the norm runs over every dimension but the first.
            float32, float64, float16 or bfloat16.
        center: ``c`` (1 for WGAN-GP; 0 gives R1/R2-style penalties).
        one_sided: penalise only norms above ``c`` (WGAN-LP).
        backend: ``"auto"`` (fastgan's compiled kernels) or ``"reference"``
            (:func:`fastgan.reference.penalty_from_gradients`).

    Returns:
        A 0-dim tensor, float32 for float16 / bfloat16 gradients, else the
        gradients' dtype. Differentiable with respect to ``grads`` to any
        order: the first derivative, :math:`\frac{\phi'(n_i)}{n_i B} g_i`
        (zero where a sample's gradient is exactly zero), is one fused pass;
        higher orders (``create_graph=True`` through the penalty's own
        backward) are computed by torch's autograd on the reference math.
        Multiply by the penalty weight (:math:`\lambda = 10` in WGAN-GP)
        yourself.

    Raises:
        TypeError: ``grads`` is not a floating-point tensor.
        ValueError: ``grads`` has no batch dimension or no sample, ``center``
            is not finite, or ``backend`` is unknown.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(grads, torch.Tensor):
        raise TypeError(f"`grads` must be a Tensor, got {type(grads).__name__}")
    check_float_dtype(grads, "grads")
    if grads.dim() < 1 or grads.shape[0] == 0:
        raise ValueError(
            f"`grads` must have a batch dimension with at least one sample, got shape {tuple(grads.shape)}"
        )
    if not math.isfinite(center):
        raise ValueError(f"`center` must be finite, got {center}")
    center, one_sided = float(center), bool(one_sided)
    if backend == "reference":
        from fastgan import reference

        return reference.penalty_from_gradients(grads, center=center, one_sided=one_sided)
    _library.require_kernel("penalty_from_gradients", grads.device)
    penalty, _ = torch.ops.fastgan.penalty_from_gradients.default(grads, center, one_sided)
    return penalty


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _setup_context(ctx, inputs, output) -> None:
    grads, center, one_sided = inputs
    _, norms = output
    ctx.save_for_backward(grads, norms)
    ctx.center, ctx.one_sided = center, one_sided
    ctx.mark_non_differentiable(norms)


def _backward(ctx, grad_penalty: torch.Tensor, _grad_norms: torch.Tensor):
    grads, norms = ctx.saved_tensors
    if torch.is_grad_enabled() and (grads.requires_grad or grad_penalty.requires_grad):
        # A higher derivative was asked for (create_graph=True): differentiate
        # the reference math with torch's autograd, which can go on.
        from fastgan import reference

        with torch.enable_grad():
            penalty = reference.penalty_from_gradients(grads, center=ctx.center, one_sided=ctx.one_sided)
            (grad_grads,) = torch.autograd.grad(penalty, grads, grad_penalty, create_graph=True)
        return grad_grads, None, None
    grad_grads = torch.ops.fastgan.penalty_from_gradients_backward.default(
        grad_penalty, grads, norms, ctx.center, ctx.one_sided
    )
    return grad_grads, None, None


if _library.LOADED:

    @torch.library.register_fake("fastgan::penalty_from_gradients")
    def _penalty_fake(grads, center, one_sided):
        dtype = _result_dtype(grads.dtype)
        return grads.new_empty((), dtype=dtype), grads.new_empty((grads.shape[0],), dtype=dtype)

    @torch.library.register_fake("fastgan::penalty_from_gradients_backward")
    def _penalty_backward_fake(grad_penalty, grads, norms, center, one_sided):
        return torch.empty_like(grads, memory_format=torch.contiguous_format)

    torch.library.register_autograd(
        "fastgan::penalty_from_gradients", _backward, setup_context=_setup_context
    )
