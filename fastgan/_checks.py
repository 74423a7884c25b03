"""Value checks shared by the evaluation functions (divergences, metrics).

They read values on the host, so they synchronise with a GPU: training-step code
(losses, ops) checks only types, dtypes and shapes.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from fastgan._tensors import check_float_dtype


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


def positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}, got {value}")
    return value


def positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)
