"""Triton kernels for the fused bias + activation and its derivatives.

The CUDA implementations of ``fastgan::bias_act`` and
``fastgan::bias_act_grad``: one pass over x (and grad), the activation and
derivative order compile-time constants, math in float32 (float64 for
float64 tensors). The bias element of flat index i is ``(i // inner) % C``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgan.kernels import _checks

BLOCK = 1024

#: Activation codes, in the order of csrc/common/bias_act.h.
ACT_CODES = {
    "linear": 0, "relu": 1, "lrelu": 2, "tanh": 3, "sigmoid": 4,
    "elu": 5, "selu": 6, "softplus": 7, "swish": 8,
}
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@triton.jit
def _sigmoid(v):
    # Stable on both sides: exp of a non-positive number only.
    e = tl.exp(-tl.abs(v))
    return tl.where(v >= 0, 1 / (1 + e), e / (1 + e))


@triton.jit
def _tanh(v):
    a = tl.abs(v)
    e = tl.exp(-2 * a)
    big = (1 - e) / (1 + e)
    # Near zero the quotient cancels: the series is exact to rounding there.
    a2 = a * a
    small = a * (1 - a2 * (1.0 / 3 - a2 * (2.0 / 15)))
    t = tl.where(a < 0.03, small, big)
    return tl.where(v < 0, -t, t)


@triton.jit
def _log1p_small(t):
    # log(1 + t) for 0 <= t <= 1, accurate when t is tiny.
    series = t * (1 - t * (0.5 - t * (1.0 / 3)))
    return tl.where(t < 1e-4, series, tl.log(1 + t))


@triton.jit
def _derivative(v, alpha, ACT: tl.constexpr, ORDER: tl.constexpr):
    # For selu, `alpha` carries SELU's fixed alpha and the result is scaled
    # by the caller's gain, which includes SELU's scale.
    zero = v * 0
    one = zero + 1
    if ACT == 0:  # linear
        if ORDER == 0:
            r = v
        elif ORDER == 1:
            r = one
        else:
            r = zero
    elif ACT == 1:  # relu
        if ORDER == 0:
            r = tl.where(v > 0, v, zero)
        elif ORDER == 1:
            r = tl.where(v > 0, one, zero)
        else:
            r = zero
    elif ACT == 2:  # lrelu
        if ORDER == 0:
            r = tl.where(v > 0, v, v * alpha)
        elif ORDER == 1:
            r = tl.where(v > 0, one, one * alpha)
        else:
            r = zero
    elif ACT == 3:  # tanh
        y = _tanh(v)
        if ORDER == 0:
            r = y
        elif ORDER == 1:
            r = 1 - y * y
        elif ORDER == 2:
            r = -2 * y * (1 - y * y)
        else:
            r = (6 * y * y - 2) * (1 - y * y)
    elif ACT == 4:  # sigmoid
        s = _sigmoid(v)
        d1 = s * (1 - s)
        if ORDER == 0:
            r = s
        elif ORDER == 1:
            r = d1
        elif ORDER == 2:
            r = d1 * (1 - 2 * s)
        else:
            r = d1 * (1 - 6 * s + 6 * s * s)
    elif ACT == 5 or ACT == 6:  # elu, selu
        ex = tl.exp(tl.minimum(v, zero))
        if ORDER == 0:
            r = tl.where(v > 0, v, alpha * (ex - 1))
        elif ORDER == 1:
            r = tl.where(v > 0, one, alpha * ex)
        else:
            r = tl.where(v > 0, zero, alpha * ex)
    elif ACT == 7:  # softplus
        if ORDER == 0:
            r = tl.maximum(v, zero) + _log1p_small(tl.exp(-tl.abs(v)))
        else:
            s = _sigmoid(v)
            if ORDER == 1:
                r = s
            elif ORDER == 2:
                r = s * (1 - s)
            else:
                r = s * (1 - s) * (1 - 2 * s)
    else:  # swish
        s = _sigmoid(v)
        d1 = s * (1 - s)
        d2 = d1 * (1 - 2 * s)
        if ORDER == 0:
            r = v * s
        elif ORDER == 1:
            r = s + v * d1
        elif ORDER == 2:
            r = 2 * d1 + v * d2
        else:
            r = 3 * d2 + v * d1 * (1 - 6 * s + 6 * s * s)
    return r


@triton.jit
def _bias_act_kernel(
    x_ptr, grad_ptr, bias_ptr, params_ptr, out_ptr, n, channels, inner,
    ACT: tl.constexpr, ORDER: tl.constexpr, HAS_BIAS: tl.constexpr, ACC64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask, other=0)
    acc_type = tl.float64 if ACC64 else tl.float32
    # alpha and gain come from memory in the accumulation dtype: scalar
    # arguments would be float32 and round them for float64 tensors.
    alpha = tl.load(params_ptr)
    gain = tl.load(params_ptr + 1)
    v = x.to(acc_type)
    if HAS_BIAS:
        c = (offsets // inner) % channels
        v += tl.load(bias_ptr + c, mask=mask, other=0).to(acc_type)
    d = _derivative(v, alpha, ACT, ORDER) * gain
    if ORDER > 0:
        d = d * tl.load(grad_ptr + offsets, mask=mask, other=0).to(acc_type)
    tl.store(out_ptr + offsets, d.to(x.dtype), mask=mask)


_PARAMS: dict[tuple, torch.Tensor] = {}


def _params(alpha: float, gain: float, acc64: bool, device: torch.device) -> torch.Tensor:
    """(alpha, gain) as a device tensor, cached: no host-to-device copy per call."""
    key = (alpha, gain, acc64, device)
    params = _PARAMS.get(key)
    if params is None:
        dtype = torch.float64 if acc64 else torch.float32
        params = torch.tensor([alpha, gain], dtype=dtype, device=device)
        if len(_PARAMS) < 256:
            _PARAMS[key] = params
    return params


def _layout(x: torch.Tensor, bias: torch.Tensor | None, dim: int):
    """(memory format, channels, inner) as the C++ kernel reads x."""
    channels_last = (
        x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        and (bias is None or dim % 4 == 1)
    )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if bias is None:
        return fmt, 1, 1
    dim = dim % x.dim()
    inner = 1 if channels_last else int(torch.Size(x.shape[dim + 1:]).numel())
    return fmt, x.shape[dim], inner


def bias_act(
    x: torch.Tensor, bias: torch.Tensor | None, act: str, alpha: float, gain: float, dim: int,
    grad: torch.Tensor | None = None, order: int = 0,
) -> torch.Tensor:
    """``gain * act^(order)(x + bias)`` (times ``grad`` for order >= 1)."""
    op = "fastgan::bias_act" if grad is None else "fastgan::bias_act_grad"
    if act not in ACT_CODES:
        raise ValueError(f"{op}: unknown activation `act`={act!r}")
    _checks.check_bias_act(op, x, bias, dim, grad)
    fmt, channels, inner = _layout(x, bias, dim)
    xc = x.contiguous(memory_format=fmt)
    gc = grad.contiguous(memory_format=fmt) if grad is not None else xc
    bc = bias.contiguous() if bias is not None else xc
    out = torch.empty_like(xc, memory_format=fmt)
    n = xc.numel()
    if act == "selu":
        alpha, gain = SELU_ALPHA, gain * SELU_SCALE
    params = _params(float(alpha), float(gain), x.dtype == torch.float64, x.device)
    if n:
        _bias_act_kernel[(triton.cdiv(n, BLOCK),)](
            xc, gc, bc, params, out, n, channels, inner,
            ACT=ACT_CODES[act], ORDER=order, HAS_BIAS=bias is not None,
            ACC64=x.dtype == torch.float64, BLOCK=BLOCK,
        )
    return out


def bias_act_grad(grad, x, bias, act, alpha, gain, dim, order):
    """Same contract as ``fastgan::bias_act_grad``."""
    if order not in (1, 2, 3):
        raise ValueError(f"fastgan::bias_act_grad: `order` must be 1 to 3, got {order}")
    return bias_act(x, bias, act, alpha, gain, dim, grad=grad, order=order)
