r"""Convolutions of one-channel images: an image critic's first layer and an image generator's last.

On grayscale images (MNIST) a critic's first convolution reads one channel and
a generator's last layer, a transposed convolution, writes one. Both are thin
products: with a kernel of :math:`k_h \times k_w` taps,

.. math::
    y_{b,o,i,j} = \sum_{u < k_h,\, v < k_w} w_{o,0,u,v}\;
                  x_{b,0,\, s_h i + u - p_h,\; s_w j + v - p_w}

(zero outside the image). oneDNN runs the forward of such a layer and its
weight gradient near the machine's peak, but the other direction, the input
gradient :math:`\bar x = A_w^\top \bar y` -- a transposed convolution with one
output channel, which is also a generator's last layer -- at a few GFLOP/s
(32 channels to one, 4x4 stride 2, 14 to 28 pixels, batch 32: 1 ms on two
threads of the 2-core CPU, 2-3 ms on one). fastgan's CPU kernel
``fastgan::conv2d_single_channel_input_grad`` runs it as one batched matrix
product, :math:`W^\top` (kh kw, O) times each image's (O, Ho Wo) plane, and a
col2im pass that sums the patches back into the image.

``fastgan::conv2d_single_channel`` is the forward (oneDNN's) whose input
gradient is that kernel. Both ops are linear in both arguments; autograd
differentiates each into the other and into torch's weight gradient
:math:`\bar w = \partial_w \langle \bar y, A_w x\rangle`, so every derivative
order is available: a gradient penalty's double backward through a critic's
first layer runs through them too.

:func:`use_single_channel_convs_` switches the eligible layers of a model to
them in place (the trainer does so under ``backend="auto"``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastgan import _library

__all__ = [
    "SingleChannelConv2d",
    "SingleChannelConvTranspose2d",
    "conv2d_single_channel",
    "conv_transpose2d_single_channel",
    "use_single_channel_convs_",
]

_OPS = ("conv2d_single_channel", "conv2d_single_channel_input_grad")
_DTYPES = (torch.float32, torch.float64)


def _pair(value: int | tuple[int, ...], name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
    ):
        raise TypeError(f"`{name}` must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _arguments(op: str, x: torch.Tensor, weight: torch.Tensor, channels: int | None, stride, padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """Checks ``x`` (B, channels, h, w) against ``weight`` (C, 1, kh, kw); returns (stride, padding) as pairs.

    ``channels``: 1 for a convolution's input, None for a transposed convolution's
    (then ``weight.shape[0]``)."""
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{op}: `input` and `weight` must be tensors")
    if weight.dim() != 4 or weight.shape[1] != 1:
        raise ValueError(f"{op}: `weight` must be (C, 1, kh, kw), got shape {tuple(weight.shape)}")
    channels = weight.shape[0] if channels is None else channels
    if x.dim() != 4 or x.shape[1] != channels:
        sides = "H, W" if channels == 1 else "h, w"
        raise ValueError(f"{op}: `input` must be (B, {channels}, {sides}) for a weight of shape {tuple(weight.shape)}, got shape {tuple(x.shape)}")
    if x.device != weight.device:
        raise ValueError(f"{op}: `input` is on {x.device} and `weight` on {weight.device}")
    if not x.is_floating_point() or (x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(f"{op}: `input` and `weight` must share a floating-point dtype, got {x.dtype} and {weight.dtype}")
    if min(x.shape[2:]) < 1:
        raise ValueError(f"{op}: `input` has an empty image, shape {tuple(x.shape)}")
    return _pair(stride, "stride", 1), _pair(padding, "padding", 0)


def _fused(x: torch.Tensor) -> bool:
    """Whether fastgan's kernel runs this call: a float32 / float64 CPU tensor outside autocast."""
    return (
        x.device.type == "cpu"
        and x.dtype in _DTYPES
        and not torch.is_autocast_enabled("cpu")
        and _library.has_kernel("conv2d_single_channel", "cpu")
    )


