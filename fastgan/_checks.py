"""Value checks shared by the evaluation functions (divergences, metrics).

float_tensor reads values on the host, so it synchronises with a GPU:
training-step code (losses, ops) checks only types, dtypes, shapes and Python
scalars (positive, positive_int, from fastgan._tensors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastgan._tensors import check_float_dtype, positive, positive_int

__all__ = ["float_tensor", "positive", "positive_int"]


def float_tensor(x: object, name: str, *, dims: int | None = None, min_dims: int = 0) -> Tensor:
    """``x`` if it is a finite float tensor of the required rank, else a clear error."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a Tensor, got {type(x).__name__}")
    check_float_dtype(x, name)
    if dims is not None and x.dim() != dims:
        raise ValueError(f"`{name}` must have {dims} dimensions, got shape {tuple(x.shape)}")
    if x.dim() < min_dims:
        raise ValueError(f"`{name}` must have at least {min_dims} dimensions, got shape {tuple(x.shape)}")
    if bool(torch.isnan(x).any()):
        raise ValueError(f"`{name}` contains NaN")
    if bool(torch.isinf(x).any()):
        raise ValueError(f"`{name}` contains an infinite value")
    return x
