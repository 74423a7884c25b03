"""Weight clipping (WGAN): every parameter clamped to [-c, c] in one pass.

WGAN Algorithm 1 clips the critic after each update, w <- clip(w, -c, c)
with c = 0.01. The idiom users write is a loop of ``p.data.clamp_(-c, c)``,
one kernel per tensor; :func:`clip_parameters_` sweeps the whole critic in
one parallel pass on the CPU and in one launch on a GPU, and returns how many
elements were clipped (a saturation diagnostic) from the same pass.
"""

from __future__ import annotations

import math

import torch

from fastgan import _library
from fastgan._tensors import TensorsOrModule, check_meta_not_mixed, group_by_device, positive, tensor_list

__all__ = ["clip_parameters_"]

BACKENDS = ("auto", "reference", "triton")


def clip_parameters_(
    parameters: TensorsOrModule, clip_value: float, *, backend: str = "auto"
) -> torch.Tensor:
    r"""Clamps every element of ``parameters`` to :math:`[-c, c]` in place.

    .. math:: w \leftarrow \min(\max(w, -c), c), \qquad c = \text{clip\_value}

    Args:
        parameters: a Tensor, an iterable of Tensors, or an ``nn.Module`` (all
            its parameters), as for ``torch.nn.utils.clip_grad_value_``.
            float32, float64, float16 or bfloat16, of any shape and layout;
            dtypes and devices may mix. ``nn.Parameter``\ s that require grad
            are updated like ``p.data.clamp_`` would (no autograd error; the
            parameters' version counters are not bumped).
        clip_value: ``c``, finite and > 0 (WGAN: 0.01). It is rounded to each
            tensor's dtype, as ``torch.clamp`` rounds its bounds.
        backend: ``"auto"`` runs fastgan's compiled kernel for the tensors'
            device (one parallel pass over all tensors on the CPU, one
            multi-tensor launch per dtype on CUDA); ``"reference"`` the
            pure-PyTorch loop in :mod:`fastgan.reference`; ``"triton"`` the
            Triton kernel, one launch per tensor (CUDA tensors, or CPU tensors
            under ``TRITON_INTERPRET=1``).

    Returns:
        A 0-dim int64 tensor on the first tensor's device (CPU for an empty
        list): the number of elements the clamp changed, i.e. that lay outside
        ``[-c, c]``. On a GPU it is computed in the same pass and returned
        without a host synchronisation. NaN elements stay NaN and are not
        counted.

    Not differentiable: it updates parameters in place, like an optimizer step.

    Raises:
        ValueError: ``clip_value`` is not finite or not > 0, or ``backend`` is
            unknown.
        TypeError: an element of ``parameters`` is not a floating-point
            tensor of a supported dtype.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        from fastgan import reference

        return reference.clip_parameters_(parameters, clip_value)
    c = clip_value
    if not (type(c) is float and 0.0 < c < math.inf):
        c = positive(clip_value, "clip_value")
    tensors = parameters if type(parameters) in (list, tuple) else tensor_list(parameters, "parameters")
    if backend == "auto" and tensors and _library.LOADED:
        # The common case, one device and valid dtypes, goes straight to the
        # op, which checks both before it touches memory; anything else is
        # sorted out below with the user's argument names. The op bypasses
        # autograd (see csrc/fastgan.cpp): like `p.data.clamp_`, it records no
        # history and bumps no version counter.
        try:
            return _clip_op(tensors, c)
        except (RuntimeError, TypeError, NotImplementedError):
            pass
    groups = group_by_device(tensor_list(tensors, "parameters"), "parameters")
    check_meta_not_mixed([group[0] for group in groups.values()], "parameters")
    if not groups:
        return torch.zeros((), dtype=torch.int64)
    counts = []
    for device, group in groups.items():
        if backend == "triton":
            from fastgan.kernels.clip import clip_

            counts.append(clip_([t.data for t in group], c))
        else:
            _library.require_kernel("clip_", device)
            counts.append(_clip_op(group, c))
    total = counts[0]
    for count in counts[1:]:
        total = total + count.to(total.device, non_blocking=True)
    return total


if _library.LOADED:
    _clip_op = torch.ops.fastgan.clip_.default

    @torch.library.register_fake("fastgan::clip_")
    def _clip_fake(tensors: list[torch.Tensor], clip_value: float) -> torch.Tensor:
        check_meta_not_mixed(tensors, "parameters")
        return tensors[0].new_empty((), dtype=torch.int64)
