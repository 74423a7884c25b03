"""Bias + activation, and its derivatives, in plain PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _biased(x: torch.Tensor, bias: torch.Tensor | None, dim: int) -> torch.Tensor:
    if bias is None:
        return x
    shape = [1] * x.dim()
    shape[dim] = -1
    return x + bias.reshape(shape)


def _activation(v: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return v
    if act == "relu":
        return F.relu(v)
    if act == "lrelu":
        return F.leaky_relu(v, alpha)
    if act == "tanh":
        return torch.tanh(v)
    if act == "sigmoid":
        return torch.sigmoid(v)
    if act == "elu":
        return F.elu(v, alpha)
    if act == "selu":
        return F.selu(v)
    if act == "softplus":
        return F.softplus(v)
    if act == "swish":
        return F.silu(v)
    raise ValueError(f"unknown activation `act`={act!r}")


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    act: str,
    alpha: float,
    gain: float,
    dim: int = 1,
) -> torch.Tensor:
    """``gain * act(x + bias)`` with torch's own activation functions.

    ``alpha`` and ``gain`` are explicit here (no per-activation defaults);
    differentiable to any order through torch's autograd.
    """
    y = _activation(_biased(x, bias, dim), act, alpha)
    return y * gain if gain != 1.0 else y


def activation_derivative(v: torch.Tensor, act: str, alpha: float, order: int) -> torch.Tensor:
    r"""``act^(order)(v)`` for order 1 or 2, closed forms in torch ops.

    Differentiable by torch's autograd. At the kinks of relu / lrelu / elu the value on the
    ``v <= 0`` side is used, as torch's own backward kernels do.
    """
    if order not in (1, 2):
        raise ValueError(f"`order` must be 1 or 2, got {order}")
    pos = v > 0
    if act in ("linear", "relu", "lrelu"):
        if order == 2:
            return torch.zeros_like(v)
        if act == "linear":
            return torch.ones_like(v)
        if act == "relu":  # NaN passes as in torch's threshold_backward (zero where v <= 0)
            return torch.where(v <= 0, torch.zeros_like(v), torch.ones_like(v))
        return torch.where(pos, torch.ones_like(v), torch.full_like(v, alpha))
    if act == "tanh":
        y = torch.tanh(v)
        d1 = 1 - y * y
        return d1 if order == 1 else -2 * y * d1
    if act in ("sigmoid", "softplus"):
        s = torch.sigmoid(v)
        if act == "softplus" and order == 1:
            return s
        d1 = s * (1 - s)
        if act == "softplus" or order == 1:
            return d1
        return d1 * (1 - 2 * s)
    if act in ("elu", "selu"):
        a, scale = (SELU_ALPHA, SELU_SCALE) if act == "selu" else (alpha, 1.0)
        neg = scale * a * torch.exp(torch.clamp(v, max=0))
        if order == 1:
            return torch.where(pos, torch.full_like(v, scale), neg)
        return torch.where(pos, torch.zeros_like(v), neg)
    if act == "swish":
        s = torch.sigmoid(v)
        if order == 1:
            return s * (1 + v * (1 - s))
        return s * (1 - s) * (2 + v * (1 - 2 * s))
    raise ValueError(f"unknown activation `act`={act!r}")


def bias_act_grad(
    grad: torch.Tensor,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    act: str,
    alpha: float,
    gain: float,
    dim: int,
    order: int,
) -> torch.Tensor:
    """``grad * gain * act^(order)(x + bias)``, differentiable to any order."""
    return grad * gain * activation_derivative(_biased(x, bias, dim), act, alpha, order)
