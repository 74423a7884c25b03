r"""Fake-tensor and autograd registrations of the Sinkhorn ops, and their CUDA (Triton) kernels.

Imported for its side effects by :mod:`fastgan.ot.sinkhorn` and
:mod:`fastgan.ot.sinkhorn_points`: shapes of ``fastgan::sinkhorn_log``,
``fastgan::sinkhorn_softmin``, ``fastgan::sinkhorn_points`` and
``fastgan::sinkhorn_points_backward`` for ``torch.compile`` / meta tensors;
``sinkhorn_log`` marked non-differentiable (the cost's gradients are
:func:`fastgan.ot.sinkhorn.sinkhorn2`'s, attached by its own
``autograd.Function``); and the envelope gradient of ``sinkhorn_points``.

The envelope gradient: at the final potentials (the state the last softmin
came from held constant), the divergence's derivative in the points is the
plan-weighted derivative of the cost, computed by
``fastgan::sinkhorn_points_backward`` in one streaming pass,

.. math:: \nabla_{x_i} S = \sum_j \pi_{ij} \nabla_x C(x_i, y_j)
    - \sum_k \pi^{aa}_{ik} \nabla_x C(x_i, x_k),

and its derivative in a weight is that weight's term of the cost at fixed
potentials (:func:`_weight_gradient`).
"""

from __future__ import annotations

import math

import torch

from fastgan import _library


def _sinkhorn_log_fake(a, b, M, reg, max_iter, tol):
    batch, n, m = M.shape
    return (
        M.new_empty((batch, n)),
        M.new_empty((batch, m)),
        M.new_empty((batch,)),
        M.new_empty((batch,), dtype=torch.int64),
        M.new_empty((batch,)),
        M.new_empty((batch,), dtype=torch.bool),
    )


def _sinkhorn_log_setup(ctx, inputs, output) -> None:
    ctx.mark_non_differentiable(*output)


def _sinkhorn_log_backward(ctx, *grads):
    raise RuntimeError(
        "fastgan.ot.sinkhorn / sinkhorn2 are not differentiable; use "
        "fastgan.ot.sinkhorn_divergence for gradients"
    )


def _softmin_fake(x, y, h, eps, p):
    return x.new_empty(x.shape[:2])


def _points_fake(x, y, a, b, p, eps_list, debias, tol, max_iter, rho=None):
    batch, n, _ = x.shape
    m = y.shape[1]
    pots = (
        x.new_empty((2, batch, n)),
        x.new_empty((2, batch, m)),
        x.new_empty((2, batch, n)) if debias else x.new_empty((0,)),
        x.new_empty((2, batch, m)) if debias else x.new_empty((0,)),
    )
    return x.new_empty((batch,)), *pots, x.new_empty((batch,), dtype=torch.int64)


def _points_backward_fake(grad_cost, x, y, a, b, f, g, faa, gbb, p, eps, rho=None):
    return x.new_empty(x.shape), y.new_empty(y.shape)


def _points_setup(ctx, inputs, output) -> None:
    x, y, a, b, p, eps_list, debias, tol, max_iter = inputs[:9]
    cost, f, g, faa, gbb, n_iter = output
    ctx.p, ctx.eps = p, eps_list[-1]
    ctx.rho = inputs[9] if len(inputs) > 9 else None
    ctx.save_for_backward(x, y, a, b, f, g, faa, gbb)
    ctx.mark_non_differentiable(f, g, faa, gbb, n_iter)


def _points_backward(ctx, grad_cost, *_):
    if torch.is_grad_enabled():
        raise RuntimeError("fastgan.ot.sinkhorn_divergence is differentiable once; create_graph=True is not supported")
    x, y, a, b, f, g, faa, gbb = ctx.saved_tensors
    grad_cost = grad_cost.contiguous()
    gx = gy = ga = gb = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        gx, gy = torch.ops.fastgan.sinkhorn_points_backward.default(
            grad_cost, x, y, a, b, f, g, faa, gbb, ctx.p, ctx.eps, ctx.rho
        )
    if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
        # d cost / d a_i: the term of a_i in the cost (the softmins' log
        # weights are held constant, as in GeomLoss).
        ga = grad_cost.unsqueeze(1) * _weight_gradient(f[0], faa[0] if faa.numel() else None, ctx.rho, ctx.eps)
        gb = grad_cost.unsqueeze(1) * _weight_gradient(g[0], gbb[0] if gbb.numel() else None, ctx.rho, ctx.eps)
    return gx, gy, ga, gb, None, None, None, None, None, None


def _weight_gradient(pot: torch.Tensor, self_pot: torch.Tensor | None, rho: float | None, eps: float) -> torch.Tensor:
    """d cost / d weight_i at fixed potentials (the envelope theorem).

    Balanced: f - f_aa (f without debias). Unbalanced: (rho + eps)(e^{-f_aa / rho}
    - e^{-f / rho}) with debias, (rho + eps)(1 - e^{-f / rho}) - eps / 2
    without (the derivative of the cost as defined, mass terms included).
    """
    if rho is None or math.isinf(rho):
        return pot - self_pot if self_pot is not None else pot
    if self_pot is None:
        return (rho + eps) * (1.0 - torch.exp(-pot / rho)) - 0.5 * eps
    return (rho + eps) * (torch.exp(-self_pot / rho) - torch.exp(-pot / rho))


if _library.LOADED:
    torch.library.register_fake("fastgan::sinkhorn_log")(_sinkhorn_log_fake)
    torch.library.register_autograd(
        "fastgan::sinkhorn_log", _sinkhorn_log_backward, setup_context=_sinkhorn_log_setup
    )
    torch.library.register_fake("fastgan::sinkhorn_softmin")(_softmin_fake)
    torch.library.register_fake("fastgan::sinkhorn_points")(_points_fake)
    torch.library.register_autograd("fastgan::sinkhorn_points", _points_backward, setup_context=_points_setup)
    torch.library.register_fake("fastgan::sinkhorn_points_backward")(_points_backward_fake)
    _library.register_triton("sinkhorn_log", "sinkhorn", "sinkhorn_log")
    _library.register_triton("sinkhorn_softmin", "sinkhorn", "sinkhorn_softmin")
    _library.register_triton("sinkhorn_points", "sinkhorn", "sinkhorn_points")
    _library.register_triton("sinkhorn_points_backward", "sinkhorn", "sinkhorn_points_backward")
