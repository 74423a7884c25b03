"""Argument handling shared by fastgan's public functions, none of it reading tensor values.

Tensor lists and modules (:func:`tensor_list`), layouts, dtypes and devices
(:func:`check_float_dtype`, :func:`check_same_device`), Python numbers
(:func:`real_number`, :func:`positive`, :func:`integer`, :func:`positive_int`)
and the arguments of a spectral normalisation (:func:`spectral_norm_args`):
each failure a TypeError / ValueError naming the argument. No check here
synchronises with a GPU, so training-step code may use all of them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Union

import torch
from torch import nn

#: What functions that act on "parameters" accept, as torch.nn.utils.clip_grad_value_ does.
TensorsOrModule = Union[torch.Tensor, Iterable[torch.Tensor], nn.Module]

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def tensor_list(tensors: TensorsOrModule, name: str) -> list[torch.Tensor]:
    """``tensors`` as a list: a Tensor, an iterable of Tensors, or a Module's parameters."""
    if isinstance(tensors, torch.Tensor):
        return [tensors]
    if isinstance(tensors, nn.Module):
        return list(tensors.parameters())
    if not isinstance(tensors, Iterable):
        raise TypeError(
            f"`{name}` must be a Tensor, an iterable of Tensors or an nn.Module, "
            f"got {type(tensors).__name__}"
        )
    out = list(tensors)
    for i, t in enumerate(out):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"`{name}[{i}]` must be a Tensor, got {type(t).__name__}")
    return out


def check_same_device(tensors: dict[str, torch.Tensor | None], op: str) -> None:
    """ValueError naming the arguments unless every given tensor is on one device.

    A meta tensor among real ones would otherwise route the call to the
    op's shape-only (fake) implementation, which returns uninitialised memory."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"`{name}` on {device}" for name, device in devices.items())
        raise ValueError(f"{op}: the tensors must be on one device, got {listed}")


def check_meta_not_mixed(tensors: list[torch.Tensor], name: str) -> None:
    """ValueError unless the meta tensors of ``tensors`` are all or none of them
    (tensors on several real devices may mix; a meta tensor among them would
    route the call to the shape-only implementation, which changes nothing)."""
    meta = [t.device.type == "meta" for t in tensors]
    if any(meta) and not all(meta):
        devices = sorted({str(t.device) for t in tensors})
        raise ValueError(f"`{name}` mixes meta tensors with tensors on other devices ({', '.join(devices)})")


def check_dense(t: torch.Tensor, name: str) -> None:
    """TypeError unless ``t`` is a dense (strided) tensor: fastgan's ops take no sparse layouts."""
    if t.layout != torch.strided:
        raise TypeError(f"`{name}` is a sparse tensor ({t.layout}); fastgan takes dense tensors (pass `{name}.to_dense()`)")


def check_float_dtype(t: torch.Tensor, name: str) -> None:
    """TypeError unless ``t`` is a dense float32, float64, float16 or bfloat16 tensor."""
    check_dense(t, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"`{name}` has dtype {t.dtype}; expected float32, float64, float16 or bfloat16"
        )


def positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0), else a ValueError / TypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}, got {value}")
    return value


def real_number(value: object, name: str, *, finite: bool = True) -> float:
    """``value`` as a float (a finite one unless ``finite=False``), else a TypeError /
    ValueError naming ``name``. Real numbers only: a bool, a string or a tensor is refused."""
    if type(value) is not float and type(value) is not int:  # the common cases first: checks run per call
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    return value


def integer(value: object, name: str) -> int:
    """``value`` as an int (any sign), else a TypeError naming ``name``."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    return int(value)


def positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def group_by_device(
    tensors: list[torch.Tensor], name: str
) -> dict[torch.device, list[torch.Tensor]]:
    """Checks every dtype and groups the tensors by device, keeping their order."""
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for i, t in enumerate(tensors):
        check_float_dtype(t, f"{name}[{i}]")
        groups.setdefault(t.device, []).append(t)
    return groups


def spectral_norm_args(
    module: object, name: str, n_power_iterations: object, eps: object, dim: object
) -> tuple[torch.Tensor, int, float, int]:
    """``module.<name>`` and the arguments of a spectral normalisation, checked.

    Returns ``(weight, n_power_iterations, eps, dim)`` with ``dim`` resolved
    (None: 1 for a ConvTranspose layer, whose output channels run along its
    weight's dim 1, else 0) and made non-negative; a TypeError, ValueError or
    IndexError naming the bad argument otherwise.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, got {type(name).__name__}")
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"`module` ({type(module).__name__}) has no parameter or buffer named {name!r}")
    if not (weight.is_floating_point() or weight.is_complex()):
        raise TypeError(f"`module`.{name} has dtype {weight.dtype}; expected a floating-point or complex tensor")
    if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, numbers.Integral):
        raise TypeError(f"`n_power_iterations` must be an int, got {type(n_power_iterations).__name__}")
    if n_power_iterations < 1:
        raise ValueError(f"`n_power_iterations` must be >= 1, got {n_power_iterations}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"`eps` must be a real number, got {type(eps).__name__}")
    if not eps > 0:
        raise ValueError(f"`eps` must be > 0, got {eps}")
    if dim is None:
        dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"`dim` must be an int or None, got {type(dim).__name__}")
    ndim = max(weight.ndim, 1)
    if not -ndim <= dim < ndim:
        raise IndexError(f"`dim` = {dim} is out of range for `module`.{name} of shape {tuple(weight.shape)}")
    return weight, int(n_power_iterations), float(eps), int(dim) % ndim