def conv2d_single_channel(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    r"""``F.conv2d(input, weight, bias, stride, padding)`` for one-channel images.

    Args:
        input: (B, 1, H, W).
        weight: (O, 1, kh, kw).
        bias: (O,) or None.
        stride, padding: ints or pairs (zero padding; no dilation, one group).

    Returns:
        (B, O, Ho, Wo), :math:`H_o = \lfloor (H + 2 p_h - k_h) / s_h \rfloor + 1`.

    On the CPU in float32 / float64 (outside autocast), for an input that needs its
    gradient, the input gradient (and every derivative order through it) runs
    fastgan's kernel; otherwise this is ``F.conv2d`` (under autocast, in autocast's dtype:
    oneDNN's bfloat16 layer beats a float32 detour through the kernel).
    """
    stride, padding = _arguments("conv2d_single_channel", input, weight, 1, stride, padding)
    if any(n + 2 * p < k for n, p, k in zip(input.shape[2:], padding, weight.shape[2:])):
        raise ValueError(
            f"conv2d_single_channel: the {tuple(weight.shape[2:])} kernel of `weight` is larger than the padded "
            f"{tuple(input.shape[2:])} `input` (padding {padding})"
        )
    if not (_fused(input) and input.requires_grad and torch.is_grad_enabled()):
        # The forward is oneDNN's either way; fastgan's op only changes the input gradient.
        return F.conv2d(input, weight, bias, stride, padding)
    y = torch.ops.fastgan.conv2d_single_channel(input, weight, list(stride), list(padding))
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def conv_transpose2d_single_channel(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    r"""``F.conv_transpose2d(input, weight, bias, stride, padding, output_padding)`` to one channel.

    Args:
        input: (B, C, h, w).
        weight: (C, 1, kh, kw).
        bias: (1,) or None.
        stride, padding, output_padding: ints or pairs (``output_padding`` < ``stride``).

    Returns:
        (B, 1, H, W), :math:`H = (h - 1) s_h - 2 p_h + k_h + \mathrm{output\_padding}_h`:
        the input gradient of :func:`conv2d_single_channel` with this weight.
    """
    stride, padding = _arguments("conv_transpose2d_single_channel", input, weight, None, stride, padding)
    output_padding = _pair(output_padding, "output_padding", 0)
    if any(op >= s for op, s in zip(output_padding, stride)):
        raise ValueError(f"conv_transpose2d_single_channel: `output_padding` {output_padding} must be in [0, stride {stride})")
    size = [(n - 1) * s - 2 * p + k + op for n, s, p, k, op in zip(input.shape[2:], stride, padding, weight.shape[2:], output_padding)]
    if min(size) <= 0:
        raise ValueError(f"conv_transpose2d_single_channel: `input` {tuple(input.shape)} with `padding` {padding} gives a {size[0]}x{size[1]} output")
    if not _fused(input):
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding)
    y = torch.ops.fastgan.conv2d_single_channel_input_grad(input, weight, list(stride), list(padding), size)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def _eligible(module: nn.Module) -> bool:
    """A plain torch convolution whose layout the single-channel kernels reproduce."""
    if type(module) is nn.Conv2d:
        channels_ok = module.in_channels == 1
    elif type(module) is nn.ConvTranspose2d:
        channels_ok = module.out_channels == 1
    else:
        return False
    return (
        channels_ok
        and module.groups == 1
        and tuple(module.dilation) == (1, 1)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


class SingleChannelConv2d(nn.Conv2d):
    """``nn.Conv2d`` with one input channel, through :func:`conv2d_single_channel`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return conv2d_single_channel(input, self.weight, self.bias, self.stride, self.padding)


class SingleChannelConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with one output channel, through :func:`conv_transpose2d_single_channel`."""

    def forward(self, input: torch.Tensor, output_size: Optional[list[int]] = None) -> torch.Tensor:
        if output_size is not None:
            return super().forward(input, output_size)
        return conv_transpose2d_single_channel(input, self.weight, self.bias, self.stride, self.padding, self.output_padding)


def use_single_channel_convs_(module: nn.Module) -> nn.Module:
    """Switches every ``nn.Conv2d`` with one input channel and every ``nn.ConvTranspose2d``
    with one output channel inside ``module`` to fastgan's single-channel kernels, in place.

    Only layers of exactly those types with zero padding, no dilation and one
    group change; they keep their parameters, buffers, hooks and ``state_dict``
    keys (their class becomes :class:`SingleChannelConv2d` /
    :class:`SingleChannelConvTranspose2d`, subclasses that override ``forward`` alone)
    and compute the same function. Call it before parametrizing the layers
    (spectral norm). Returns ``module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"`module` must be an nn.Module, got {type(module).__name__}")
    for m in module.modules():
        if _eligible(m):
            m.__class__ = SingleChannelConv2d if isinstance(m, nn.Conv2d) else SingleChannelConvTranspose2d
    return module


def _weight_grad(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    """d/dw <grad, conv2d(x, w)>: torch's convolution weight gradient, differentiable to any order."""
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, stride, padding, [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]


if _library.LOADED and all(_library.has_kernel(op, "cpu") for op in _OPS):
    _ops = torch.ops.fastgan

    @torch.library.register_fake("fastgan::conv2d_single_channel")
    def _conv_fake(input, weight, stride, padding):
        out = [(n + 2 * p - k) // s + 1 for n, s, p, k in zip(input.shape[2:], stride, padding, weight.shape[2:])]
        return input.new_empty((input.shape[0], weight.shape[0], *out))

    @torch.library.register_fake("fastgan::conv2d_single_channel_input_grad")
    def _input_grad_fake(grad, weight, stride, padding, input_size):
        return grad.new_empty((grad.shape[0], 1, *input_size))

    def _save_all(ctx, inputs, output) -> None:
        a, b, *rest = inputs
        ctx.save_for_backward(a, b)
        ctx.rest = rest

    def _conv_backward(ctx, grad):
        # y = A_w x:  d/dx <grad, y> = A_w^T grad (fastgan's kernel);  d/dw: torch's weight gradient.
        x, w = ctx.saved_tensors
        stride, padding = ctx.rest
        gx = _ops.conv2d_single_channel_input_grad(grad, w, stride, padding, list(x.shape[2:])) if ctx.needs_input_grad[0] else None
        gw = _weight_grad(x, grad, w, stride, padding) if ctx.needs_input_grad[1] else None
        return gx, gw, None, None

    def _input_grad_backward(ctx, grad):
        # f = A_w^T g:  d/dg <grad, f> = A_w grad;  d/dw <grad, f> = d/dw <g, A_w grad>.
        g, w = ctx.saved_tensors
        stride, padding, _ = ctx.rest
        gg = _ops.conv2d_single_channel(grad, w, stride, padding) if ctx.needs_input_grad[0] else None
        gw = _weight_grad(grad, g, w, stride, padding) if ctx.needs_input_grad[1] else None
        return gg, gw, None, None, None

    torch.library.register_autograd("fastgan::conv2d_single_channel", _conv_backward, setup_context=_save_all)
    torch.library.register_autograd("fastgan::conv2d_single_channel_input_grad", _input_grad_backward, setup_context=_save_all)
