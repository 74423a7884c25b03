"""Weight clipping in plain PyTorch: the oracle for fastgan's clipping kernels."""

from __future__ import annotations

import torch

from fastgan._tensors import TensorsOrModule, positive, tensor_list, check_float_dtype


@torch.no_grad()
def clip_parameters_(parameters: TensorsOrModule, clip_value: float) -> torch.Tensor:
    """Clamps every element to ``[-clip_value, clip_value]`` in place, tensor by tensor.

    Returns the number of elements the clamp changed (``x > c`` or ``x < -c``,
    with ``c`` rounded to each tensor's dtype) as a 0-dim int64 tensor on the
    first tensor's device (CPU for an empty list). Same contract as
    :func:`fastgan.clip_parameters_`, written the obvious way: two passes over
    every tensor plus a reduction.
    """
    c = positive(clip_value, "clip_value")
    tensors = tensor_list(parameters, "parameters")
    device = tensors[0].device if tensors else torch.device("cpu")
    clipped = torch.zeros((), dtype=torch.int64, device=device)
    for i, p in enumerate(tensors):
        check_float_dtype(p, f"parameters[{i}]")
        changed = (p > c) | (p < -c)
        clipped += changed.sum().to(device)
        p.clamp_(-c, c)
    return clipped
