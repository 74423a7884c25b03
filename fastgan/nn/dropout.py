r"""Dropout on the CPU from a counter-based generator: the original GAN's regulariser of its discriminator.

Dropout with probability :math:`p` multiplies its input by a mask of
independent variates,

.. math::
    y = x \odot m, \qquad m_i = \begin{cases} 1 / (1 - p) & \text{with probability } 1 - p \\
    0 & \text{with probability } p \end{cases}

so that :math:`E[y] = x`; the backward multiplies the gradient by the same
mask, and every higher derivative too (the mask is a constant of the graph).
torch's CPU dropout draws the mask one Bernoulli variate at a time from its
Mersenne twister: about 9 ns an element on the 2-core VM, 3.8 ms for one
(64, 32, 14, 14) feature map of the MNIST critic, which made dropout 40% of
that GAN's training step. ``fastgan::dropout_mask`` hashes each element's index
with the call's seed instead (SplitMix64, one multiply-xorshift chain an
element; vectorised, split across threads, the same mask on any number of
threads) and the product is torch's ``mul``.

The seed of each call is drawn from torch's generator (the default CPU one, or
``generator``), so ``torch.manual_seed`` makes runs repeat; the masks differ from
torch's, not their distribution. On other devices (CUDA, where torch's Philox
kernel is already fast) :func:`dropout` is ``F.dropout``.

:func:`use_fast_dropout_` switches a model's ``nn.Dropout`` layers in place (the
trainer does so under ``backend="auto"``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastgan import _library
from fastgan._tensors import check_float_dtype, real_number

__all__ = ["Dropout", "dropout", "use_fast_dropout_"]

_SEED_RANGE = (-(2**63), 2**63 - 1)


def _check_p(p: object) -> float:
    value = real_number(p, "p")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`p`, the dropout probability, must lie in [0, 1], got {value}")
    return value


def dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    r"""``F.dropout(input, p, training, inplace)``: each element zeroed with probability ``p``,
    the others scaled by :math:`1 / (1 - p)`.

    Args:
        input: a floating tensor of any shape.
        p: the probability of zeroing an element, in [0, 1].
        training: False returns ``input`` unchanged, as torch does.
        inplace: multiply ``input`` in place.
        generator: the CPU ``torch.Generator`` the call's seed comes from (default: torch's);
            CPU tensors only.

    Returns:
        :math:`x \odot m` of ``input``'s shape and dtype, differentiable to any order in
        ``input`` (the gradient is the incoming one times the same mask).

    On CPU tensors the mask comes from ``fastgan::dropout_mask``; elsewhere this is
    ``F.dropout``.
    """
    p = _check_p(p)
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"`input` must be a tensor, got {type(input).__name__}")
    if input.device.type != "cpu":
        if generator is not None:
            raise ValueError(
                f"`generator` applies to CPU tensors; on {input.device.type} this is F.dropout, "
                "which draws from torch's own generator for that device"
            )
        return F.dropout(input, p, training, inplace)
    _library.require_kernel("dropout_mask", input.device)
    check_float_dtype(input, "input")
    if not training or p == 0.0:
        return input
    seed = int(torch.randint(*_SEED_RANGE, (), generator=generator, dtype=torch.int64))
    mask = torch.ops.fastgan.dropout_mask(input, p, seed)
    return input.mul_(mask) if inplace else input * mask


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout`: the same module (``p``, ``inplace``, no
    parameters or buffers), the mask from fastgan's generator on the CPU."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(_check_p(p), inplace)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training, self.inplace)


def use_fast_dropout_(module: nn.Module) -> nn.Module:
    """Switches every ``nn.Dropout`` inside ``module`` (exactly that type) to :class:`Dropout`,
    in place: the same ``p``, ``inplace``, hooks and ``state_dict``, the mask from
    :func:`dropout`. Returns ``module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"`module` must be an nn.Module, got {type(module).__name__}")
    for m in module.modules():
        if type(m) is nn.Dropout:
            m.__class__ = Dropout
    return module


if _library.LOADED and _library.has_kernel("dropout_mask", "cpu"):

    @torch.library.register_fake("fastgan::dropout_mask")
    def _dropout_mask_fake(like: torch.Tensor, p: float, seed: int) -> torch.Tensor:
        return like.new_empty(like.shape)
